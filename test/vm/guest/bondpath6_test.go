//go:build vmguest

package guest

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/linkbeat/linkbeat/internal/tc"
	"github.com/linkbeat/linkbeat/test/dropper"
)

// IPv6 path health: ns_targets, neighbour solicitations per
// slave and the NAs counted on each slave's TC ingress. The testbed is
// bondpath_test.go's, with IPv6 turned on for the bond and the peer.

var (
	bondAddr6 = netip.MustParsePrefix("2001:db8:98::1/64")
	peerAddr6 = netip.MustParsePrefix("2001:db8:98::2/64")
)

// enableIPv6 turns IPv6 on for the bond and the peer's NIC (the testbed
// keeps it off) and gives both an address, without DAD so it is usable at
// once.
func (n *bondNet) enableIPv6(t *testing.T) {
	t.Helper()
	writeSysctl(t, "net/ipv6/conf/"+n.Bond.Name+"/disable_ipv6", "0")
	a := &netlink.Addr{IPNet: prefixNet(bondAddr6), Flags: unix.IFA_F_NODAD}
	if err := netlink.AddrAdd(mustLink(t, n.Bond.Name), a); err != nil {
		t.Fatalf("add %s to %s: %v", bondAddr6, n.Bond.Name, err)
	}
	p := n.Peer
	err := p.Do(func() error {
		return os.WriteFile("/proc/sys/net/ipv6/conf/"+p.NIC+"/disable_ipv6", []byte("0"), 0o644)
	})
	if err != nil {
		t.Fatalf("IPv6 on %s in %s: %v", p.NIC, p.Name, err)
	}
	pl, err := p.Handle().LinkByName(p.NIC)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Handle().AddrAdd(pl, &netlink.Addr{IPNet: prefixNet(peerAddr6), Flags: unix.IFA_F_NODAD}); err != nil {
		t.Fatalf("add %s to %s in %s: %v", peerAddr6, p.NIC, p.Name, err)
	}
}

func prefixNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 128)}
}

// dropNATo makes the peer stop sending the NAs addressed to dst: one
// slave's NS probes go unanswered, its carrier and every other frame pass
// (test/dropper.NATo on the peer NIC's egress, as dropARPFrom attaches).
func (p *peerNS) dropNATo(t *testing.T, dst net.HardwareAddr) *arpDrop {
	t.Helper()
	prog, err := dropper.NATo(dst)
	if err != nil {
		t.Fatal(err)
	}
	d := p.attachDrop(t, prog, "NA", tc.Hook{Program: prog, Egress: true, Name: "lbtest-dropna", Priority: 1, Protocol: unix.ETH_P_IPV6})
	t.Logf("%s in %s drops the NAs it sends to %s (%s egress)", p.NIC, p.Name, dst, d.mech)
	return d
}

// setNSTarget sets the bond's ns_ip6_target to target alone, by netlink
// (IFLA_BOND_NS_IP6_TARGET, nested, one address per index) and nothing
// else, so no other option is touched.
func setNSTarget(t *testing.T, b *bondDev, target netip.Addr) {
	t.Helper()
	req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(b.Index)
	req.AddData(msg)
	li := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
	li.AddRtAttr(nl.IFLA_INFO_KIND, nl.NonZeroTerminated("bond"))
	data := li.AddRtAttr(nl.IFLA_INFO_DATA, nil)
	ns := data.AddRtAttr(unix.IFLA_BOND_NS_IP6_TARGET, nil)
	ns.AddRtAttr(0, target.AsSlice())
	req.AddData(li)
	if _, err := req.Execute(unix.NETLINK_ROUTE, 0); err != nil {
		t.Fatalf("%s ns_ip6_target %s: %v", b.Name, target, err)
	}
	// linkbeat's view (netlink, as doctor reads it); the kernel's is
	// checked once the ARP monitor runs (/proc/net/bonding lists the
	// targets only then).
	_, opts, _ := statusJSON(t).slaves(b.Name)
	if got := fmt.Sprint(opts["ns_ip6_target"]); got != "["+target.String()+"]" {
		t.Fatalf("status --json shows %s's ns_ip6_target as %s, want [%s]", b.Name, got, target)
	}
}

// pathConfig writes a config probing bond's targets.
func pathConfig(t *testing.T, bond string, arp, ns []string) string {
	t.Helper()
	y := fmt.Sprintf("bonds:\n  %s:\n    arp_interval: %v\n    missed_max: %d\n", bond, pathInterval, pathMissedMax)
	if len(arp) > 0 {
		y += fmt.Sprintf("    arp_targets: [%s]\n", strings.Join(arp, ", "))
	}
	if len(ns) > 0 {
		y += fmt.Sprintf("    ns_targets: [%s]\n", strings.Join(ns, ", "))
	}
	cfg := filepath.Join(t.TempDir(), "linkbeat.yaml")
	if err := os.WriteFile(cfg, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	runLinkbeat(t, "config", "check", cfg)
	return cfg
}

// pathReplies reads `linkbeat status --json`'s answers per slave, keyed
// "probe target" ("ns 2001:db8:98::2").
func pathReplies(t *testing.T, lb *bondRun, bond string) map[string]map[string]uint64 {
	t.Helper()
	rep := statusJSON(t, "--state-dir", lb.StateDir)
	slaves, _, ok := rep.slaves(bond)
	if !ok {
		t.Fatalf("status --json lists no bond %s:\n%s", bond, rep.raw)
	}
	out := map[string]map[string]uint64{}
	for name, s := range slaves {
		out[name] = map[string]uint64{}
		paths, _ := s["paths"].([]any)
		for _, p := range paths {
			m, _ := p.(map[string]any)
			replies, _ := m["replies"].(float64)
			out[name][fmt.Sprint(m["probe"], " ", m["target"])] = uint64(replies)
		}
	}
	return out
}

// waitAlive waits for every slave's alive verdict after mark.
func waitAlive(t *testing.T, lb *bondRun, b *bondDev, mark int) {
	t.Helper()
	for _, sl := range b.Slaves {
		lb.waitLog(t, mark, pathEventTimeout, fmt.Sprintf("msg=\"path verdict\" bond=%s slave=%s verdict=alive", b.Name, sl),
			isPathVerdict(b.Name, sl, "alive"))
	}
}

// waitPathSwitch waits for eth0's dead verdict and linkbeat's switch to
// eth1 with reason path, in the log and in the kernel; eth0's carrier must
// have stayed up.
func waitPathSwitch(t *testing.T, lb *bondRun, b *bondDev, mark int, since int64) {
	t.Helper()
	lb.waitLog(t, mark, pathEventTimeout, "msg=\"path verdict\" bond="+b.Name+" slave=eth0 verdict=dead",
		isPathVerdict(b.Name, "eth0", "dead"))
	if c := carrierOf("eth0"); c != "1" {
		t.Errorf("eth0 carrier is %q when its path went dead; the drop must leave it up", c)
	}
	rec := lb.waitLog(t, mark, pathEventTimeout, "msg=\"bond failover\" bond="+b.Name, isFailoverLog(b.Name))
	t.Logf("linkbeat: %v", rec)
	if rec["from"] != "eth0" || rec["to"] != "eth1" || rec["reason"] != "path" || rec["by"] != "linkbeat" {
		t.Errorf("linkbeat logged failover from=%s to=%s reason=%s by=%s, want from=eth0 to=eth1 reason=path by=linkbeat",
			rec["from"], rec["to"], rec["reason"], rec["by"])
	}
	b.waitActive("eth1", switchTimeout)
	f := lb.waitFailoverRecord(t, b.Name, since, 10*time.Second)
	if f.From != "eth0" || f.To != "eth1" || f.Reason != "path" {
		t.Errorf("bonds.json last failover = from %s to %s reason %s, want from eth0 to eth1 reason path", f.From, f.To, f.Reason)
	}
	t.Logf("TIMING path6: eth0 dead and switched %v after the drop (interval %v, missed_max %d)",
		time.Duration(f.KernelNs-since).Round(time.Millisecond), pathInterval, pathMissedMax)
}

// TestBondPathIPv6: an active-backup bond (miimon 100) with IPv6, linkbeat
// probing the peer's IPv6 address (ns_targets only). doctor first warns
// that the bond, made IPv6-only, has no path check, and not once the
// config has ns_targets. Both paths go alive on NAs, shown per slave by
// status. The peer stops sending NAs to eth0's probe address (TC egress
// in its netns); eth0's carrier stays up, yet its path goes dead and
// linkbeat switches to eth1 with reason path; eth1 never goes dead. When
// the drop goes, eth0 is alive again and eth1 stays active.
func TestBondPathIPv6(t *testing.T) {
	requireLinkbeat(t)
	n := newBondNet(t, bondConfig{Mode: "active-backup", Miimon: 100})
	b := n.Bond
	n.enableIPv6(t)
	target := peerAddr6.Addr().String()
	// IPv6-only: the bond's IPv4 address goes.
	a, _ := netlink.ParseAddr(bondAddr.String())
	if err := netlink.AddrDel(mustLink(t, b.Name), a); err != nil {
		t.Fatalf("remove %s from %s: %v", bondAddr, b.Name, err)
	}
	cfg := pathConfig(t, b.Name, nil, []string{target})
	f := runDoctor(t).want(t, "bond-ipv6-no-path-check", b.Name, "warning")
	mustSay(t, f.Fix, "bonds."+b.Name+".ns_targets")
	runDoctor(t, "--config", cfg).none(t, "bond-ipv6-no-path-check")

	lb := startBondRun(t, "--config", cfg)
	waitAlive(t, lb, b, 0)
	if a := b.Active(); a != "eth0" {
		t.Fatalf("active slave %q before the drop, want eth0\n%s", a, b.Dump())
	}
	mac0 := lb.probeMAC(t, b.Name, "eth0")
	if mac1 := lb.probeMAC(t, b.Name, "eth1"); mac0.String() == mac1.String() {
		t.Fatalf("eth0 and eth1 probe from the same address %s", mac0)
	}
	// The backup (eth1) hears its NAs too: unicast to its probe address,
	// which its filter accepts; the bond synced its multicast groups to
	// eth0 only.
	got := pathReplies(t, lb, b.Name)
	t.Logf("status --json paths: %v", got)
	for _, sl := range b.Slaves {
		if got[sl]["ns "+target] == 0 {
			t.Errorf("status shows no NA from %s through %s: %v", target, sl, got)
		}
	}

	down0 := carrierDownCount("eth0")
	lm := lb.logMark()
	drop := n.Peer.dropNATo(t, mac0)
	waitPathSwitch(t, lb, b, lm, monotonicNow())

	lm = lb.logMark()
	if err := drop.Remove(); err != nil {
		t.Fatal(err)
	}
	lb.waitLog(t, lm, pathEventTimeout, "msg=\"path verdict\" bond="+b.Name+" slave=eth0 verdict=alive",
		isPathVerdict(b.Name, "eth0", "alive"))
	b.holdActive("eth1", time.Second)
	if got := carrierDownCount("eth0"); got != down0 {
		t.Errorf("eth0 carrier_down_count went from %d to %d during the drop; the carrier must stay up", down0, got)
	}
	if recs := lb.findLogs(0, isPathVerdict(b.Name, "eth1", "dead")); len(recs) > 0 {
		t.Errorf("eth1's path went dead, but only eth0's NAs were dropped: %v", recs)
	}
	if recs := lb.findLogs(0, isFailoverLog(b.Name)); len(recs) != 1 {
		t.Errorf("linkbeat logged %d failovers, want the one to eth1: %v", len(recs), recs)
	}
}

// TestBondPathDualStack: ARP and NS targets together (the peer's IPv4 and
// IPv6 addresses). Both probe kinds count on both slaves. With eth0's NAs
// dropped its ARP replies keep it alive (any target's answer does, as in
// bonding); once its ARP probes go unanswered too, it is dead and linkbeat
// switches to eth1 with reason path.
func TestBondPathDualStack(t *testing.T) {
	requireLinkbeat(t)
	n := newBondNet(t, bondConfig{Mode: "active-backup", Miimon: 100})
	b := n.Bond
	n.enableIPv6(t)
	v4, v6 := peerAddr.Addr().String(), peerAddr6.Addr().String()
	cfg := pathConfig(t, b.Name, []string{v4}, []string{v6})
	runDoctor(t, "--config", cfg).none(t, "bond-ipv6-no-path-check")
	lb := startBondRun(t, "--config", cfg)
	waitAlive(t, lb, b, 0)
	mac0 := lb.probeMAC(t, b.Name, "eth0")
	before := pathReplies(t, lb, b.Name)
	t.Logf("status --json paths: %v", before)
	for _, sl := range b.Slaves {
		if before[sl]["arp "+v4] == 0 || before[sl]["ns "+v6] == 0 {
			t.Errorf("%s: want ARP replies and NAs both counted: %v", sl, before[sl])
		}
	}

	lm := lb.logMark()
	n.Peer.dropNATo(t, mac0)
	// Long enough for missed_max intervals several times over (TCG).
	time.Sleep(4 * pathMissedMax * pathInterval)
	mid := pathReplies(t, lb, b.Name)
	time.Sleep(4 * pathMissedMax * pathInterval)
	after := pathReplies(t, lb, b.Name)
	t.Logf("eth0 with its NAs dropped: %v then %v", mid["eth0"], after["eth0"])
	if after["eth0"]["ns "+v6] != mid["eth0"]["ns "+v6] {
		t.Errorf("eth0's NA count moved (%d -> %d) while the peer dropped the NAs to it", mid["eth0"]["ns "+v6], after["eth0"]["ns "+v6])
	}
	if after["eth0"]["arp "+v4] <= mid["eth0"]["arp "+v4] {
		t.Errorf("eth0's ARP replies stopped (%d -> %d); only its NAs were dropped", mid["eth0"]["arp "+v4], after["eth0"]["arp "+v4])
	}
	if recs := lb.findLogs(lm, isPathVerdict(b.Name, "eth0", "dead")); len(recs) > 0 {
		t.Fatalf("eth0 went dead while its ARP target answered: %v", recs)
	}
	if a := b.Active(); a != "eth0" {
		t.Fatalf("active slave %q while eth0's ARP target answered, want eth0", a)
	}

	n.Peer.dropARPFrom(t, mac0)
	waitPathSwitch(t, lb, b, lm, monotonicNow())
	if recs := lb.findLogs(0, isPathVerdict(b.Name, "eth1", "dead")); len(recs) > 0 {
		t.Errorf("eth1's path went dead: %v", recs)
	}
}

// TestBondPathIPv6KernelNSTarget: the bond's own ARP monitor probes the
// same IPv6 target (ns_ip6_target, arp_validate all, arp_interval 100,
// arp_missed_max 10) while linkbeat does. No fight: the kernel's NAs go to
// the bond's address and linkbeat's to each slave's probe address, so
// neither counts the other's (linkbeat's counter rises at most once per
// probe; the kernel ignores NAs to addresses that are not the bond's).
// Over a few seconds nothing switches and no slave fails in the kernel's
// view. When the peer drops only linkbeat's NAs to eth0, linkbeat
// switches to eth1 (reason path) and the kernel keeps eth1, up in its
// view. doctor warns once arp_validate goes to none.
func TestBondPathIPv6KernelNSTarget(t *testing.T) {
	requireLinkbeat(t)
	n := newBondNet(t, bondConfig{Mode: "active-backup", Miimon: 100})
	b := n.Bond
	n.enableIPv6(t)
	target := peerAddr6.Addr().String()
	setNSTarget(t, b, peerAddr6.Addr())
	writeBondOpt(t, b.Name, "arp_validate", "all")
	// 10 missed intervals: TCG stalls a guest for 100s of ms at times,
	// and this test is about who counts which NA, not about speed.
	writeBondOpt(t, b.Name, "arp_missed_max", "10")
	writeBondOpt(t, b.Name, "arp_interval", "100") // turns miimon off
	if m := b.Opt("miimon"); m != "0" {
		t.Fatalf("miimon %s with the ARP monitor on, want 0", m)
	}
	if d := b.Dump(); !strings.Contains(d, target) {
		t.Fatalf("%s does not list ns_ip6_target %s:\n%s", b.Name, target, d)
	}
	// The kernel's monitor alone keeps both slaves up.
	time.Sleep(2 * time.Second)
	for _, sl := range b.Slaves {
		b.waitMii(sl, "up", 30*time.Second)
	}
	// Its start may have moved the active slave (every slave starts
	// down under the ARP monitor): start from eth0, as the other tests.
	if b.Active() != "eth0" {
		writeBondOpt(t, b.Name, "active_slave", "eth0")
		b.waitActive("eth0", 10*time.Second)
	}
	// Baseline: the kernel's monitor alone is steady.
	b.holdActive("eth0", 2*time.Second)
	fail0 := map[string]string{}
	for _, sl := range b.Slaves {
		fail0[sl] = SlaveAttr(sl, "link_failure_count")
	}
	runDoctor(t).none(t, "bond-ns-target-ignored")

	cfg := pathConfig(t, b.Name, nil, []string{target})
	lb := startBondRun(t, "--config", cfg)
	waitAlive(t, lb, b, 0)
	mac0 := lb.probeMAC(t, b.Name, "eth0")

	// Side by side: nothing moves, and linkbeat counts only its own.
	r0, t0 := pathReplies(t, lb, b.Name), time.Now()
	b.holdActive("eth0", 3*time.Second)
	r1, elapsed := pathReplies(t, lb, b.Name), time.Since(t0)
	maxProbes := uint64(elapsed/pathInterval) + 2
	for _, sl := range b.Slaves {
		d := r1[sl]["ns "+target] - r0[sl]["ns "+target]
		t.Logf("%s: %d NAs counted in %v (at most %d probes)", sl, d, elapsed.Round(time.Millisecond), maxProbes)
		if d == 0 || d > maxProbes {
			t.Errorf("%s: %d NAs counted in %v, want 1..%d: one per linkbeat probe, none of the kernel's", sl, d, elapsed, maxProbes)
		}
		if st := SlaveAttr(sl, "mii_status"); st != "up" {
			t.Errorf("%s is %s in the kernel's view beside linkbeat's probes", sl, st)
		}
		if c := SlaveAttr(sl, "link_failure_count"); c != fail0[sl] {
			t.Errorf("%s link_failure_count went from %s to %s beside linkbeat's probes", sl, fail0[sl], c)
		}
	}
	if recs := lb.findLogs(0, isFailoverLog(b.Name)); len(recs) > 0 {
		t.Fatalf("linkbeat switched with both paths answering: %v", recs)
	}

	lm := lb.logMark()
	n.Peer.dropNATo(t, mac0)
	waitPathSwitch(t, lb, b, lm, monotonicNow())
	// The kernel keeps linkbeat's choice: it never switches back, and the
	// new active slave stays up in its view.
	b.holdActive("eth1", 3*time.Second)
	if st := SlaveAttr("eth1", "mii_status"); st != "up" {
		t.Errorf("eth1 is %s in the kernel's view after linkbeat's switch", st)
	}
	// eth0, now a backup, is only logged: in this testbed the kernel's
	// NS monitor takes a backup that was active down after any switch
	// made from outside, linkbeat or not (seen on 6.1 and 6.12; measured
	// on 6.1 with a bare write to active_slave and no linkbeat running:
	// eth0 down 2s later, for good).
	t.Logf("kernel's view after the switch: eth0 %s (link_failure_count %s -> %s)", SlaveAttr("eth0", "mii_status"),
		fail0["eth0"], SlaveAttr("eth0", "link_failure_count"))
	if c := SlaveAttr("eth1", "link_failure_count"); c != fail0["eth1"] {
		t.Errorf("eth1 link_failure_count went from %s to %s while linkbeat probed beside the kernel", fail0["eth1"], c)
	}
	if recs := lb.findLogs(0, isFailoverLog(b.Name)); len(recs) != 1 {
		t.Errorf("linkbeat logged %d failovers, want the one to eth1: %v", len(recs), recs)
	}

	writeBondOpt(t, b.Name, "arp_validate", "none")
	f := runDoctor(t).want(t, "bond-ns-target-ignored", b.Name, "warning")
	mustSay(t, f.Summary, target, "arp_validate=none")
}
