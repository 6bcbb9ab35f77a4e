//go:build vmguest

package guest

// linkbeat doctor on real bonds (the build host has no bonding driver).
// Each test builds one topology and checks `linkbeat doctor --json`: the
// finding made, then, after the one change that fixes it, not made.

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/linkbeat/linkbeat/test/testkit"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// doctorReport is `linkbeat doctor --json` with its text, for failures.
type doctorReport struct {
	testkit.DoctorReport
	raw string
}

// runDoctor runs `linkbeat doctor --json args...`; its exit status must be
// the report's (0, 1 or 2).
func runDoctor(t *testing.T, args ...string) doctorReport {
	t.Helper()
	requireLinkbeat(t)
	cmd := exec.Command(linkbeatBin, append([]string{"doctor", "--json", "--log.level", "error"}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	r := doctorReport{raw: stdout.String()}
	if err := json.Unmarshal(stdout.Bytes(), &r.DoctorReport); err != nil {
		t.Fatalf("doctor %v: exit %d, not a report: %v\n%s\n%s", args, code, err, stdout.String(), stderr.String())
	}
	if code != r.ExitStatus {
		t.Fatalf("doctor %v: exit %d, report says %d", args, code, r.ExitStatus)
	}
	return r
}

// want fails unless exactly one finding id about subject has severity.
func (r doctorReport) want(t *testing.T, id, subject, severity string) testkit.DoctorFinding {
	t.Helper()
	var got []testkit.DoctorFinding
	for _, f := range r.Findings {
		if f.ID == id && strings.HasPrefix(f.Subject, subject) {
			got = append(got, f)
		}
	}
	if len(got) != 1 || got[0].Severity != severity {
		t.Fatalf("want one %s %s about %s:\n%s", severity, id, subject, r.raw)
	}
	return got[0]
}

func (r doctorReport) none(t *testing.T, id string) {
	t.Helper()
	for _, f := range r.Findings {
		if f.ID == id {
			t.Fatalf("unexpected %s:\n%s", id, r.raw)
		}
	}
}

func mustSay(t *testing.T, text string, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if !strings.Contains(text, p) {
			t.Errorf("%q does not say %q", text, p)
		}
	}
}

// TestDoctorFentryLive: on these kernels fentry is live and /init mounted
// bpffs, so doctor has nothing to say about the paths.
func TestDoctorFentryLive(t *testing.T) {
	r := runDoctor(t)
	for _, id := range []string{"carrier-path-netlink", "carrier-path-kprobe", "carrier-path-unprobed", "carrier-path-refused", "bpffs-not-mounted"} {
		r.none(t, id)
	}
	runDoctor(t, "--carrier-source", "netlink").want(t, "carrier-path-netlink", "carrier path", "info")
}

// TestDoctorBondNoLinkMonitor: active-backup, miimon=0, no ARP monitor.
func TestDoctorBondNoLinkMonitor(t *testing.T) {
	newBondNet(t, bondConfig{Mode: "active-backup", Miimon: 0})
	f := runDoctor(t).want(t, "bond-no-link-monitor", "bond0 (active-backup)", "warning")
	mustSay(t, f.Why, "covered while linkbeat runs")
	// Ports not monitored: nothing covers the bond.
	f = runDoctor(t, "--interfaces", "eth3").want(t, "bond-no-link-monitor", "bond0", "error")
	mustSay(t, f.Why, "would not monitor eth0, eth1")
	cfg := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(cfg, []byte("bonds:\n  bond0:\n    fast_failover: false\n"), 0o644)
	runDoctor(t, "--config", cfg).want(t, "bond-no-link-monitor", "bond0", "error")

	writeBondOpt(t, "bond0", "miimon", "100")
	runDoctor(t).none(t, "bond-no-link-monitor")
}

// TestDoctorBondNoLinkMonitorXor: a mode linkbeat cannot switch.
func TestDoctorBondNoLinkMonitorXor(t *testing.T) {
	newBondNet(t, bondConfig{Mode: "balance-xor", Miimon: 0})
	r := runDoctor(t)
	r.want(t, "bond-no-link-monitor", "bond0 (balance-xor)", "error")
	r.want(t, "bond-mode-outside-guide", "bond0", "info")
	if r.ExitStatus != 2 {
		t.Errorf("exit status %d, want 2", r.ExitStatus)
	}
}

// TestDoctorArpValidate: ARP monitoring with arp_validate none, then all
// (which rtnetlink, as the netlink library parses it, also calls none).
func TestDoctorArpValidate(t *testing.T) {
	newBondNet(t, bondConfig{Mode: "active-backup", ArpInterval: 100, ArpTargets: []string{peerAddr.Addr().String()}})
	r := runDoctor(t)
	f := r.want(t, "bond-arp-validate-none", "bond0", "warning")
	mustSay(t, f.Why, peerAddr.Addr().String())
	r.none(t, "bond-no-link-monitor")
	r.none(t, "bond-arp-no-targets")

	writeBondOpt(t, "bond0", "arp_validate", "all")
	runDoctor(t).none(t, "bond-arp-validate-none")

	// The same bond without a target: the ARP monitor probes nothing.
	writeBondOpt(t, "bond0", "arp_ip_target", "-"+peerAddr.Addr().String())
	runDoctor(t).want(t, "bond-arp-no-targets", "bond0", "error")
}

// TestDoctorDelayRounded: updelay 150 with miimon 100; the kernel keeps
// 100 and says so only in its log.
func TestDoctorDelayRounded(t *testing.T) {
	n := newBondNet(t, bondConfig{Mode: "active-backup", Miimon: 100, UpDelay: 150})
	if got := n.Bond.Opt("updelay"); got != "100" {
		t.Fatalf("updelay is %s, want the kernel's rounding to 100", got)
	}
	f := runDoctor(t).want(t, "bond-delay-rounded", "bond0", "warning")
	mustSay(t, f.Summary, "updelay 150 ms is not a multiple of miimon 100 ms", "kernel uses 100 ms")
	mustSay(t, f.Why, "kernel log")

	writeBondOpt(t, "bond0", "updelay", "200") // the log line is now stale
	runDoctor(t).none(t, "bond-delay-rounded")
}

// TestDoctorActiveBackupMixedSpeed: eth0 runs at 10000 Mb/s, eth1 at 1000
// (test/vm's nicSpeed); no primary, then eth0 as primary.
func TestDoctorActiveBackupMixedSpeed(t *testing.T) {
	newBondNet(t, bondConfig{Mode: "active-backup", Miimon: 100})
	f := runDoctor(t).want(t, "bond-ab-mixed-speed-no-primary", "bond0", "warning")
	mustSay(t, f.Summary, "eth0 10000 Mb/s", "eth1 1000 Mb/s")
	mustSay(t, f.Fix, "primary eth0")

	writeBondOpt(t, "bond0", "primary", "eth0")
	runDoctor(t).none(t, "bond-ab-mixed-speed-no-primary")
}

// lacpActor and lacpPartner read a port's LACP port states
// (ad_actor_oper_port_state, ad_partner_oper_port_state): 0x08 sync,
// 0x40 defaulted, 0x80 expired.
func lacpActor(port string) int {
	n, _ := strconv.Atoi(SlaveAttr(port, "ad_actor_oper_port_state"))
	return n
}

func lacpPartner(port string) int {
	n, _ := strconv.Atoi(SlaveAttr(port, "ad_partner_oper_port_state"))
	return n
}

// TestDoctorLACPNoPartner: 802.3ad over eth0 (10000) and eth1 (1000) on
// the QEMU hub, whose other ports are plain NICs: no LACP partner (each
// port's LACPDUs reach the other and are dropped as a loopback), and the
// speeds differ.
func TestDoctorLACPNoPartner(t *testing.T) {
	guardNICs(t)
	newBond(t, bondConfig{Mode: "802.3ad", Miimon: 100, LacpRate: "fast", Slaves: []string{"eth0", "eth1"}})
	for _, p := range []string{"eth0", "eth1"} {
		waitFor(t, 60*time.Second, p+" LACP defaulted", func() bool { return lacpActor(p)&0x40 != 0 })
	}
	r := runDoctor(t)
	f := r.want(t, "bond-lacp-no-partner", "bond0 (802.3ad)", "error")
	mustSay(t, f.Summary, "eth0, eth1")
	f = r.want(t, "bond-lacp-speed-duplex-mismatch", "bond0", "warning")
	mustSay(t, f.Summary, "eth0 10000 Mb/s", "eth1 1000 Mb/s")
	r.none(t, "bond-lacp-split-aggregators") // the no-partner finding explains it
}

// lacpPeer makes netns "lacp" and, for each bond in bonds (name -> ports),
// an 802.3ad bond there over the ns ends of veth pairs; the root ends are
// named after the ports with "l" prefixed (lpa0 <-> pa0 ...).
func lacpPeer(t *testing.T, bonds map[string][]string) {
	t.Helper()
	netns.DeleteNamed("lacp")
	ns, err := testkit.NewNamed("lacp", nil)
	if err != nil {
		t.Fatalf("netns lacp: %v", err)
	}
	t.Cleanup(func() { netns.DeleteNamed("lacp"); ns.Close() })
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	for name, ports := range bonds {
		b := netlink.NewLinkBond(netlink.LinkAttrs{Name: name})
		b.Mode, b.Miimon, b.LacpRate = netlink.BOND_MODE_802_3AD, 100, netlink.BOND_LACP_RATE_FAST
		if err := h.LinkAdd(b); err != nil {
			t.Fatalf("lacp: create %s: %v", name, err)
		}
		bl, err := h.LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ports {
			v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "l" + p}, PeerName: p, PeerNamespace: netlink.NsFd(int(ns))}
			if err := netlink.LinkAdd(v); err != nil {
				t.Fatalf("veth l%s/%s: %v", p, p, err)
			}
			pl, err := h.LinkByName(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := h.LinkSetMaster(pl, bl); err != nil {
				t.Fatalf("lacp: enslave %s: %v", p, err)
			}
		}
		if err := h.LinkSetUp(bl); err != nil {
			t.Fatal(err)
		}
	}
}

// rootLACPBond makes bond0, 802.3ad, over the root ends.
func rootLACPBond(t *testing.T, ports ...string) {
	t.Helper()
	b := netlink.NewLinkBond(netlink.LinkAttrs{Name: "bond0"})
	b.Mode, b.Miimon, b.LacpRate = netlink.BOND_MODE_802_3AD, 100, netlink.BOND_LACP_RATE_FAST
	if err := netlink.LinkAdd(b); err != nil {
		t.Fatalf("create bond0: %v", err)
	}
	t.Cleanup(func() {
		if l, err := netlink.LinkByName("bond0"); err == nil {
			netlink.LinkDel(l)
		}
	})
	bl := mustLink(t, "bond0")
	for _, p := range ports {
		if err := netlink.LinkSetMaster(mustLink(t, p), bl); err != nil {
			t.Fatalf("enslave %s: %v", p, err)
		}
	}
	setAdmin(t, "bond0", true)
	// LACP has converged: a partner heard (neither defaulted nor expired),
	// and the partner in sync.
	for _, p := range ports {
		waitFor(t, 60*time.Second, p+" LACP partner in sync", func() bool { return lacpActor(p)&0xc0 == 0 && lacpPartner(p)&0x08 != 0 })
	}
}

// TestDoctorLACPPartner: bond0 over veths whose peers form one 802.3ad
// bond in another netns: a partner, one aggregator, equal speeds (veth
// says 10000 full): nothing to report. Peers in two different bonds: two
// partners, two aggregators.
func TestDoctorLACPPartner(t *testing.T) {
	guardNICs(t)
	t.Run("one partner", func(t *testing.T) {
		lacpPeer(t, map[string][]string{"bond1": {"pa0", "pa1"}})
		rootLACPBond(t, "lpa0", "lpa1")
		r := runDoctor(t, "--interfaces", "bond0")
		for _, id := range []string{"bond-lacp-no-partner", "bond-lacp-speed-duplex-mismatch", "bond-lacp-split-aggregators"} {
			r.none(t, id)
		}
	})
	t.Run("two partners", func(t *testing.T) {
		lacpPeer(t, map[string][]string{"bond1": {"pb0"}, "bond2": {"pb1"}})
		rootLACPBond(t, "lpb0", "lpb1")
		r := runDoctor(t, "--interfaces", "bond0")
		f := r.want(t, "bond-lacp-split-aggregators", "bond0", "warning")
		mustSay(t, f.Summary, "2 aggregators")
		r.none(t, "bond-lacp-no-partner")
	})
}
