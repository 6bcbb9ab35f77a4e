package host

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
)

// The fault suite: a flap storm and a netlink overflow here, the
// interface lifecycle in faults_lifecycle_test.go, SIGKILLs during
// failovers in faults_kill_test.go. Random choices are seeded; the seed is
// logged, and LINKBEAT_FAULT_SEED replays a run.

func faultSeed(t *testing.T) uint64 {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("LINKBEAT_FAULT_SEED"); s != "" {
		if _, err := fmt.Sscan(s, &seed); err != nil {
			t.Fatalf("LINKBEAT_FAULT_SEED=%q: %v", s, err)
		}
	}
	t.Logf("seed %d (replay with LINKBEAT_FAULT_SEED=%d)", seed, seed)
	return seed
}

// nlHandle is a netlink handle whose sockets live in ns: a goroutine can
// change ns's links through it without switching threads.
func nlHandle(t *testing.T, ns netns) *netlink.Handle {
	t.Helper()
	h, err := vnetns.GetFromName(string(ns))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	nh, err := netlink.NewHandleAt(h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nh.Close)
	return nh
}

// ipBatch feeds commands to one `ip -batch` in ns: one process for many.
func ipBatch(t *testing.T, ns netns, cmds ...string) {
	t.Helper()
	cmd := exec.Command("ip", "-n", string(ns), "-batch", "-")
	cmd.Stdin = strings.NewReader(strings.Join(cmds, "\n") + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ip -batch: %v\n%s", err, out)
	}
}

// faultTopo is a server netns with veths whose peers (the name plus "p")
// sit in a switch netns: downing a peer drops the server side's carrier,
// like a pulled cable. IPv6 is off so that autoconfiguration does not
// change the tables behind the test's back. Link i has 10.(70+i).0.1/24.
type faultTopo struct {
	srv, sw netns
	devs    []string
}

func faultSetup(t *testing.T, devs ...string) *faultTopo {
	t.Helper()
	tp := &faultTopo{srv: newNetns(t), sw: newNetns(t), devs: devs}
	for _, ns := range []netns{tp.srv, tp.sw} {
		ns.exec(t, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
	}
	var srv, sw []string
	for i, d := range devs {
		tp.addLinkCmds(i, d, &srv, &sw)
	}
	ipBatch(t, tp.srv, srv...)
	ipBatch(t, tp.sw, sw...)
	for _, d := range devs {
		waitFor(t, d+" carrier", func() bool { return carrierOf(t, tp.srv, d) })
	}
	return tp
}

func (tp *faultTopo) addLinkCmds(i int, dev string, srv, sw *[]string) {
	*srv = append(*srv, "link add "+dev+" type veth peer name "+dev+"p netns "+string(tp.sw),
		fmt.Sprintf("addr add 10.%d.0.1/24 dev %s", 70+i, dev), "link set "+dev+" up")
	*sw = append(*sw, "link set "+dev+"p up")
}

// gw is the switch-side address of link i.
func gw(i int) string { return fmt.Sprintf("10.%d.0.2", 70+i) }

// setPeer sets dev's carrier by setting its peer, in the netns of h, up
// or down.
func setPeer(h *netlink.Handle, dev string, up bool) error {
	l, err := h.LinkByName(dev + "p")
	if err != nil {
		return fmt.Errorf("peer of %s: %w", dev, err)
	}
	if up {
		err = h.LinkSetUp(l)
	} else {
		err = h.LinkSetDown(l)
	}
	if err != nil {
		return fmt.Errorf("set peer of %s up=%v: %w", dev, up, err)
	}
	return nil
}

func (tp *faultTopo) setCarrier(t *testing.T, h *netlink.Handle, dev string, up bool) {
	t.Helper()
	if err := setPeer(h, dev, up); err != nil {
		t.Fatal(err)
	}
}

// settle polls check until it returns nil; on timeout it fails with the
// last complaint.
func settle(t *testing.T, timeout time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not so after %s: %v", what, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// rtSnapshot is rtTable that returns an error instead of failing: while
// routes change, `ip -d` can fail to look up a nexthop it just listed.
func rtSnapshot(ns netns) ([]string, error) {
	var out []string
	for _, q := range []struct {
		tag  string
		args []string
	}{
		{"4", []string{"-j", "-d", "-4", "route", "show", "table", "all"}},
		{"6", []string{"-j", "-d", "-6", "route", "show", "table", "all"}},
		{"nh", []string{"-j", "-d", "nexthop", "show"}},
	} {
		b, err := exec.Command("ip", append([]string{"-n", string(ns)}, q.args...)...).Output()
		if err != nil {
			return nil, fmt.Errorf("ip %v: %w", q.args, err)
		}
		var objs []map[string]any
		if s := strings.TrimSpace(string(b)); s != "" {
			if err := json.Unmarshal([]byte(s), &objs); err != nil {
				return nil, fmt.Errorf("ip %v: %w", q.args, err)
			}
		}
		for _, o := range objs {
			delete(o, "expires")
			j, _ := json.Marshal(o)
			out = append(out, q.tag+" "+string(j))
		}
	}
	slices.Sort(out)
	return out, nil
}

// routesMatch is rtExpect on a fresh snapshot.
func routesMatch(ns netns, before []string, down ...string) error {
	now, err := rtSnapshot(ns)
	if err != nil {
		return err
	}
	return rtExpect(before, now, down)
}

// rtParse splits an rtTable line into the kernel's key for it (family or
// nexthop tag, type, destination, table, metric; or nexthop id) and the
// devices it uses.
func rtParse(line string) (key string, devs []string) {
	tag, js, _ := strings.Cut(line, " ")
	var o map[string]any
	_ = json.Unmarshal([]byte(js), &o)
	if tag == "nh" {
		key = fmt.Sprintf("nh %v", o["id"])
	} else {
		key = fmt.Sprintf("%s %v %v table %v metric %v", tag, o["type"], o["dst"], o["table"], o["metric"])
	}
	if d, ok := o["dev"].(string); ok {
		devs = append(devs, d)
	}
	hops, _ := o["nexthops"].([]any)
	for _, h := range hops {
		if m, ok := h.(map[string]any); ok {
			if d, ok := m["dev"].(string); ok {
				devs = append(devs, d)
			}
		}
	}
	return key, devs
}

// rtExpect compares the routing state now with the state before the
// faults, for links that ended without carrier (down): a route or nexthop
// using no down link is there unchanged; one using only down links is
// gone; a multipath one keeps exactly its live hops; nothing else uses a
// down link (but the kernel's table local, which follows the addresses).
func rtExpect(before, now []string, down []string) error {
	isDown := func(d string) bool { return slices.Contains(down, d) }
	// The kernel marks its own table local's routes of a link without
	// carrier linkdown; nothing else about them changes.
	now = slices.Clone(now)
	for i, l := range now {
		if strings.Contains(l, `"table":"local"`) {
			now[i] = strings.Replace(l, `"flags":["linkdown"]`, `"flags":[]`, 1)
		}
	}
	nowByKey := map[string][]string{}
	for _, l := range now {
		k, _ := rtParse(l)
		nowByKey[k] = append(nowByKey[k], l)
	}
	var errs []error
	accounted := map[string]bool{}
	for _, l := range before {
		k, devs := rtParse(l)
		var live []string
		for _, d := range devs {
			if !isDown(d) {
				live = append(live, d)
			}
		}
		local := strings.Contains(l, `"table":"local"`)
		switch {
		case local || len(live) == len(devs):
			if !slices.Contains(now, l) {
				errs = append(errs, fmt.Errorf("missing or changed: %s (now: %v)", l, nowByKey[k]))
			}
			accounted[l] = true
		case len(live) == 0:
			if n := nowByKey[k]; len(n) != 0 {
				errs = append(errs, fmt.Errorf("not withdrawn: %v", n))
			}
		default:
			n := nowByKey[k]
			if len(n) != 1 {
				errs = append(errs, fmt.Errorf("multipath %s: want one route with hops via %v, have %v", k, live, n))
				continue
			}
			_, nd := rtParse(n[0])
			slices.Sort(nd)
			slices.Sort(live)
			if !slices.Equal(nd, live) {
				errs = append(errs, fmt.Errorf("multipath %s: hops via %v, want %v: %s", k, nd, live, n[0]))
			}
			accounted[n[0]] = true
		}
	}
	for _, l := range now {
		if !accounted[l] {
			errs = append(errs, fmt.Errorf("unexpected: %s", l))
		}
	}
	return errors.Join(errs...)
}

// statusReport is the part of `linkbeat status --json` the faults check.
type statusReport struct {
	Links     []statusLink      `json:"links"`
	Withdrawn []statusWithdrawn `json:"withdrawn_routes"`
}

type statusLink struct {
	Name    string `json:"name"`
	Ifindex int    `json:"ifindex"`
	Carrier bool   `json:"carrier"`
}

type statusWithdrawn struct {
	Ifname string   `json:"ifname"`
	Routes []string `json:"routes"`
}

func (ns netns) status(t *testing.T, pins, state string) statusReport {
	t.Helper()
	var r statusReport
	out := ns.exec(t, binary(t), "status", "--json", "--bpffs-dir", pins, "--state-dir", state)
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	return r
}

// checkFinal compares metrics and status with the links' final carrier.
func checkFinal(t *testing.T, ns netns, pins, state string, final map[string]bool) error {
	t.Helper()
	var errs []error
	body := ns.scrape(t, defaultMetrics)
	st := ns.status(t, pins, state)
	for dev, up := range final {
		want := 0.0
		if up {
			want = 1
		}
		if v, ok := sample(t, body, `linkbeat_interface_carrier{interface="`+dev+`"}`); !ok || v != want {
			errs = append(errs, fmt.Errorf("linkbeat_interface_carrier{%s} = %v (present %v), want %v", dev, v, ok, want))
		}
		i := slices.IndexFunc(st.Links, func(l statusLink) bool { return l.Name == dev })
		if i < 0 || st.Links[i].Carrier != up {
			errs = append(errs, fmt.Errorf("status: %s carrier (index %d in links) is not %v", dev, i, up))
		}
		withdrawn := slices.ContainsFunc(st.Withdrawn, func(w statusWithdrawn) bool { return w.Ifname == dev && len(w.Routes) > 0 })
		if withdrawn == up {
			errs = append(errs, fmt.Errorf("status: %s has withdrawn routes: %v, carrier %v", dev, withdrawn, up))
		}
	}
	return errors.Join(errs...)
}

// scriptRuns reads the action script's log: one "IFACE up|down" a run.
func scriptRuns(path string) map[string][]string {
	b, _ := os.ReadFile(path)
	runs := map[string][]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if f := strings.Fields(l); len(f) == 2 {
			runs[f[0]] = append(runs[f[0]], f[1])
		}
	}
	return runs
}

// TestFaultFlapStorm flaps three links at 10-100 Hz each for 10 s, with
// route withdrawal and a slow action script on, and checks that the
// daemon ends where the carrier ended: routes, metrics and status; that
// the scripts were coalesced (a few runs left at the end, not a backlog);
// and that it still handles a single flap afterwards.
func TestFaultFlapStorm(t *testing.T) {
	for _, dampen := range []bool{false, true} {
		name := "plain"
		if dampen {
			name = "dampened"
		}
		t.Run(name, func(t *testing.T) { flapStorm(t, dampen) })
	}
}

func flapStorm(t *testing.T, dampen bool) {
	const storm = 10 * time.Second
	rng := rand.New(rand.NewPCG(faultSeed(t), 9))
	devs := []string{"f0", "f1", "f2"}
	tp := faultSetup(t, devs...)
	for _, args := range [][]string{
		{"route", "add", "203.0.113.0/24", "via", gw(0), "dev", "f0", "proto", "static", "metric", "50"},
		{"route", "add", "203.0.114.0/24", "via", gw(1), "dev", "f1"},
		{"route", "add", "203.0.115.0/24", "via", gw(2), "dev", "f2", "table", "100"},
		{"route", "add", "default", "nexthop", "via", gw(0), "dev", "f0", "weight", "1", "nexthop", "via", gw(1), "dev", "f1", "weight", "2"},
		{"route", "add", "198.51.100.0/24", "nexthop", "via", gw(1), "dev", "f1", "nexthop", "via", gw(2), "dev", "f2"},
		{"nexthop", "add", "id", "30", "via", gw(2), "dev", "f2"},
		{"route", "add", "198.51.102.0/24", "nhid", "30"},
	} {
		tp.srv.ip(t, args...)
	}
	before := rtTable(t, tp.srv)

	dir, pins := t.TempDir(), pinDir(t)
	out := filepath.Join(dir, "runs")
	// Slow on purpose: events arrive far faster than runs finish.
	sc := writeScript(t, `echo "$1 $2" >> `+out+"\nsleep 0.2\n")
	var cfg strings.Builder
	cfg.WriteString("interfaces:\n")
	for _, d := range devs {
		fmt.Fprintf(&cfg, "  %s:\n    script: %s\n", d, sc)
		if dampen {
			cfg.WriteString("    dampening: {transitions: 4, window: 1s, hold_down: 1s}\n")
		}
	}
	cfgFile := filepath.Join(dir, "linkbeat.yaml")
	if err := os.WriteFile(cfgFile, []byte(cfg.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	d := tp.srv.start(t, "run", "--config", cfgFile, "--bpffs-dir", pins, "--state-dir", dir, "--no-script-on-exit")

	// Each link flaps at its own rate and ends in a random state; at
	// least one ends up and one down.
	final := map[string]bool{}
	for _, dev := range devs {
		final[dev] = rng.IntN(2) == 0
	}
	final[devs[rng.IntN(3)]] = true
	for final["f0"] == final["f1"] && final["f1"] == final["f2"] {
		final[devs[rng.IntN(3)]] = false
	}
	hz := map[string]int{}
	for _, dev := range devs {
		hz[dev] = 10 + rng.IntN(91)
	}
	toggles := map[string]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	end := time.Now().Add(storm)
	for _, dev := range devs {
		h := nlHandle(t, tp.sw)
		period := time.Second / time.Duration(2*hz[dev]) // two changes a flap
		wg.Add(1)
		go func() {
			defer wg.Done()
			up, n := true, 0
			for next := time.Now(); time.Now().Before(end); next = next.Add(period) {
				up = !up
				if err := setPeer(h, dev, up); err != nil {
					t.Error(err)
					return
				}
				n++
				time.Sleep(time.Until(next.Add(period)))
			}
			if up != final[dev] {
				if err := setPeer(h, dev, final[dev]); err != nil {
					t.Error(err)
				}
				n++
			}
			mu.Lock()
			toggles[dev] = n
			mu.Unlock()
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	atEnd := scriptRuns(out)
	stormLog := len(d.stderr.String())
	t.Logf("flaps: %v Hz; carrier changes %v; final %v", hz, toggles, final)

	var down []string
	for _, dev := range devs {
		if !final[dev] {
			down = append(down, dev)
		}
	}
	settle(t, 30*time.Second, "routes follow the final carrier", func() error { return routesMatch(tp.srv, before, down...) })
	settle(t, 10*time.Second, "metrics and status follow the final carrier", func() error { return checkFinal(t, tp.srv, pins, dir, final) })
	// The scripts: the last run of each link says its final state, and
	// no backlog was left once the storm ended.
	settle(t, 15*time.Second, "each link's last script run to match its carrier", func() error {
		runs := scriptRuns(out)
		for _, dev := range devs {
			want := map[bool]string{true: "up", false: "down"}[final[dev]]
			r := runs[dev]
			if len(r) == 0 && final[dev] {
				// Linkwatch may fold each flap into a notice that still
				// says up; then the daemon never saw the link down.
				continue
			}
			if len(r) == 0 || r[len(r)-1] != want {
				return fmt.Errorf("%s: runs end %v, want %s", dev, r[max(0, len(r)-3):], want)
			}
		}
		return nil
	})
	time.Sleep(time.Second) // a coalesced run still pending would start by now
	runs := scriptRuns(out)
	body := tp.srv.scrape(t, defaultMetrics)
	for _, dev := range devs {
		var seen float64
		for _, dir := range []string{"up", "down"} {
			v, _ := sample(t, body, `linkbeat_interface_carrier_changes_total{direction="`+dir+`",interface="`+dev+`"}`)
			seen += v
		}
		t.Logf("%s: the daemon saw %v of %d carrier changes (linkwatch sends one notice a second for a link whose peer has its ifindex, as for a NIC)", dev, seen, toggles[dev])
	}
	for _, dev := range devs {
		after := len(runs[dev]) - len(atEnd[dev])
		t.Logf("%s: %d carrier changes, %d script runs, %d of them after the storm", dev, toggles[dev], len(runs[dev]), after)
		if len(runs[dev])*4 > toggles[dev] {
			t.Errorf("%s: %d script runs for %d carrier changes: not coalesced", dev, len(runs[dev]), toggles[dev])
		}
		// Running, plus one coalesced job pending, plus the end of a hold-down.
		if after > 3 {
			t.Errorf("%s: %d script runs after the storm ended: a backlog was queued", dev, after)
		}
	}
	if strings.Contains(d.stderr.String(), "action queue full") {
		t.Errorf("events were dropped: the action queue filled up")
	}
	// A restore that loses the race with the next carrier loss fails
	// (the kernel refuses a nexthop on a link without carrier); what
	// failed stays withdrawn and comes back later. Only after the storm
	// must there be no error.
	for _, l := range strings.Split(d.stderr.String()[:stormLog], "\n") {
		if strings.Contains(l, "level=ERROR") {
			t.Logf("during the storm: %s", l)
		}
	}
	defer func() {
		if l := logSince(d, stormLog); strings.Contains(l, "level=ERROR") {
			t.Errorf("errors after the storm:\n%s", l)
		}
	}()

	// Still responsive: one more flap of a link that ended up.
	var upDev string
	for _, dev := range devs {
		if final[dev] {
			upDev = dev
			break
		}
	}
	h := nlHandle(t, tp.sw)
	tp.setCarrier(t, h, upDev, false)
	settle(t, eventTimeout, upDev+"'s routes withdrawn after the storm", func() error {
		return routesMatch(tp.srv, before, append(slices.Clone(down), upDev)...)
	})
	tp.setCarrier(t, h, upDev, true)
	settle(t, eventTimeout, upDev+"'s routes back after the storm", func() error { return routesMatch(tp.srv, before, down...) })
	settle(t, eventTimeout, "metrics and status after a last flap", func() error { return checkFinal(t, tp.srv, pins, dir, final) })
}

// TestFaultNetlinkOverflow shrinks the daemon's rtnetlink receive buffer
// and changes 24 links' carrier in single requests (ip link set group):
// the kernel drops notices (ENOBUFS), and the daemon must resync from a
// dump and end with the right carrier, routes, metrics and status.
func TestFaultNetlinkOverflow(t *testing.T) {
	const n = 24
	var devs []string
	for i := range n {
		devs = append(devs, fmt.Sprintf("e%d", i))
	}
	tp := faultSetup(t, devs...)
	var group []string
	for _, d := range devs {
		group = append(group, "link set "+d+" group 7")
	}
	ipBatch(t, tp.srv, group...)
	for i := range group {
		group[i] = strings.Replace(group[i], " group", "p group", 1)
	}
	ipBatch(t, tp.sw, group...)
	tp.srv.ip(t, "route", "add", "203.0.113.0/24", "via", gw(0), "dev", "e0")
	tp.srv.ip(t, "route", "add", "203.0.114.0/24", "via", gw(1), "dev", "e1")
	tp.srv.ip(t, "route", "add", "default", "nexthop", "via", gw(0), "dev", "e0", "nexthop", "via", gw(1), "dev", "e1")
	before := rtTable(t, tp.srv)

	dir, pins := t.TempDir(), pinDir(t)
	d := tp.srv.start(t, "run", "--interfaces", strings.Join(devs, ","), "--bpffs-dir", pins, "--state-dir", dir,
		"--debug.netlink-rcvbuf", "1024")
	overflows := func() float64 {
		v, _ := sample(t, tp.srv.scrape(t, defaultMetrics), `linkbeat_resyncs_total{reason="netlink_overflow"}`)
		return v
	}
	if v := overflows(); v != 0 {
		t.Fatalf("netlink_overflow resyncs before any burst: %v", v)
	}
	// Bursts of 24 notices each, made under one lock in the kernel: the
	// carrier of all, and the MTU of all, until a notice is lost.
	for round := 0; overflows() == 0; round++ {
		if round == 20 {
			t.Fatal("20 rounds of bursts and no netlink_overflow resync: the receive buffer did not overflow")
		}
		tp.sw.ip(t, "link", "set", "group", "7", "down")
		tp.srv.ip(t, "link", "set", "group", "7", "mtu", fmt.Sprint(1400+round%2))
		tp.sw.ip(t, "link", "set", "group", "7", "up")
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("netlink_overflow resyncs: %v", overflows())
	// The last burst leaves every other link up.
	tp.sw.ip(t, "link", "set", "group", "7", "down")
	final := map[string]bool{}
	var ups, down []string
	for i, dev := range devs {
		final[dev] = i%2 == 0
		if final[dev] {
			ups = append(ups, "link set "+dev+"p up")
		} else {
			down = append(down, dev)
		}
	}
	ipBatch(t, tp.sw, ups...)

	if !strings.Contains(d.stderr.String(), "netlink notices lost, resyncing") {
		t.Errorf("no log line about the lost notices")
	}
	settle(t, 20*time.Second, "routes follow the final carrier", func() error { return routesMatch(tp.srv, before, down...) })
	settle(t, 10*time.Second, "metrics and status follow the final carrier", func() error { return checkFinal(t, tp.srv, pins, dir, final) })
}
