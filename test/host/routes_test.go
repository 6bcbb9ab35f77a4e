package host

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/linkbeat/linkbeat/internal/routes"
)

// These tests drive internal/routes in-process against the real kernel: the
// daemon does not wire it in yet.

// rtTopo is a namespace with two veth links x and y whose peers live in a
// second namespace, so that downing a peer drops x's carrier like a cable.
type rtTopo struct {
	ns, peer netns
	x        int // ifindex of x
	stateDir string
}

func rtSetup(t *testing.T) *rtTopo {
	t.Helper()
	ns, peer := newNetns(t), newNetns(t)
	for _, d := range []string{"x", "y"} {
		ns.ip(t, "link", "add", d, "type", "veth", "peer", "name", d+"p", "netns", string(peer))
		ns.ip(t, "link", "set", d, "up")
		peer.ip(t, "link", "set", d+"p", "up")
	}
	ns.ip(t, "addr", "add", "10.1.0.1/24", "dev", "x")
	ns.ip(t, "addr", "add", "10.2.0.1/24", "dev", "y")
	ns.ip(t, "addr", "add", "2001:db8:1::1/64", "dev", "x", "nodad")
	ns.ip(t, "addr", "add", "2001:db8:2::1/64", "dev", "y", "nodad")
	rtWaitCarrier(t, ns, "x", true)
	rtWaitCarrier(t, ns, "y", true)
	// The kernel adds each link's fe80:: address, and its local route,
	// once DAD ends: a table snapshot taken before that would miss them.
	rtWaitLinkLocal(t, ns, "x")
	rtWaitLinkLocal(t, ns, "y")

	for _, args := range [][]string{
		// static, with metric, onlink, preferred source, metrics
		{"route", "add", "203.0.113.0/24", "via", "10.1.0.2", "dev", "x", "proto", "static", "metric", "50"},
		{"route", "add", "203.0.114.0/24", "via", "192.0.2.1", "dev", "x", "onlink"},
		{"route", "add", "203.0.115.0/24", "via", "10.1.0.2", "dev", "x", "src", "10.1.0.1", "mtu", "1400"},
		{"route", "add", "10.60.0.0/16", "dev", "x", "scope", "link", "proto", "boot", "metric", "7"},
		// dual-gateway ECMP default
		{"route", "add", "default", "nexthop", "via", "10.1.0.2", "dev", "x", "weight", "1", "nexthop", "via", "10.2.0.2", "dev", "y", "weight", "2"},
		// policy routing
		{"rule", "add", "from", "10.9.0.0/16", "table", "100"},
		{"route", "add", "default", "via", "10.1.0.2", "dev", "x", "table", "100"},
		{"route", "add", "10.50.0.0/16", "dev", "x", "table", "100", "scope", "link"},
		{"route", "add", "10.51.0.0/16", "via", "10.2.0.2", "dev", "y", "table", "100"},
		// IPv6
		{"-6", "route", "add", "2001:db8:99::/64", "via", "2001:db8:1::2", "dev", "x"},
		{"-6", "route", "add", "2001:db8:97::/64", "via", "2001:db8:1::2", "dev", "x", "metric", "10", "pref", "high"},
		{"-6", "route", "add", "2001:db8:98::/64", "nexthop", "via", "2001:db8:1::2", "dev", "x", "weight", "1", "nexthop", "via", "2001:db8:2::2", "dev", "y", "weight", "3"},
		{"-6", "route", "add", "2001:db8:95::/64", "via", "2001:db8:1::2", "dev", "x", "table", "100"},
		// other link only
		{"route", "add", "198.18.0.0/16", "via", "10.2.0.2", "dev", "y"},
		{"-6", "route", "add", "2001:db8:90::/64", "via", "2001:db8:2::2", "dev", "y"},
		// nexthop objects, groups and routes using them
		{"nexthop", "add", "id", "10", "via", "10.1.0.2", "dev", "x"},
		{"nexthop", "add", "id", "11", "via", "10.2.0.2", "dev", "y"},
		{"nexthop", "add", "id", "12", "via", "10.1.0.3", "dev", "x", "proto", "static"},
		{"nexthop", "add", "id", "13", "via", "2001:db8:1::2", "dev", "x"},
		{"nexthop", "add", "id", "20", "group", "10,3/11,2"},
		{"nexthop", "add", "id", "21", "group", "12/10"},
		{"route", "add", "198.51.100.0/24", "nhid", "20"},
		{"route", "add", "198.51.101.0/24", "nhid", "10"},
		{"route", "add", "198.51.102.0/24", "nhid", "21"},
		{"-6", "route", "add", "2001:db8:96::/64", "nhid", "13"},
	} {
		ns.ip(t, args...)
	}
	return &rtTopo{ns: ns, peer: peer, x: ns.ifindex(t, "x"), stateDir: t.TempDir()}
}

// rtKernel opens the netlink Kernel inside ns: its sockets stay bound to
// the namespace that was current when they were opened.
func rtKernel(t *testing.T, ns netns) routes.Kernel {
	t.Helper()
	var k routes.Kernel
	ns.do(t, func() { k = routes.NewKernel() })
	return k
}

func (tp *rtTopo) manager(t *testing.T) (*routes.Manager, context.CancelFunc) {
	t.Helper()
	m, err := routes.New(routes.Config{StateDir: tp.stateDir}, rtKernel(t, tp.ns))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return m, cancel
}

// rtWaitLinkLocal waits until dev has a link-local address past DAD and
// its route in the local table.
func rtWaitLinkLocal(t *testing.T, ns netns, dev string) {
	t.Helper()
	waitFor(t, dev+"'s link-local address", func() bool {
		addrs := ns.ip(t, "-6", "addr", "show", "dev", dev, "scope", "link")
		local := ns.ip(t, "-6", "route", "show", "table", "local", "dev", dev)
		return strings.Contains(addrs, "fe80::") && !strings.Contains(addrs, "tentative") && strings.Contains(local, "fe80::")
	})
}

func rtWaitCarrier(t *testing.T, ns netns, dev string, up bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var links []struct {
			Flags []string `json:"flags"`
		}
		if err := json.Unmarshal([]byte(ns.ip(t, "-j", "link", "show", "dev", dev)), &links); err != nil || len(links) != 1 {
			t.Fatalf("link %s: %v", dev, err)
		}
		if slices.Contains(links[0].Flags, "LOWER_UP") == up {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s carrier did not become %v", dev, up)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// cut drops x's carrier by downing its peer, as a pulled cable would.
func (tp *rtTopo) cut(t *testing.T) {
	t.Helper()
	tp.peer.ip(t, "link", "set", "xp", "down")
	rtWaitCarrier(t, tp.ns, "x", false)
}

func (tp *rtTopo) mend(t *testing.T) {
	t.Helper()
	tp.peer.ip(t, "link", "set", "xp", "up")
	rtWaitCarrier(t, tp.ns, "x", true)
}

// rtTable is every IPv4 and IPv6 route of every table and every nexthop
// object, as normalized JSON lines: keys sorted, volatile fields dropped.
func rtTable(t *testing.T, ns netns) []string {
	t.Helper()
	var out []string
	for _, q := range []struct {
		tag  string
		args []string
	}{
		{"4", []string{"-j", "-d", "-4", "route", "show", "table", "all"}},
		{"6", []string{"-j", "-d", "-6", "route", "show", "table", "all"}},
		{"nh", []string{"-j", "-d", "nexthop", "show"}},
	} {
		var objs []map[string]any
		if s := strings.TrimSpace(ns.ip(t, q.args...)); s != "" {
			if err := json.Unmarshal([]byte(s), &objs); err != nil {
				t.Fatalf("ip %v: %v\n%s", q.args, err, s)
			}
		}
		for _, o := range objs {
			delete(o, "expires")
			b, _ := json.Marshal(o) // map keys come out sorted
			out = append(out, q.tag+" "+string(b))
		}
	}
	slices.Sort(out)
	return out
}

func rtDiff(t *testing.T, got, want []string) {
	t.Helper()
	if slices.Equal(got, want) {
		return
	}
	var b strings.Builder
	for _, l := range want {
		if !slices.Contains(got, l) {
			b.WriteString("  missing: " + l + "\n")
		}
	}
	for _, l := range got {
		if !slices.Contains(want, l) {
			b.WriteString("  extra:   " + l + "\n")
		}
	}
	t.Fatalf("routing state differs from the original:\n%s", b.String())
}

// rtGrep returns the lines of table that mention all of words.
func rtGrep(table []string, words ...string) []string {
	var out []string
	for _, l := range table {
		ok := true
		for _, w := range words {
			ok = ok && strings.Contains(l, w)
		}
		if ok {
			out = append(out, l)
		}
	}
	return out
}

// assertWithdrawn checks the table while x is down after LinkDown.
func (tp *rtTopo) assertWithdrawn(t *testing.T) {
	t.Helper()
	now := rtTable(t, tp.ns)
	// Nothing but kernel-managed local/link-local/multicast routes may
	// still use x.
	for _, l := range rtGrep(now, `"dev":"x"`) {
		if !strings.Contains(l, `"table":"local"`) && !strings.Contains(l, `"dst":"fe80::/64"`) {
			t.Errorf("route still through x: %s", l)
		}
	}
	for _, dst := range []string{"203.0.113.0/24", "203.0.114.0/24", "203.0.115.0/24", "10.1.0.0/24", "10.60.0.0/16",
		"10.50.0.0/16", "2001:db8:99::/64", "2001:db8:97::/64", "2001:db8:95::/64", "2001:db8:1::/64",
		"198.51.101.0/24", "198.51.102.0/24", "2001:db8:96::/64"} {
		if l := rtGrep(now, `"dst":"`+dst+`"`); len(l) != 0 {
			t.Errorf("%s not withdrawn: %v", dst, l)
		}
	}
	// Multipath routes keep their live nexthop with its weight.
	def := rtGrep(now, `4 {`, `"dst":"default"`, `"table":"main"`)
	if len(def) != 1 || !strings.Contains(def[0], `"gateway":"10.2.0.2"`) || strings.Contains(def[0], "10.1.0.2") {
		t.Errorf("ECMP default route after withdraw: %v, want only via 10.2.0.2", def)
	}
	mp6 := rtGrep(now, `"dst":"2001:db8:98::/64"`)
	if len(mp6) != 1 || !strings.Contains(mp6[0], `"gateway":"2001:db8:2::2"`) || strings.Contains(mp6[0], "2001:db8:1::2") {
		t.Errorf("IPv6 ECMP route after withdraw: %v, want only via 2001:db8:2::2", mp6)
	}
	// Routes on y, and the route using a group with a live member, stay.
	for _, dst := range []string{"198.18.0.0/16", "10.2.0.0/24", "10.51.0.0/16", "2001:db8:90::/64", "2001:db8:2::/64", "198.51.100.0/24"} {
		if l := rtGrep(now, `"dst":"`+dst+`"`); len(l) != 1 {
			t.Errorf("%s should be untouched, found %v", dst, l)
		}
	}
	nh := rtGrep(now, "nh ")
	if len(nh) != 2 || len(rtGrep(nh, `"id":11,`, `"dev":"y"`)) != 1 || len(rtGrep(nh, `"id":20,`, `"group":[{"id":11`)) != 1 {
		t.Errorf("nexthops after withdraw: %v, want 11 and group 20 = {11}", nh)
	}
	// No ifdown: the addresses stay.
	if a := tp.ns.ip(t, "-j", "addr", "show", "dev", "x"); !strings.Contains(a, "10.1.0.1") || !strings.Contains(a, "2001:db8:1::1") {
		t.Errorf("addresses of x gone: %s", a)
	}
}

func TestRoutesWithdrawRestore(t *testing.T) {
	tp := rtSetup(t)
	m, _ := tp.manager(t)
	before := rtTable(t, tp.ns)

	tp.cut(t)
	res, err := m.LinkDown(tp.x, "x")
	if err != nil {
		t.Fatalf("LinkDown: %v", err)
	}
	t.Logf("withdraw: %+v", res)
	tp.assertWithdrawn(t)
	st, err := routes.ReadRecord(tp.stateDir)
	if err != nil || !strings.Contains(string(st), `"x#`) {
		t.Fatalf("state file after withdraw: %v\n%s", err, st)
	}
	if m.Withdrawn()["x"] != res.Withdrawn {
		t.Errorf("Withdrawn() = %v, LinkDown said %d", m.Withdrawn(), res.Withdrawn)
	}

	tp.mend(t)
	up, err := m.LinkUp(tp.x, "x")
	if err != nil {
		t.Fatalf("LinkUp: %v", err)
	}
	t.Logf("restore: %+v", up)
	if up.Restored != res.Withdrawn || up.Skipped != 0 {
		t.Errorf("restored %d skipped %d, withdrew %d", up.Restored, up.Skipped, res.Withdrawn)
	}
	rtDiff(t, rtTable(t, tp.ns), before)
	if len(m.Withdrawn()) != 0 {
		t.Errorf("still withdrawn: %v", m.Withdrawn())
	}
}

func TestRoutesNotRestoredWithoutCarrier(t *testing.T) {
	tp := rtSetup(t)
	m, _ := tp.manager(t)
	tp.cut(t)
	if _, err := m.LinkDown(tp.x, "x"); err != nil {
		t.Fatal(err)
	}
	withdrawn := rtTable(t, tp.ns)
	res, err := m.LinkUp(tp.x, "x") // carrier still down
	if err != nil {
		t.Fatal(err)
	}
	if !res.NoCarrier || res.Restored != 0 {
		t.Fatalf("LinkUp without carrier: %+v", res)
	}
	rtDiff(t, rtTable(t, tp.ns), withdrawn)
}

func TestRoutesRestartWhileDown(t *testing.T) {
	tp := rtSetup(t)
	a, stopA := tp.manager(t)
	before := rtTable(t, tp.ns)
	tp.cut(t)
	if _, err := a.LinkDown(tp.x, "x"); err != nil {
		t.Fatal(err)
	}
	stopA() // the daemon dies while x is down

	b, _ := tp.manager(t)
	tp.mend(t)
	res, err := b.LinkUp(tp.x, "x")
	if err != nil {
		t.Fatalf("LinkUp after restart: %v", err)
	}
	if res.Restored == 0 {
		t.Fatalf("restarted manager restored nothing: %+v", res)
	}
	rtDiff(t, rtTable(t, tp.ns), before)
}

func TestRoutesReconcileAfterRestart(t *testing.T) {
	tp := rtSetup(t)
	a, stopA := tp.manager(t)
	before := rtTable(t, tp.ns)
	tp.cut(t)
	if _, err := a.LinkDown(tp.x, "x"); err != nil {
		t.Fatal(err)
	}
	stopA()
	tp.mend(t) // carrier came back while no daemon ran

	b, _ := tp.manager(t)
	if err := b.Reconcile(map[int]bool{tp.x: true}); err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	rtDiff(t, rtTable(t, tp.ns), before)
	if len(b.Withdrawn()) != 0 {
		t.Errorf("still withdrawn after reconcile: %v", b.Withdrawn())
	}
}

func TestRoutesReAddedByOthersNotDuplicated(t *testing.T) {
	tp := rtSetup(t)
	m, _ := tp.manager(t)
	tp.cut(t)
	if _, err := m.LinkDown(tp.x, "x"); err != nil {
		t.Fatal(err)
	}
	// An operator moves 203.0.113.0/24 to y (same table and metric: the
	// same kernel key) and puts x's nexthop back into the default route
	// with other weights (onlink: x's connected route is withdrawn).
	tp.ns.ip(t, "route", "add", "203.0.113.0/24", "via", "10.2.0.2", "dev", "y", "proto", "static", "metric", "50")
	tp.ns.ip(t, "route", "replace", "default", "nexthop", "via", "10.1.0.2", "dev", "x", "weight", "1", "onlink", "nexthop", "via", "10.2.0.2", "dev", "y", "weight", "5")
	tp.mend(t)
	res, err := m.LinkUp(tp.x, "x")
	if err != nil {
		t.Fatalf("LinkUp: %v", err)
	}
	if res.Skipped != 2 {
		t.Errorf("skipped %d, want the 2 routes re-added by the operator (%+v)", res.Skipped, res)
	}
	now := rtTable(t, tp.ns)
	if l := rtGrep(now, `"dst":"203.0.113.0/24"`); len(l) != 1 || !strings.Contains(l[0], `"dev":"y"`) {
		t.Errorf("203.0.113.0/24 after restore: %v, want only the operator's route via y", l)
	}
	if l := rtGrep(now, `4 {`, `"dst":"default"`, `"table":"main"`); len(l) != 1 || !strings.Contains(l[0], `"weight":5`) {
		t.Errorf("default route after restore: %v, want the operator's weights kept", l)
	}
	// Everything else withdrawn is back.
	if l := rtGrep(now, `"dst":"203.0.114.0/24"`); len(l) != 1 {
		t.Errorf("203.0.114.0/24 not restored: %v", l)
	}
}
