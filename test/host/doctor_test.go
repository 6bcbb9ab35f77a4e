package host

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/linkbeat/linkbeat/test/testkit"
)

// doctorReport is `linkbeat doctor --json`.
type doctorReport = testkit.DoctorReport

// doctorCmd runs argv (ending in linkbeat's arguments) and returns the
// parsed --json report, checking that the exit status is the report's.
func doctorCmd(t *testing.T, argv ...string) doctorReport {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	var r doctorReport
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		t.Fatalf("%s: exit %d, stdout is not a report: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(argv, " "), code, err, stdout.String(), stderr.String())
	}
	if code != r.ExitStatus {
		t.Fatalf("%s: exit status %d, but the report says %d", strings.Join(argv, " "), code, r.ExitStatus)
	}
	return r
}

// doctor runs `linkbeat doctor --json args...` in ns.
func (ns netns) doctor(t *testing.T, args ...string) doctorReport {
	t.Helper()
	argv := append([]string{"ip", "netns", "exec", string(ns), binary(t), "doctor", "--json", "--log.level", "error"}, args...)
	return doctorCmd(t, argv...)
}

// ecmpTopo is ns with links x and y, their peers xp and yp in a second
// namespace, and a multipath route over both in each family.
func ecmpTopo(t *testing.T) (ns, peer netns) {
	t.Helper()
	ns, peer = newNetns(t), newNetns(t)
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
	ns.ip(t, "route", "add", "203.0.113.0/24", "nexthop", "via", "10.1.0.2", "dev", "x", "nexthop", "via", "10.2.0.2", "dev", "y")
	ns.ip(t, "-6", "route", "add", "2001:db8:98::/64", "nexthop", "via", "2001:db8:1::2", "dev", "x", "nexthop", "via", "2001:db8:2::2", "dev", "y")
	return ns, peer
}

// TestDoctorMultipathLinkdown: a multipath route keeps a nexthop on x,
// whose carrier is gone, while ignore_routes_with_linkdown is 0: an error
// per family. Setting the sysctl to 1 (IPv4: on x, then on "all", which the
// kernel ORs in; IPv6: "all", which sets every link) ends it.
func TestDoctorMultipathLinkdown(t *testing.T) {
	ns, peer := ecmpTopo(t)
	pins := pinDir(t)
	if r := ns.doctor(t, "--bpffs-dir", pins); len(r.Find("multipath-nexthop-linkdown", "")) != 0 {
		t.Fatalf("every link has carrier, yet:\n%s", r)
	} else if len(r.Find("multipath-linkdown-not-ignored", "ipv4")) != 1 || len(r.Find("multipath-linkdown-not-ignored", "ipv6")) != 1 {
		t.Errorf("no info about the sysctls at 0:\n%s", r)
	}

	peer.ip(t, "link", "set", "xp", "down")
	rtWaitCarrier(t, ns, "x", false)
	r := ns.doctor(t, "--bpffs-dir", pins)
	v4 := r.Find("multipath-nexthop-linkdown", "203.0.113.0/24 via 10.1.0.2 dev x, via 10.2.0.2 dev y")
	v6 := r.Find("multipath-nexthop-linkdown", "-6 2001:db8:98::/64 via 2001:db8:1::2 dev x")
	if len(v4) != 1 || len(v6) != 1 {
		t.Fatalf("want one multipath-nexthop-linkdown per family:\n%s", r)
	}
	for _, f := range append(v4, v6...) {
		if f.Severity != "error" || !strings.Contains(f.Summary, "dev x") ||
			!strings.Contains(f.Why, "1/2 of the flows") || !strings.Contains(f.Why, "linkbeat run would withdraw the nexthop on x") {
			t.Errorf("finding: %+v", f)
		}
	}
	if !strings.Contains(v4[0].Fix, "net.ipv4.conf.all.ignore_routes_with_linkdown=1") || !strings.Contains(v6[0].Fix, "net.ipv6.conf.all.ignore_routes_with_linkdown=1") {
		t.Errorf("fixes: %q / %q", v4[0].Fix, v6[0].Fix)
	}
	if r.ExitStatus != 2 || r.Counts["error"] != 2 {
		t.Errorf("exit status %d, %d errors; want 2, 2", r.ExitStatus, r.Counts["error"])
	}
	// Not monitored: linkbeat would not withdraw it either.
	r = ns.doctor(t, "--bpffs-dir", pins, "--interfaces", "y")
	if f := r.Find("multipath-nexthop-linkdown", "203.0.113.0/24"); len(f) != 1 || !strings.Contains(f[0].Why, "it does not monitor x") {
		t.Errorf("with x not monitored:\n%s", r)
	}

	ns.exec(t, "sysctl", "-qw", "net.ipv4.conf.x.ignore_routes_with_linkdown=1")
	r = ns.doctor(t, "--bpffs-dir", pins)
	if len(r.Find("multipath-nexthop-linkdown", "203.0.113.0/24")) != 0 || len(r.Find("multipath-nexthop-linkdown", "2001:db8:98::/64")) != 1 {
		t.Errorf("net.ipv4.conf.x.ignore_routes_with_linkdown=1 should end the IPv4 finding only:\n%s", r)
	}
	ns.exec(t, "sysctl", "-qw", "net.ipv4.conf.x.ignore_routes_with_linkdown=0", "net.ipv4.conf.all.ignore_routes_with_linkdown=1",
		"net.ipv6.conf.all.ignore_routes_with_linkdown=1")
	r = ns.doctor(t, "--bpffs-dir", pins)
	if f := r.Find("multipath-nexthop-linkdown", ""); len(f) != 0 {
		t.Errorf("with the sysctls at 1 (ipv4 all, ipv6 all):\n%s", r)
	}
}

// TestDoctorRoutesNotMonitored: a0 carries a static route; doctor, given
// run's --interfaces or --config, reports it when run would not monitor it.
func TestDoctorRoutesNotMonitored(t *testing.T) {
	ns := newNetns(t)
	ns.exec(t, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
	ns.vethPair(t, "a0", "a1")
	ns.vethPair(t, "b0", "b1")
	ns.ip(t, "addr", "add", "10.3.0.1/24", "dev", "a0")
	ns.ip(t, "addr", "add", "10.4.0.1/24", "dev", "b0")
	rtWaitCarrier(t, ns, "a0", true)
	ns.ip(t, "route", "add", "198.51.100.0/24", "via", "10.3.0.2", "dev", "a0")
	pins := pinDir(t)

	r := ns.doctor(t, "--bpffs-dir", pins, "--interfaces", "b0")
	f := r.Find("routes-not-monitored", "a0")
	if len(f) != 1 || f[0].Severity != "warning" || !strings.Contains(f[0].Summary, "2 route(s): 10.3.0.0/24, 198.51.100.0/24") ||
		!strings.Contains(f[0].Fix, "add a0 to --interfaces") {
		t.Fatalf("routes-not-monitored for a0:\n%s", r)
	}
	for _, n := range []string{"b0", "a1", "b1", "lo"} {
		if len(r.Find("routes-not-monitored", n)) != 0 {
			t.Errorf("%s reported:\n%s", n, r)
		}
	}
	if r.ExitStatus < 1 {
		t.Errorf("exit status %d with a warning", r.ExitStatus)
	}
	if r := ns.doctor(t, "--bpffs-dir", pins, "--interfaces", "a0,b0"); len(r.Find("routes-not-monitored", "")) != 0 {
		t.Errorf("--interfaces a0,b0:\n%s", r)
	}
	if r := ns.doctor(t, "--bpffs-dir", pins); len(r.Find("routes-not-monitored", "")) != 0 {
		t.Errorf("every interface monitored by default:\n%s", r)
	}

	dir := t.TempDir()
	for name, body := range map[string]string{"b0.yaml": "interfaces:\n  b0: {}\n", "a0.yaml": "interfaces:\n  a0: {}\n  b0: {}\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if r := ns.doctor(t, "--bpffs-dir", pins, "--config", filepath.Join(dir, "b0.yaml")); len(r.Find("routes-not-monitored", "a0")) != 1 {
		t.Errorf("--config listing b0 only:\n%s", r)
	}
	if r := ns.doctor(t, "--bpffs-dir", pins, "--config", filepath.Join(dir, "a0.yaml")); len(r.Find("routes-not-monitored", "")) != 0 {
		t.Errorf("--config listing a0 and b0:\n%s", r)
	}
}

// TestDoctorCarrierPath: this host refuses fentry (and has no kprobes), so
// run gets netlink only; doctor says what that costs and how to get fentry.
// Asked for netlink, the same finding is info, and a clean namespace then
// exits 0. The finding is only built on a netlink host: this one is, and
// a host that is not cannot pass this test.
func TestDoctorCarrierPath(t *testing.T) {
	ns := newNetns(t)
	ns.vethPair(t, "c0", "c1")
	pins := pinDir(t)
	if src := expectedSource(t, ns); src != "netlink" {
		t.Fatalf("this host gives carrier source %s (LINKBEAT_HOST_CARRIER_SOURCE): the netlink finding needs a host that refuses fentry and has no kprobes", src)
	}
	r := ns.doctor(t, "--bpffs-dir", pins)
	f := r.Find("carrier-path-netlink", "")
	if len(f) != 1 || f[0].Severity != "warning" {
		t.Fatalf("want one carrier-path-netlink warning:\n%s", r)
	}
	for _, want := range []string{"linkwatch", "up to 1 s", "netif_carrier_off", "fentry: refused with EPERM", "kprobe:"} {
		if !strings.Contains(f[0].Why, want) {
			t.Errorf("why does not say %q: %s", want, f[0].Why)
		}
	}
	for _, want := range []string{"Get fentry live", "lockdown", "CAP_BPF and CAP_PERFMON", "CONFIG_KPROBES=y", "linkbeat features"} {
		if !strings.Contains(f[0].Fix, want) {
			t.Errorf("fix does not say %q: %s", want, f[0].Fix)
		}
	}
	if r.ExitStatus != 1 {
		t.Errorf("exit status %d, want 1:\n%s", r.ExitStatus, r)
	}

	r = ns.doctor(t, "--bpffs-dir", pins, "--carrier-source", "netlink")
	if f := r.Find("carrier-path-netlink", ""); len(f) != 1 || f[0].Severity != "info" {
		t.Errorf("--carrier-source netlink:\n%s", r)
	}
	if r.ExitStatus != 0 {
		t.Errorf("a clean namespace with netlink asked for: exit status %d, want 0:\n%s", r.ExitStatus, r)
	}
	r = ns.doctor(t, "--bpffs-dir", pins, "--carrier-source", "fentry")
	if f := r.Find("carrier-path-refused", ""); len(f) != 1 || f[0].Severity != "error" || r.ExitStatus != 2 {
		t.Errorf("--carrier-source fentry:\n%s", r)
	}
}

// TestDoctorBpffs: `ip netns exec` gives its command a fresh /sys, so
// /sys/fs/bpf is no bpffs there: doctor reports it. In a private mount
// namespace with a bpffs mounted at /sys/fs/bpf it does not. The host's
// own /sys/fs/bpf is never touched.
func TestDoctorBpffs(t *testing.T) {
	hostFS := strings.TrimSpace(run(t, "stat", "-f", "-c", "%T", "/sys/fs/bpf"))
	ns := newNetns(t)
	if fs := strings.TrimSpace(ns.exec(t, "stat", "-f", "-c", "%T", "/sys/fs/bpf")); fs == "bpf_fs" {
		t.Fatalf("/sys/fs/bpf is a bpffs under ip netns exec: this test cannot build the unmounted case")
	}
	r := ns.doctor(t)
	f := r.Find("bpffs-not-mounted", "/sys/fs/bpf")
	if len(f) != 1 || f[0].Severity != "warning" || !strings.Contains(f[0].Fix, "mount -t bpf bpf /sys/fs/bpf") {
		t.Fatalf("want a bpffs-not-mounted warning:\n%s", r)
	}

	r = doctorCmd(t, "ip", "netns", "exec", string(ns), "unshare", "-m", "--propagation", "private", "sh", "-c",
		`mount -t bpf bpf /sys/fs/bpf && exec "$0" doctor --json --log.level error`, binary(t))
	if f := r.Find("bpffs-not-mounted", ""); len(f) != 0 {
		t.Errorf("with a bpffs at /sys/fs/bpf in a private mount namespace:\n%s", r)
	}
	if r := ns.doctor(t, "--bpffs-dir", pinDir(t)); len(r.Find("bpffs-not-mounted", "")) != 0 {
		t.Errorf("--bpffs-dir on a bpffs:\n%s", r)
	}
	r = ns.doctor(t, "--bpffs-dir", filepath.Join(t.TempDir(), "linkbeat"))
	if f := r.Find("bpffs-not-mounted", ""); len(f) != 1 || f[0].Severity != "error" || r.ExitStatus != 2 {
		t.Errorf("--bpffs-dir outside /sys/fs/bpf on no bpffs:\n%s", r)
	}
	if after := strings.TrimSpace(run(t, "stat", "-f", "-c", "%T", "/sys/fs/bpf")); after != hostFS {
		t.Errorf("the host's /sys/fs/bpf changed from %s to %s", hostFS, after)
	}
}

// TestDoctorDelayInIfupdownFile: a bond stanza asking for updelay 150 with
// miimon 100 is found in ifupdown's files (read from --etc-dir here), with
// no bond needed.
func TestDoctorDelayInIfupdownFile(t *testing.T) {
	ns := newNetns(t)
	etc := t.TempDir()
	if err := os.MkdirAll(filepath.Join(etc, "network", "interfaces.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"network/interfaces":              "auto lo\niface lo inet loopback\n\nsource /etc/network/interfaces.d/*\n",
		"network/interfaces.d/bond0":      "auto bond0\niface bond0 inet manual\n    bond-slaves eth0 eth1\n    bond-miimon 100\n    bond-updelay 150\n    bond-downdelay 200\n",
		"network/interfaces.d/bond1.save": "iface bond1 inet manual\n",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(etc, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r := ns.doctor(t, "--bpffs-dir", pinDir(t), "--etc-dir", etc)
	f := r.Find("bond-delay-rounded", "bond0")
	if len(f) != 1 || f[0].Severity != "warning" || !strings.Contains(f[0].Summary, "updelay 150 ms is not a multiple of miimon 100 ms") ||
		!strings.Contains(f[0].Why, filepath.Join(etc, "network/interfaces.d/bond0")+":5") {
		t.Fatalf("want bond-delay-rounded for bond0's updelay:\n%s", r)
	}
	if len(r.Find("bond-delay-rounded", "")) != 1 {
		t.Errorf("downdelay 200 is a multiple of 100:\n%s", r)
	}
}

// TestDoctorTextAndGuide: the text report ends with its exit status, and
// --guide prints the decision tree and exits 0.
func TestDoctorTextAndGuide(t *testing.T) {
	ns := newNetns(t)
	code, out := ns.exitCode(t, "doctor", "--log.level", "error", "--bpffs-dir", pinDir(t), "--carrier-source", "netlink")
	if code != 0 || !strings.Contains(out, "INFO carrier-path-netlink: carrier path") || !strings.Contains(out, "Exit status 0.") {
		t.Errorf("doctor: exit %d:\n%s", code, out)
	}
	code, out = ns.exitCode(t, "doctor", "--guide")
	if code != 0 || !strings.Contains(out, "1. Do you control the switches") || !strings.Contains(out, "Bonding: 802.3ad") {
		t.Errorf("doctor --guide: exit %d:\n%s", code, out)
	}
}
