//go:build vmguest

package guest

// The 802.3ad testbed, on the host's two-cable wiring (vmconfig Cables):
//
//	root netns                                  netns "swpeer" (the partner)
//	bond0 10.98.0.1/24 ─┬─ eth0 ── cable A ── eth2 ─┬─ bond1 10.98.0.2/24
//	 802.3ad            └─ eth1 ── cable B ── eth3 ─┘  802.3ad
//
// Each cable is a QEMU hub of its own, so each port has one LACP partner
// port and both bonds aggregate both ports. A cut takes both ends of the
// cable carrying the stream (QMP set_link on both netdevs).

import (
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/linkbeat/linkbeat/test/vm/guest/vmctl"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// partnerBond is the 802.3ad partner's bond in the peer netns.
const partnerBond = "bond1"

// cableEnd is the partner's port at the other end of a slave's cable.
var cableEnd = map[string]string{"eth0": "eth2", "eth1": "eth3"}

// LACP actor state bits: collecting and distributing.
const lacpCollDist = 0x30

// lacpConfig is both ends' bond: miimon=100, lacp_rate=fast.
func lacpConfig() bondConfig {
	return bondConfig{Mode: "802.3ad", Miimon: 100, LacpRate: "fast", Slaves: []string{"eth0", "eth1"}}
}

// requireCables fails a test that needs the two-cable wiring on a guest
// wired as one hub: the host runs the *Cables* tests in a boot of their own.
func requireCables(t *testing.T) {
	t.Helper()
	b, err := os.ReadFile("/proc/cmdline")
	if err != nil || !strings.Contains(string(b), vmctl.CablesCmdline) {
		t.Fatalf("this test needs the two-cable wiring (%s on the kernel command line; the host's TestVM/linux-*-cables boot): cmdline %q", vmctl.CablesCmdline, b)
	}
}

// xorConfig is both ends' bond for balance-xor: miimon=100.
func xorConfig() bondConfig {
	return bondConfig{Mode: "balance-xor", Miimon: 100, Slaves: []string{"eth0", "eth1"}}
}

// newLACPNet builds the 802.3ad testbed and waits until both bonds have
// both ports collecting and distributing in one aggregator.
func newLACPNet(t *testing.T) *bondNet {
	t.Helper()
	return newCablesNet(t, lacpConfig())
}

// newCablesNet builds the two-cable testbed with cfg's bond at both ends
// (802.3ad or balance-xor) and waits until both bonds send on both ports.
func newCablesNet(t *testing.T, cfg bondConfig) *bondNet {
	t.Helper()
	requireCables(t)
	guardNICs(t)
	peer := newPartner(t, cfg)
	bond := newBond(t, cfg)
	addressBond(t, bond, peer.MAC)
	pl, err := peer.h.LinkByName(partnerBond)
	if err != nil {
		t.Fatal(err)
	}
	if err := peer.h.NeighSet(&netlink.Neigh{LinkIndex: pl.Attrs().Index, Family: unix.AF_INET, State: netlink.NUD_PERMANENT,
		IP: net.IP(bondAddr.Addr().AsSlice()), HardwareAddr: bond.MAC}); err != nil {
		t.Fatalf("static neighbour %s in %s: %v", bondAddr.Addr(), peer.Name, err)
	}
	n := &bondNet{Bond: bond, Peer: peer}
	n.waitLACP(t)
	return n
}

// newPartner moves eth2 and eth3 into the peer netns and bonds them there
// (802.3ad, as cfg) with peerAddr.
func newPartner(t *testing.T, cfg bondConfig) *peerNS {
	t.Helper()
	nics := []string{"eth2", "eth3"}
	for _, nic := range nics {
		setLinks(t, true, netdevOf(nic))
		if l := mustLink(t, nic); l.Attrs().MasterIndex != 0 {
			if err := netlink.LinkSetNoMaster(l); err != nil {
				t.Fatalf("release %s: %v", nic, err)
			}
		}
		setAdmin(t, nic, false)
	}
	ns := newPeerNetns(t, peerNSName)
	p := &peerNS{t: t, Name: peerNSName, NIC: partnerBond, Addr: peerAddr, ns: ns}
	t.Cleanup(func() {
		if p.h != nil {
			if l, err := p.h.LinkByName(partnerBond); err == nil {
				if err := p.h.LinkDel(l); err != nil {
					t.Errorf("delete %s in %s: %v", partnerBond, peerNSName, err)
				}
			}
		}
		returnNICs(t, p.ns)
		if p.h != nil {
			p.h.Close()
		}
		netns.DeleteNamed(peerNSName)
		p.ns.Close()
	})
	for _, nic := range nics {
		if err := netlink.LinkSetNsFd(mustLink(t, nic), int(ns)); err != nil {
			t.Fatalf("move %s into netns %s: %v", nic, peerNSName, err)
		}
	}
	var err error
	if p.h, err = netlink.NewHandleAt(ns, unix.NETLINK_ROUTE); err != nil {
		t.Fatalf("netlink handle in %s: %v", peerNSName, err)
	}
	b := netlink.NewLinkBond(netlink.LinkAttrs{Name: partnerBond})
	b.Mode = netlink.StringToBondMode(cfg.Mode)
	b.Miimon = cfg.Miimon
	if cfg.LacpRate != "" {
		b.LacpRate = netlink.StringToBondLacpRateMap[cfg.LacpRate]
	}
	if err := p.h.LinkAdd(b); err != nil {
		t.Fatalf("create %s in %s: %v", partnerBond, peerNSName, err)
	}
	bl, err := p.h.LinkByName(partnerBond)
	if err != nil {
		t.Fatal(err)
	}
	for _, nic := range nics {
		l, err := p.h.LinkByName(nic)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.h.LinkSetMaster(l, bl); err != nil {
			t.Fatalf("enslave %s to %s in %s: %v", nic, partnerBond, peerNSName, err)
		}
	}
	a, _ := netlink.ParseAddr(peerAddr.String())
	if err := p.h.AddrAdd(bl, a); err != nil {
		t.Fatalf("add %s to %s: %v", peerAddr, partnerBond, err)
	}
	for _, n := range []string{"lo", partnerBond} {
		l, err := p.h.LinkByName(n)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.h.LinkSetUp(l); err != nil {
			t.Fatalf("%s: set %s up: %v", peerNSName, n, err)
		}
	}
	// The bond took its first slave's MAC when it was enslaved.
	if bl, err = p.h.LinkByName(partnerBond); err != nil {
		t.Fatal(err)
	}
	p.MAC = bl.Attrs().HardwareAddr
	return p
}

// lacpState says whether a bond's ports are all in one aggregator,
// enabled by the bond (state active) and collecting and distributing
// (without lacp, only up and active: balance-xor); if not, what each
// port is.
func lacpState(h *netlink.Handle, slaves []string, lacp bool) (bool, string) {
	var agg uint16
	ok := true
	var desc []string
	for i, s := range slaves {
		l, err := h.LinkByName(s)
		if err != nil {
			return false, err.Error()
		}
		bs, isBond := l.Attrs().Slave.(*netlink.BondSlave)
		if !isBond {
			return false, s + " is not a bond slave"
		}
		if i == 0 {
			agg = bs.AggregatorId
		}
		up := bs.State == netlink.BondStateActive && bs.MiiStatus == netlink.BondLinkUp
		if lacp {
			up = up && agg != 0 && bs.AggregatorId == agg && bs.AdActorOperPortState&lacpCollDist == lacpCollDist
		}
		ok = ok && up
		desc = append(desc, fmt.Sprintf("%s mii=%s agg=%d state=%s actor=%#x partner=%#x", s, bs.MiiStatus, bs.AggregatorId, bs.State, bs.AdActorOperPortState, bs.AdPartnerOperPortState))
	}
	return ok, strings.Join(desc, "; ")
}

// waitLACP waits until both bonds send on both ports: in 802.3ad, both
// aggregated.
func (n *bondNet) waitLACP(t *testing.T) {
	t.Helper()
	root := rootHandle(t)
	lacp := n.Bond.Cfg.Mode == "802.3ad"
	deadline := time.Now().Add(60 * time.Second)
	for {
		okA, a := lacpState(root, n.Bond.Slaves, lacp)
		okB, b := lacpState(n.Peer.h, []string{"eth2", "eth3"}, lacp)
		if okA && okB {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("LACP did not aggregate both cables within 60s: %s: %s | %s: %s", n.Bond.Name, a, partnerBond, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// cableCut is one cut of the cable carrying the stream.
type cableCut struct {
	cutResult
	mark int
}

// cutCable cuts both ends of from's cable and waits for the stream to
// resume; the cable stays cut (restoreCable).
func (n *bondNet) cutCable(t *testing.T, s *stream, from string) cableCut {
	t.Helper()
	mark := s.Mark()
	r := cableCut{cutResult: cutResult{From: from, To: n.Bond.other(from), CutNs: monotonicNow()}, mark: mark}
	setLinks(t, false, netdevOf(from), netdevOf(cableEnd[from]))
	r.CutDoneNs = monotonicNow()
	s.waitResumed(r.CutDoneNs, resumePackets, switchTimeout)
	r.Outage = s.Outage(mark)
	return r
}

// restoreCable puts the cable back and waits until both bonds aggregate
// both ports again: LACP on the cut port was never disturbed by the
// redirect (its LACPDUs stay on their port).
func (n *bondNet) restoreCable(t *testing.T, from string) {
	t.Helper()
	setLinks(t, true, netdevOf(from), netdevOf(cableEnd[from]))
	waitCarrier(t, from, true, 30*time.Second)
	n.waitLACP(t)
}

// TestCablesLACPFastPath: an 802.3ad bond (miimon=100, lacp_rate=fast)
// against an 802.3ad partner over two cables; QMP cuts both ends of the
// cable carrying the bond's 1000 packets/s UDP stream, with RTNL kept busy
// during each cut (holdRTNL), first with the bond alone, then with
// `linkbeat run`. The bond alone must keep working (its stream resumes,
// and LACP aggregates the cable again once restored): its NETDEV_CHANGE
// notifier drops the port from the transmit array (bond_slave_can_tx
// checks carrier) without waiting for miimon. With the fast path, each cut
// must lose at most fastPathMaxLost packets sent after the driver's
// carrier call (the median cut at most fastPathMedianLost), linkbeat must
// record the fast failover (by fastpath, from the cut slave to the other)
// and redirect frames in at least one cut (cutting again, up to 10 cuts,
// while none did), the redirect must end, and LACP must aggregate the
// cable again after each restore.
func TestCablesLACPFastPath(t *testing.T) {
	cablesCuts(t, lacpConfig())
}

// TestCablesXorFastPath is the same with balance-xor at both ends
// (miimon=100): the bond's hash sends the stream through one cable, and
// rebuilds its transmit array on NETDEV_CHANGE like 802.3ad.
func TestCablesXorFastPath(t *testing.T) {
	cablesCuts(t, xorConfig())
}

// nextStreamCable waits for linkwatch to be quiet and returns the slave
// whose cable carries the stream, at a random point of the miimon tick.
func (n *bondNet) nextStreamCable(t *testing.T) string {
	t.Helper()
	time.Sleep(linkwatchQuiet)
	from := streamSlave(t, n.Bond)
	n.randomPhase()
	return from
}

// cutUnderRTNL cuts from's cable with RTNL kept busy until both streams
// have resumed; rmark is the reverse stream's mark before the cut.
func (n *bondNet) cutUnderRTNL(t *testing.T, s, rs *stream, from string) (r cableCut, rmark int) {
	t.Helper()
	rmark = rs.Mark()
	busy := holdRTNL(t)
	r = n.cutCable(t, s, from)
	rs.waitResumed(r.CutDoneNs, resumePackets, switchTimeout)
	busy()
	return r, rmark
}

// holdRTNL keeps RTNL busy until the returned func is called: a link
// created and deleted in a loop (unregistering waits for RCU under RTNL),
// as on a host whose RTNL is contended. Linkwatch runs the bond's
// NETDEV_CHANGE notifier under RTNL, so the bond keeps handing frames to
// the dead slave for longer: every cut has frames for the fast path to
// redirect, where with RTNL free the bond sometimes rebuilt its transmit
// array before the stream's next frame, and the test could not tell a
// working redirect from none.
func holdRTNL(t *testing.T) func() {
	t.Helper()
	stop, done := make(chan struct{}), make(chan struct{})
	const name = "lbrtnl0"
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := netlink.LinkAdd(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: name}}); err != nil {
				t.Errorf("RTNL load: add %s: %v", name, err)
				return
			}
			if l, err := netlink.LinkByName(name); err == nil {
				netlink.LinkDel(l)
			}
		}
	}()
	return func() {
		close(stop)
		<-done
		if l, err := netlink.LinkByName(name); err == nil {
			netlink.LinkDel(l)
		}
	}
}

func cablesCuts(t *testing.T, cfg bondConfig) {
	requireLinkbeat(t)
	n := newCablesNet(t, cfg)
	s := n.startStream(t, streamRate)
	rs := n.startReverseStream(t, streamRate)
	// cuts with the fast path; up to maxCuts while none redirected a
	// frame: with RTNL busy the bond still rebuilds before the stream's
	// next frame in some cuts (a quarter to a half on 6.1).
	const cuts, maxCuts = 4, 10
	var alone []uint64
	for i := range cuts {
		from := n.nextStreamCable(t)
		r, rmark := n.cutUnderRTNL(t, s, rs, from)
		alone = append(alone, r.Outage.Lost)
		t.Logf("bond alone, cut %d of %s's cable: %s; peer to bond: %s", i+1, from, r.Outage, rs.Outage(rmark))
		n.restoreCable(t, from)
	}

	lb := startBondRun(t)
	lb.waitLog(t, 0, 30*time.Second, "bond fast path live", func(r logRecord) bool {
		return r["msg"] == "bond fast path live" && r["bond"] == n.Bond.Name
	})
	var lost, afters []uint64
	redirected := 0
	for i := 0; i < cuts || (redirected == 0 && i < maxCuts); i++ {
		from := n.nextStreamCable(t)
		lm := lb.logMark()
		r, rmark := n.cutUnderRTNL(t, s, rs, from)
		lost = append(lost, r.Outage.Lost)
		rec := lb.waitLog(t, lm, 10*time.Second, "a fast failover record", isFastFailoverEnd(n.Bond.Name))
		deadNs, red := checkFastRecord(t, rec, r.From, r.To, r.CutNs)
		if red {
			redirected++
		}
		before, after := s.lostAround(r.mark, deadNs)
		t.Logf("fast path, cut %d of %s's cable: %s; %d lost before the driver's carrier call (%v after the cut), %d after it; peer to bond: %s; %v",
			i+1, from, r.Outage, before, time.Duration(deadNs-r.CutNs), after, rs.Outage(rmark), rec)
		afters = append(afters, after)
		if after > fastPathMaxLost {
			t.Errorf("cut %d lost %d packets sent after the driver's carrier call, want at most %d with the fast path", i+1, after, fastPathMaxLost)
		}
		end := lb.waitLog(t, lm, 10*time.Second, "the redirect's end", func(r logRecord) bool {
			return r["msg"] == "bond fast failover ended" && r["bond"] == n.Bond.Name
		})
		// Two cables: every frame the dead slave's flows sent left
		// through the other one, which the end record counts.
		if taken := end["taken"]; red && !strings.HasPrefix(taken, r.To+":") {
			t.Errorf("cut %d redirected frames, but the end record says taken=%q, want %s's count", i+1, taken, r.To)
		}
		n.restoreCable(t, from)
	}
	t.Logf("lost packets per cut: bond alone %v, fast path %v; fast failovers that redirected frames: %d of %d (kernel %s)",
		alone, lost, redirected, len(lost), kernelRelease())
	if redirected == 0 {
		t.Errorf("the fast path redirected no frame in %d cuts", len(lost))
	}
	slices.Sort(afters)
	if m := afters[len(afters)/2]; m > fastPathMedianLost {
		t.Errorf("median packets lost after the driver's carrier call: %d (%v), want at most %d with the fast path", m, afters, fastPathMedianLost)
	}
}
