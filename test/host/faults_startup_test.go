package host

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Start-up conditions: the daemon started before its
// interfaces exist, without bpffs, without tracefs, without BTF, and as a
// user without capabilities.

// noSysAdmin runs the next command as root without CAP_SYS_ADMIN: it
// cannot mount anything, like a daemon given only the capabilities it
// documents.
var noSysAdmin = []string{"setpriv", "--bounding-set", "-sys_admin", "--inh-caps", "-sys_admin", "--"}

// waitLog waits until the daemon's log holds s.
func waitLog(t *testing.T, d *daemon, s string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(d.stderr.String(), s) {
		select {
		case <-d.done:
			t.Fatalf("linkbeat exited while waiting for %q:\n%s", s, d.stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the log after %s:\n%s", s, timeout, d.stderr.String())
		}
	}
}

type featureReport struct {
	CarrierSource string `json:"carrier_source"`
	TCMechanism   string `json:"tc_mechanism"`
	Tracepoints   bool   `json:"tracepoints"`
	Checks        []struct {
		Name   string `json:"name"`
		OK     bool   `json:"ok"`
		Detail string `json:"detail"`
	} `json:"checks"`
}

func (f featureReport) check(t *testing.T, name string) (bool, string) {
	t.Helper()
	for _, c := range f.Checks {
		if c.Name == name {
			return c.OK, c.Detail
		}
	}
	t.Fatalf("features has no %s check: %+v", name, f)
	return false, ""
}

// featuresVia runs `prefix... linkbeat features --json args...` in ns.
func (ns netns) featuresVia(t *testing.T, prefix []string, args ...string) featureReport {
	t.Helper()
	argv := append(append(append(append([]string{"netns", "exec", string(ns)}, prefix...), binary(t)), "features", "--json", "--log.level", "error"), args...)
	out, err := exec.Command("ip", argv...).Output()
	if err != nil {
		t.Fatalf("features %v: %v", args, err)
	}
	var f featureReport
	if err := json.Unmarshal(out, &f); err != nil {
		t.Fatalf("features --json: %v\n%s", err, out)
	}
	return f
}

// routedVeth gives ns a veth pair dev/peer with a static route over dev.
func routedVeth(t *testing.T, ns netns, dev, peer, subnet, dst string) {
	t.Helper()
	ns.vethPair(t, dev, peer)
	ns.ip(t, "addr", "add", subnet+".1/24", "dev", dev)
	ns.ip(t, "route", "add", dst, "via", subnet+".2", "dev", dev)
}

func hasRoute(t *testing.T, ns netns, dst string) bool {
	return strings.Contains(ns.ip(t, "route", "show", dst), dst)
}

// checkFailover drops peer's side and waits for the daemon to withdraw
// dst, then brings it back and waits for the route to return.
func checkFailover(t *testing.T, ns netns, peer, dst string) {
	t.Helper()
	ns.ip(t, "link", "set", peer, "down")
	waitFor(t, dst+" withdrawn", func() bool { return !hasRoute(t, ns, dst) })
	ns.ip(t, "link", "set", peer, "up")
	waitFor(t, dst+" restored", func() bool { return hasRoute(t, ns, dst) })
}

func TestStartupBeforeConfiguredInterfacesExist(t *testing.T) {
	ns := newNetns(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "linkbeat.yaml")
	os.WriteFile(cfg, []byte("interfaces:\n  lbl0: {}\n"), 0o644)
	d := ns.start(t, "run", "--config", cfg, "--bpffs-dir", pinDir(t), "--state-dir", dir, "--no-script-on-exit")
	waitLog(t, d, `msg="configured interface not present: monitored once it appears" ifname=lbl0`, eventTimeout)

	routedVeth(t, ns, "lbl0", "lbl1", "10.61.0", "198.51.100.0/24")
	waitLog(t, d, `msg="interface added" ifname=lbl0`, eventTimeout)
	checkFailover(t, ns, "lbl1", "198.51.100.0/24")
}

// daemonPid is the pid of the linkbeat process: `ip netns exec`, sh -c
// exec and setpriv all exec in place.
func (d *daemon) pid() string { return strconv.Itoa(d.cmd.Process.Pid) }

func TestStartupWithoutBpffsMountsIt(t *testing.T) {
	ns := newNetns(t)
	routedVeth(t, ns, "lbb0", "lbb1", "10.62.0", "198.51.101.0/24")
	dir := t.TempDir()
	// Make sure: no bpffs at /sys/fs/bpf in the daemon's mount namespace.
	d := ns.startWith(t, []string{"sh", "-c", `umount /sys/fs/bpf 2>/dev/null; exec "$@"`, "sh"}, binary(t),
		"run", "--interfaces", "lbb0", "--bpffs-dir", "/sys/fs/bpf/linkbeat", "--state-dir", dir, "--no-script-on-exit")
	fsType := run(t, "nsenter", "-t", d.pid(), "-m", "stat", "-f", "-c", "%T", "/sys/fs/bpf")
	if strings.TrimSpace(fsType) != "bpf_fs" {
		t.Fatalf("/sys/fs/bpf in the daemon's mount namespace is %q, want the bpffs it mounted", fsType)
	}
	out := run(t, "nsenter", "-t", d.pid(), "-m", "-n", binary(t), "stats", "--json", "--bpffs-dir", "/sys/fs/bpf/linkbeat")
	var rows []statsRow
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("stats --json: %v\n%s", err, out)
	}
	idx, found := ns.ifindex(t, "lbb0"), false
	for _, r := range rows {
		found = found || r.Ifindex == idx
	}
	if !found {
		t.Fatalf("stats, read through the pins the daemon made, lack lbb0 (ifindex %d): %s", idx, out)
	}
	checkFailover(t, ns, "lbb1", "198.51.101.0/24")
}

func TestStartupWithoutBpffsAndNotAllowedToMountRunsUnpinned(t *testing.T) {
	ns := newNetns(t)
	routedVeth(t, ns, "lbp0", "lbp1", "10.63.0", "198.51.102.0/24")
	dir := t.TempDir()
	d := ns.startWith(t, noSysAdmin, binary(t), "run", "--interfaces", "lbp0", "--bpffs-dir", "/sys/fs/bpf/linkbeat", "--state-dir", dir, "--no-script-on-exit")
	log := d.stderr.String()
	for _, want := range []string{"level=ERROR msg=\"running without pins", "mounting one failed (operation not permitted)", "run `mount -t bpf bpf /sys/fs/bpf`"} {
		if !strings.Contains(log, want) {
			t.Errorf("the log does not say %q:\n%s", want, log)
		}
	}
	// It keeps running on what it can: failover, and metrics.
	checkFailover(t, ns, "lbp1", "198.51.102.0/24")
	if m := ns.scrape(t, defaultMetrics); !strings.Contains(m, `linkbeat_interface_carrier{interface="lbp0"} 1`) {
		t.Fatalf("metrics of an unpinned daemon lack lbp0's carrier:\n%s", m)
	}
}

func TestStartupWithoutTracefs(t *testing.T) {
	ns := newNetns(t)
	// Allowed: mounted at /sys/kernel/tracing.
	f := ns.featuresVia(t, []string{"sh", "-c", `umount /sys/kernel/tracing 2>/dev/null; exec "$@"`, "sh"})
	if ok, detail := f.check(t, "tracefs"); !ok || detail != "mounted tracefs at /sys/kernel/tracing" {
		t.Errorf("tracefs check %v %q, want it mounted by linkbeat", ok, detail)
	}
	// Not allowed: said, with the fix, and not fatal.
	f = ns.featuresVia(t, noSysAdmin)
	ok, detail := f.check(t, "tracefs")
	if ok || !strings.Contains(detail, "mount -t tracefs tracefs /sys/kernel/tracing") || !strings.Contains(detail, "only the kprobe fallback needs it") {
		t.Errorf("tracefs check %v %q, want a refusal naming the fix", ok, detail)
	}
	ns.vethPair(t, "lbt0", "lbt1")
	ns.startWith(t, noSysAdmin, binary(t), "run", "--interfaces", "lbt0", "--bpffs-dir", pinDir(t), "--state-dir", t.TempDir(), "--no-script-on-exit")
}

func TestStartupWithoutBTFFallsBack(t *testing.T) {
	ns := newNetns(t)
	empty := filepath.Join(t.TempDir(), "vmlinux")
	os.WriteFile(empty, nil, 0o644)
	for _, btf := range []string{"/nonexistent/vmlinux", empty} {
		f := ns.featuresVia(t, nil, "--kernel-btf", btf)
		ok, detail := f.check(t, "btf")
		if ok || !strings.Contains(detail, "no kernel BTF at "+btf) || !strings.Contains(detail, "carrier falls back to netlink") {
			t.Errorf("btf %s: check %v %q", btf, ok, detail)
		}
		if ok, detail := f.check(t, "fentry"); ok || detail != "no kernel BTF" {
			t.Errorf("btf %s: fentry check %v %q, want refused for want of BTF", btf, ok, detail)
		}
		if ok, detail := f.check(t, "tracepoints"); ok || !strings.Contains(detail, "no kernel BTF") {
			t.Errorf("btf %s: tracepoints check %v %q, want off for want of BTF", btf, ok, detail)
		}
		if f.CarrierSource != "netlink" || f.Tracepoints || f.TCMechanism == "none" {
			t.Errorf("btf %s: carrier %s, tracepoints %v, tc %s: want netlink, off, and traffic counting on", btf, f.CarrierSource, f.Tracepoints, f.TCMechanism)
		}
	}

	routedVeth(t, ns, "lbn0", "lbn1", "10.64.0", "198.51.103.0/24")
	d := ns.start(t, "run", "--interfaces", "lbn0", "--kernel-btf", empty, "--bpffs-dir", pinDir(t), "--state-dir", t.TempDir(), "--no-script-on-exit")
	if log := d.stderr.String(); !strings.Contains(log, `msg="carrier path refused" source=fentry reason="no kernel BTF"`) ||
		!strings.Contains(log, `msg="tx error counting off" err="no kernel BTF`) {
		t.Errorf("the log does not name the fallbacks:\n%s", log)
	}
	m := ns.scrape(t, defaultMetrics)
	for _, series := range []string{`linkbeat_carrier_source_info{source="netlink"}`, `linkbeat_tracepoints_enabled`} {
		want := 1.0
		if series == "linkbeat_tracepoints_enabled" {
			want = 0
		}
		if v, ok := sample(t, m, series); !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", series, v, ok, want)
		}
	}
	checkFailover(t, ns, "lbn1", "198.51.103.0/24")
}

func TestStartupAsNonRootWithoutCapabilities(t *testing.T) {
	ns := newNetns(t)
	dir := t.TempDir()
	os.Chmod(dir, 0o777)
	argv := []string{"netns", "exec", string(ns), "setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", "--inh-caps", "-all", "--",
		binary(t), "run", "--state-dir", dir, "--bpffs-dir", "/sys/fs/bpf/linkbeat"}
	out, err := exec.Command("ip", argv...).CombinedOutput()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 1 {
		t.Fatalf("run without capabilities: %v, want exit 1\n%s", err, out)
	}
	for _, want := range []string{"missing CAP_NET_ADMIN, CAP_BPF, CAP_PERFMON", "run as root, or grant them"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the error does not say %q:\n%s", want, out)
		}
	}
}
