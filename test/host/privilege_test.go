package host

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/linkbeat/linkbeat/internal/routes"

	"github.com/linkbeat/linkbeat/internal/pathmon"
)

// serviceUID is the unprivileged user the unit's capability set is tried
// with, like the unit's `linkbeat` user: any uid but 0 does.
const serviceUID = 64321

// capBits are the capabilities the tests name, by their number.
var capBits = map[string]uint{"CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13, "CAP_SYS_ADMIN": 21, "CAP_PERFMON": 38, "CAP_BPF": 39}

// unitCaps is the unit's capability line key, as names.
func unitCaps(t *testing.T, u unit, key string) []string {
	t.Helper()
	caps := strings.Fields(u.one(t, key))
	for _, c := range caps {
		if _, ok := capBits[c]; !ok {
			t.Fatalf("%s names %s, which this test does not know", key, c)
		}
	}
	return caps
}

func capMask(caps []string) uint64 {
	var m uint64
	for _, c := range caps {
		m |= 1 << capBits[c]
	}
	return m
}

// setpriv is the command prefix that gives what follows the unit's
// identity: serviceUID, no groups, caps as ambient capabilities within the
// bounding set bounding, and no_new_privs when nnp.
func setpriv(caps, bounding []string, nnp bool) []string {
	list := func(cs []string) string {
		s := "-all"
		for _, c := range cs {
			s += ",+" + strings.ToLower(strings.TrimPrefix(c, "CAP_"))
		}
		return s
	}
	uid := strconv.Itoa(serviceUID)
	args := []string{"setpriv", "--reuid=" + uid, "--regid=" + uid, "--clear-groups",
		"--inh-caps=" + list(caps), "--ambient-caps=" + list(caps), "--bounding-set=" + list(bounding)}
	if nnp {
		args = append(args, "--no-new-privs")
	}
	return append(args, "--")
}

// serviceFS lays out what the unit gives the service: a bpffs whose root
// is root's alone (mode 0700, as systemd mounts /sys/fs/bpf) with a
// linkbeat directory made the service user's (ExecStartPre=+); a view of
// it where only that directory is bound in (TemporaryFileSystem= and
// BindPaths=); a state directory of the user's (RuntimeDirectory=); and
// the binary where the user can run it.
type serviceFS struct {
	bin      string
	hostPins string // the pins as root sees them (/sys/fs/bpf/linkbeat)
	pins     string // the pins as the service sees them
	state    string
}

func newServiceFS(t *testing.T) serviceFS {
	t.Helper()
	base, err := os.MkdirTemp("", "linkbeat-unit-")
	if err != nil {
		t.Fatal(err)
	}
	var mounts []string
	t.Cleanup(func() {
		for _, m := range slices.Backward(mounts) {
			exec.Command("umount", m).Run()
		}
		os.RemoveAll(base)
	})
	mount := func(args ...string) {
		run(t, "mount", args...)
		mounts = append(mounts, args[len(args)-1])
	}
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	fs := serviceFS{bin: filepath.Join(base, "linkbeat"), state: filepath.Join(base, "state")}
	run(t, "install", "-m", "0755", binary(t), fs.bin)

	bpffs := filepath.Join(base, "bpffs")
	must(t, os.Mkdir(bpffs, 0o700))
	mount("-t", "bpf", "-o", "mode=0700", "bpf", bpffs)
	fs.hostPins = filepath.Join(bpffs, "linkbeat")
	owner := fmt.Sprintf("%d:%d", serviceUID, serviceUID)
	run(t, "install", "-d", "-o", strconv.Itoa(serviceUID), "-g", strconv.Itoa(serviceUID), "-m", "0700", fs.hostPins)

	view := filepath.Join(base, "view")
	must(t, os.Mkdir(view, 0o755))
	mount("-t", "tmpfs", "-o", "mode=0755", "tmpfs", view)
	fs.pins = filepath.Join(view, "linkbeat")
	must(t, os.Mkdir(fs.pins, 0o755))
	mount("--bind", fs.hostPins, fs.pins)

	run(t, "install", "-d", "-o", strconv.Itoa(serviceUID), "-g", strconv.Itoa(serviceUID), "-m", "0700", fs.state)
	t.Logf("service user %s; pins %s, seen as %s; state %s", owner, fs.hostPins, fs.pins, fs.state)
	return fs
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// procStatus reads the fields of /proc/PID/status.
func procStatus(t *testing.T, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for l := range strings.Lines(string(b)) {
		if k, v, ok := strings.Cut(l, ":"); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

func hexMask(t *testing.T, s string) uint64 {
	t.Helper()
	v, err := strconv.ParseUint(s, 16, 64)
	if err != nil {
		t.Fatalf("capability mask %q: %v", s, err)
	}
	return v
}

// rootFeatures is what `linkbeat features` finds in ns with every privilege.
type rootFeatures struct {
	CarrierSource string `json:"carrier_source"`
	TCMechanism   string `json:"tc_mechanism"`
	Tracepoints   bool   `json:"tracepoints"`
}

func (ns netns) rootFeatures(t *testing.T) rootFeatures {
	t.Helper()
	var f rootFeatures
	out := ns.exec(t, binary(t), "features", "--json", "--log.level", "error")
	if err := json.Unmarshal([]byte(out), &f); err != nil {
		t.Fatalf("features --json: %v\n%s", err, out)
	}
	return f
}

func pinnedMapID(t *testing.T, pin string) int {
	t.Helper()
	var m struct {
		ID int `json:"id"`
	}
	out := run(t, "bpftool", "-j", "map", "show", "pinned", pin)
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("bpftool map show: %v\n%s", err, out)
	}
	return m.ID
}

// TestUnitCapabilitiesSuffice runs the daemon as the unit does: an
// unprivileged user with exactly the unit's AmbientCapabilities within its
// CapabilityBoundingSet, and no_new_privs, read from the shipped unit. It
// must take every kernel path root takes here, pin its maps, withdraw and
// restore routes, keep its state and pins across a restart, and serve
// metrics.
func TestUnitCapabilitiesSuffice(t *testing.T) {
	u := readUnit(t)
	caps, bounding := unitCaps(t, u, "Service.AmbientCapabilities"), unitCaps(t, u, "Service.CapabilityBoundingSet")
	if capMask(caps)&^capMask(bounding) != 0 {
		t.Fatalf("AmbientCapabilities %v outside CapabilityBoundingSet %v: systemd would drop them", caps, bounding)
	}
	nnp := u.one(t, "Service.NoNewPrivileges") == "yes"
	tp := seedSetup(t)
	before := routeAll(t, tp.srv)
	fs := newServiceFS(t)
	pre := setpriv(caps, bounding, nnp)
	args := []string{"run", "--interfaces", "eth0,eth1", "--bpffs-dir", fs.pins, "--state-dir", fs.state}
	d := tp.srv.startWith(t, pre, fs.bin, args...)

	// It is who the unit says.
	st := procStatus(t, d.cmd.Process.Pid)
	if st["Name"] != "linkbeat" {
		t.Fatalf("pid %d is %q, not linkbeat", d.cmd.Process.Pid, st["Name"])
	}
	if uids := strings.Fields(st["Uid"]); len(uids) != 4 || slices.ContainsFunc(uids, func(s string) bool { return s != strconv.Itoa(serviceUID) }) {
		t.Errorf("Uid %q, want %d everywhere", st["Uid"], serviceUID)
	}
	for field, want := range map[string]uint64{"CapEff": capMask(caps), "CapPrm": capMask(caps), "CapAmb": capMask(caps), "CapBnd": capMask(bounding)} {
		if got := hexMask(t, st[field]); got != want {
			t.Errorf("%s %016x, want %016x", field, got, want)
		}
	}
	if nnp && st["NoNewPrivs"] != "1" {
		t.Errorf("NoNewPrivs %q, want 1", st["NoNewPrivs"])
	}

	// Every path root gets here, it gets too.
	f := tp.srv.rootFeatures(t)
	want := fmt.Sprintf("msg=features carrier_source=%s tc=%s tracepoints=%t", f.CarrierSource, f.TCMechanism, f.Tracepoints)
	if !strings.Contains(d.stderr.String(), want) {
		t.Fatalf("with the unit's capabilities the daemon took other paths than root (%s):\n%s", want, d.stderr.String())
	}
	if f.TCMechanism == "none" || !f.Tracepoints {
		t.Fatalf("root itself has no traffic counting here (%+v): nothing to compare", f)
	}
	t.Logf("root and the unit's capabilities both: %s", want)

	// Its maps are pinned, the service user's, where root's tools find them.
	ifStats := filepath.Join(fs.hostPins, "if_stats")
	for _, name := range []string{"if_stats", "link_state"} {
		var sb syscall.Stat_t
		if err := syscall.Stat(filepath.Join(fs.hostPins, name), &sb); err != nil || sb.Uid != serviceUID {
			t.Errorf("pin %s: %v, owner %d, want %d", name, err, sb.Uid, serviceUID)
		}
	}
	mapID := pinnedMapID(t, ifStats)
	eth1 := tp.srv.ifindex(t, "eth1")
	if _, ok := tp.srv.stats(t, fs.hostPins)[eth1]; !ok {
		t.Errorf("`linkbeat stats` finds no counters for eth1 in %s", fs.hostPins)
	}

	body := tp.srv.scrape(t, defaultMetrics)
	if v, ok := sample(t, body, `linkbeat_interface_carrier{interface="eth1"}`); !ok || v != 1 {
		t.Errorf("metrics: eth1 carrier %v (present %v), want 1", v, ok)
	}

	tp.sw.ip(t, "link", "set", "sw1", "down")
	waitFor(t, "eth1's routes to be withdrawn", func() bool { return routeShow(t, tp.srv) == seedUnrelated })
	var sb syscall.Stat_t
	// The record of a withdrawal is an entry in the journal the daemon
	// opened at start.
	if err := syscall.Stat(filepath.Join(fs.state, "routes.journal"), &sb); err != nil || sb.Uid != serviceUID {
		t.Errorf("route journal: %v, owner %d", err, sb.Uid)
	}
	if b, err := routes.ReadRecord(fs.state); err != nil || !strings.Contains(string(b), `"eth1#`) {
		t.Errorf("route record: %v, %s; want eth1's withdrawal", err, b)
	}
	waitFor(t, "the metrics to show eth1 down", func() bool {
		v, ok := sample(t, tp.srv.scrape(t, defaultMetrics), `linkbeat_interface_carrier{interface="eth1"}`)
		return ok && v == 0
	})

	// Restarted while eth1 is down, as systemd restarts it: the routes
	// stay withdrawn, and the pinned counters are kept, not replaced.
	d.stop()
	d = tp.srv.startWith(t, pre, fs.bin, args...)
	if log := d.stderr.String(); strings.Contains(log, "another layout") {
		t.Errorf("the restart replaced a pinned map:\n%s", log)
	}
	if id := pinnedMapID(t, ifStats); id != mapID {
		t.Errorf("if_stats is map %d after the restart, was %d: its counters are lost", id, mapID)
	}
	if got := routeShow(t, tp.srv); got != seedUnrelated {
		t.Fatalf("the restart while down changed the routes:\n%s", got)
	}
	tp.sw.ip(t, "link", "set", "sw1", "up")
	waitFor(t, "eth1's routes to come back", func() bool { return routeAll(t, tp.srv) == before })
	// Counted once the restore has returned, a moment after the kernel shows it.
	waitFor(t, "the metrics to count eth1's restore", func() bool {
		v, ok := sample(t, tp.srv.scrape(t, defaultMetrics), `linkbeat_route_restores_total{interface="eth1"}`)
		return ok && v >= 1
	})
}

// TestUnitCapabilitiesEachNeeded takes each capability the daemon checks
// at start out of the unit's set, and all of them: it must refuse to run,
// naming exactly what is missing. And the pin directory must be bound in
// as the unit does: through the root-only bpffs root, it cannot be reached.
func TestUnitCapabilitiesEachNeeded(t *testing.T) {
	u := readUnit(t)
	caps, bounding := unitCaps(t, u, "Service.AmbientCapabilities"), unitCaps(t, u, "Service.CapabilityBoundingSet")
	fs := newServiceFS(t)
	ns := newNetns(t)
	ns.vethPair(t, "v0", "v1")
	failure := func(t *testing.T, caps []string, pins string) string {
		t.Helper()
		argv := append(append(append([]string{"netns", "exec", string(ns)}, setpriv(caps, bounding, true)...), fs.bin),
			"run", "--bpffs-dir", pins, "--state-dir", fs.state)
		cmd := exec.Command("ip", argv...)
		out, err := cmd.CombinedOutput()
		if cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != 1 {
			t.Fatalf("want exit status 1, got %v:\n%s", err, out)
		}
		return string(out)
	}
	for _, missing := range []string{"CAP_NET_ADMIN", "CAP_BPF", "CAP_PERFMON"} {
		t.Run("without "+missing, func(t *testing.T) {
			if !slices.Contains(caps, missing) {
				t.Fatalf("the unit does not grant %s", missing)
			}
			out := failure(t, slices.DeleteFunc(slices.Clone(caps), func(c string) bool { return c == missing }), fs.pins)
			if !strings.Contains(out, "linkbeat: missing "+missing+": ") {
				t.Fatalf("the error does not name %s alone:\n%s", missing, out)
			}
			t.Log(strings.TrimSpace(out))
		})
	}
	t.Run("without capabilities", func(t *testing.T) {
		out := failure(t, nil, fs.pins)
		if !strings.Contains(out, "linkbeat: missing CAP_NET_ADMIN, CAP_BPF, CAP_PERFMON: ") {
			t.Fatalf("the error does not name the three capabilities:\n%s", out)
		}
		t.Log(strings.TrimSpace(out))
	})
	t.Run("pins through the bpffs root", func(t *testing.T) {
		out := failure(t, caps, fs.hostPins)
		if !strings.Contains(out, "permission denied") || !strings.Contains(out, fs.hostPins) {
			t.Fatalf("want a permission error on %s:\n%s", fs.hostPins, out)
		}
		t.Log(strings.TrimSpace(out))
	})
}

// pathProbeEnv hands TestPathProbeProcess its job: pin dir, slave ifindex
// and name, target.
const pathProbeEnv = "LINKBEAT_PATH_PROBE"

// TestUnitCapabilitiesPathProbes runs linkbeat's ARP path monitor (bonds'
// arp_targets) as the service user: with the unit's capabilities it probes
// a veth and finds the path alive; without CAP_NET_RAW the kernel refuses
// its packet socket. The monitor needs a process of its own for that: the
// test binary runs again under setpriv, as TestPathProbeProcess.
func TestUnitCapabilitiesPathProbes(t *testing.T) {
	u := readUnit(t)
	caps, bounding := unitCaps(t, u, "Service.AmbientCapabilities"), unitCaps(t, u, "Service.CapabilityBoundingSet")
	fs := newServiceFS(t)
	self := filepath.Join(filepath.Dir(fs.bin), "host.test")
	run(t, "install", "-m", "0755", os.Args[0], self)
	a, b := newNetns(t), newNetns(t)
	a.ip(t, "link", "add", "pp0", "type", "veth", "peer", "name", "pp1", "netns", string(b))
	a.ip(t, "link", "set", "pp0", "up")
	b.ip(t, "link", "set", "pp1", "up")
	b.ip(t, "addr", "add", "10.78.0.2/24", "dev", "pp1")
	a.ip(t, "addr", "add", "10.78.0.1/24", "dev", "pp0")
	job := fmt.Sprintf("%s,%d,pp0,10.78.0.2", fs.pins, a.ifindex(t, "pp0"))
	probe := func(caps []string) (string, error) {
		argv := append(append(append([]string{"netns", "exec", string(a)}, setpriv(caps, bounding, true)...), self),
			"-test.run=^TestPathProbeProcess$", "-test.v")
		cmd := exec.Command("ip", argv...)
		cmd.Env = append(os.Environ(), pathProbeEnv+"="+job)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := probe(caps)
	if err != nil || !strings.Contains(out, "path alive") || !strings.Contains(out, "--- PASS: TestPathProbeProcess") {
		t.Fatalf("with the unit's capabilities: %v\n%s", err, out)
	}
	t.Log("with the unit's capabilities: path alive")
	out, err = probe(slices.DeleteFunc(slices.Clone(caps), func(c string) bool { return c == "CAP_NET_RAW" }))
	if err == nil || !strings.Contains(out, "open packet socket: operation not permitted") {
		t.Fatalf("without CAP_NET_RAW, want the packet socket refused: %v\n%s", err, out)
	}
	t.Log("without CAP_NET_RAW: open packet socket: operation not permitted")
}

// TestPathProbeProcess is TestUnitCapabilitiesPathProbes' other process,
// which runs it with its job in the environment and requires its "path
// alive"; run directly it has no job and skips.
func TestPathProbeProcess(t *testing.T) {
	job := os.Getenv(pathProbeEnv)
	if job == "" {
		t.Skip("the other process of TestUnitCapabilitiesPathProbes: it runs there, with its job in " + pathProbeEnv)
	}
	f := strings.Split(job, ",")
	idx, err := strconv.Atoi(f[1])
	if err != nil || len(f) != 4 {
		t.Fatalf("bad job %q", job)
	}
	m, err := pathmon.Open(pathmon.Options{PinDir: f[0], Log: slog.New(slog.NewTextHandler(os.Stderr, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	err = m.SetBond(pathmon.Bond{Index: 1000, Name: "tbond", Targets: []netip.Addr{netip.MustParseAddr(f[3])},
		Interval: 50 * time.Millisecond, MissedMax: 3, Slaves: []pathmon.Slave{{Index: idx, Name: f[2]}}})
	if err != nil {
		t.Fatal(err)
	}
	if r := nextReport(t, m, 10*time.Second); !r.Alive {
		t.Fatalf("path report %+v, want alive", r)
	}
	fmt.Println("path alive")
}
