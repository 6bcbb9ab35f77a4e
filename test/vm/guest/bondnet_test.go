//go:build vmguest

package guest

// The bond testbed shared by the bond tests (and the ARP path-health test):
//
//	root netns                               netns "swpeer" (the switch side)
//	bond0 10.98.0.1/24 ─┬─ eth0 ─┐
//	                    └─ eth1 ─┤ QEMU hub ├─ eth2 10.98.0.2/24
//	                     (eth3 admin down)
//
// guardNICs snapshots and restores eth0..eth3 (QMP link, master, netns,
// admin state); newBond builds a bond with given options; newPeer moves a
// NIC into a named netns; startStream runs a fixed-rate UDP stream with
// sequence numbers from the bond to the peer and measures outages as the
// largest receive gap.

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/linkbeat/linkbeat/test/testkit"
	"github.com/linkbeat/linkbeat/test/vm/guest/vmctl"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Addresses of the bond testbed.
var (
	bondAddr = netip.MustParsePrefix("10.98.0.1/24")
	peerAddr = netip.MustParsePrefix("10.98.0.2/24")
)

const (
	peerNSName = "swpeer"
	streamPort = 9100
	// streamRate is the stream's packets per second: 1 ms resolution for
	// the outage.
	streamRate = 1000
)

// netdevOf maps eth0..eth3 to the host's netdev ids.
func netdevOf(ifname string) string {
	for nd, n := range vmctl.Netdevs {
		if n == ifname {
			return nd
		}
	}
	panic("no netdev for " + ifname)
}

// guardNICs makes the test start from eth0..eth3 in the root netns, with
// their cables in, enslaved to nothing, and puts back the admin state it
// found when the test ends. Leftovers of an earlier test in this boot
// (bonds, bridges, the peer netns) are removed first.
func guardNICs(t *testing.T) {
	t.Helper()
	cleanupLeftovers(t)
	names := []string{"eth0", "eth1", "eth2", "eth3"}
	wasUp := map[string]bool{}
	for _, n := range names {
		wasUp[n] = mustLink(t, n).Attrs().Flags&net.FlagUp != 0
	}
	setLinks(t, true, "net0", "net1", "net2", "net3")
	t.Cleanup(func() {
		// Runs last (registered first): the bond, bridge and peer
		// cleanups have run.
		if err := vmctl.SetLinks([]string{"net0", "net1", "net2", "net3"}, true); err != nil {
			t.Errorf("restore the cables: %v", err)
		}
		cleanupLeftovers(t)
		for _, n := range names {
			l, err := netlink.LinkByName(n)
			if err != nil {
				t.Errorf("%s is not back in the root netns: %v", n, err)
				continue
			}
			if l.Attrs().MasterIndex != 0 {
				netlink.LinkSetNoMaster(l)
			}
			if wasUp[n] {
				err = netlink.LinkSetUp(l)
			} else {
				err = netlink.LinkSetDown(l)
			}
			if err != nil {
				t.Errorf("restore %s admin state: %v", n, err)
			}
		}
	})
}

// cleanupLeftovers deletes every bond and bridge, frees eth0..eth3 from
// any master and brings them back from the peer netns.
func cleanupLeftovers(t *testing.T) {
	t.Helper()
	if h, err := netns.GetFromName(peerNSName); err == nil {
		returnNICs(t, h)
		h.Close()
		netns.DeleteNamed(peerNSName)
	}
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatalf("link list: %v", err)
	}
	for _, l := range links {
		switch l.Type() {
		case "bond", "bridge":
			if err := netlink.LinkDel(l); err != nil {
				t.Errorf("delete leftover %s %s: %v", l.Type(), l.Attrs().Name, err)
			}
		}
	}
	for _, n := range []string{"eth0", "eth1", "eth2", "eth3"} {
		if l, err := netlink.LinkByName(n); err == nil && l.Attrs().MasterIndex != 0 {
			if err := netlink.LinkSetNoMaster(l); err != nil {
				t.Errorf("release %s: %v", n, err)
			}
		}
	}
}

// returnNICs moves every ethN in the netns back to the root netns.
func returnNICs(t *testing.T, ns netns.NsHandle) {
	t.Helper()
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		t.Errorf("netlink handle in %s: %v", peerNSName, err)
		return
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		t.Errorf("link list in %s: %v", peerNSName, err)
		return
	}
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Name, "eth") {
			if err := h.LinkSetNsPid(l, 1); err != nil {
				t.Errorf("move %s back to the root netns: %v", l.Attrs().Name, err)
			}
		}
	}
}

// bondConfig is what newBond builds. Zero values leave the kernel default,
// except Miimon, which is always set (0 included).
type bondConfig struct {
	Name            string
	Mode            string // active-backup, 802.3ad, balance-alb, ...
	Miimon          int
	UpDelay         int
	DownDelay       int
	Primary         string
	PrimaryReselect string // always, better, failure
	ArpInterval     int
	ArpTargets      []string
	LacpRate        string // slow, fast
	Slaves          []string
}

// bondDev is a bond newBond made; it is deleted when the test ends.
type bondDev struct {
	t      *testing.T
	Name   string
	Cfg    bondConfig
	Index  int
	MAC    net.HardwareAddr
	Slaves []string
}

// newBond creates the bond, enslaves the slaves and brings it up, then
// waits until every slave has carrier and is up in the bond's view (and,
// for modes with an active slave, until there is one).
func newBond(t *testing.T, cfg bondConfig) *bondDev {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = "bond0"
	}
	mode := netlink.StringToBondMode(cfg.Mode)
	if mode == netlink.BOND_MODE_UNKNOWN {
		t.Fatalf("unknown bond mode %q", cfg.Mode)
	}
	if l, err := netlink.LinkByName(cfg.Name); err == nil {
		netlink.LinkDel(l)
	}
	for _, s := range cfg.Slaves {
		setLinks(t, true, netdevOf(s))
		l := mustLink(t, s)
		if l.Attrs().MasterIndex != 0 {
			if err := netlink.LinkSetNoMaster(l); err != nil {
				t.Fatalf("release %s: %v", s, err)
			}
		}
		// Older kernels refuse to enslave a device that is up.
		setAdmin(t, s, false)
	}

	b := netlink.NewLinkBond(netlink.LinkAttrs{Name: cfg.Name})
	b.Mode = mode
	b.Miimon = cfg.Miimon
	if cfg.UpDelay > 0 {
		b.UpDelay = cfg.UpDelay
	}
	if cfg.DownDelay > 0 {
		b.DownDelay = cfg.DownDelay
	}
	if cfg.ArpInterval > 0 {
		b.ArpInterval = cfg.ArpInterval
		for _, a := range cfg.ArpTargets {
			b.ArpIpTargets = append(b.ArpIpTargets, net.ParseIP(a))
		}
	}
	if cfg.PrimaryReselect != "" {
		b.PrimaryReselect = netlink.StringToBondPrimaryReselectMap[cfg.PrimaryReselect]
	}
	if cfg.LacpRate != "" {
		b.LacpRate = netlink.StringToBondLacpRateMap[cfg.LacpRate]
	}
	if err := netlink.LinkAdd(b); err != nil {
		t.Fatalf("create %s (%+v): %v", cfg.Name, cfg, err)
	}
	t.Cleanup(func() {
		if l, err := netlink.LinkByName(cfg.Name); err == nil {
			if err := netlink.LinkDel(l); err != nil {
				t.Errorf("delete %s: %v", cfg.Name, err)
			}
		}
	})
	// IPv6 would add ND and MLD packets to every count; off before up.
	writeSysctl(t, "net/ipv6/conf/"+cfg.Name+"/disable_ipv6", "1")
	bl := mustLink(t, cfg.Name)
	for _, s := range cfg.Slaves {
		if err := netlink.LinkSetMaster(mustLink(t, s), bl); err != nil {
			t.Fatalf("enslave %s to %s: %v", s, cfg.Name, err)
		}
	}
	if cfg.Primary != "" {
		writeBondOpt(t, cfg.Name, "primary", cfg.Primary)
	}
	setAdmin(t, cfg.Name, true)
	bl = mustLink(t, cfg.Name)
	d := &bondDev{t: t, Name: cfg.Name, Cfg: cfg, Index: bl.Attrs().Index, MAC: bl.Attrs().HardwareAddr, Slaves: cfg.Slaves}
	for _, s := range cfg.Slaves {
		waitCarrier(t, s, true, 30*time.Second)
		d.waitMii(s, "up", 30*time.Second)
	}
	if d.hasActive() {
		waitFor(t, 30*time.Second, "an active slave in "+cfg.Name, func() bool { return d.Active() != "" })
		if cfg.Primary == "" && d.Active() != cfg.Slaves[0] {
			// Whichever slave got carrier first is active; start from
			// the first, so the first cut is eth0's.
			writeBondOpt(t, cfg.Name, "active_slave", cfg.Slaves[0])
			d.waitActive(cfg.Slaves[0], 10*time.Second)
		}
	}
	t.Logf("%s: %s miimon=%d updelay=%d downdelay=%d primary=%q primary_reselect=%s slaves=%v active=%q mac=%s",
		cfg.Name, cfg.Mode, cfg.Miimon, cfg.UpDelay, cfg.DownDelay, cfg.Primary, d.Opt("primary_reselect"),
		cfg.Slaves, d.Active(), d.MAC)
	return d
}

func (d *bondDev) hasActive() bool {
	switch d.Cfg.Mode {
	case "active-backup", "balance-tlb", "balance-alb":
		return true
	}
	return false
}

// writeBondOpt writes /sys/class/net/<bond>/bonding/<opt>.
func writeBondOpt(t *testing.T, bond, opt, val string) {
	t.Helper()
	p := "/sys/class/net/" + bond + "/bonding/" + opt
	if err := os.WriteFile(p, []byte(val), 0o644); err != nil {
		t.Fatalf("%s = %s: %v", p, val, err)
	}
}

func readTrim(p string) string {
	b, _ := os.ReadFile(p)
	return strings.TrimSpace(string(b))
}

// Opt reads a bonding option from sysfs ("better 1" style values are
// returned as the kernel prints them).
func (d *bondDev) Opt(opt string) string {
	return readTrim("/sys/class/net/" + d.Name + "/bonding/" + opt)
}

// Active is the bond's current active slave, "" when none.
func (d *bondDev) Active() string { return d.Opt("active_slave") }

// SlaveAttr reads /sys/class/net/<slave>/bonding_slave/<attr> (state,
// mii_status, link_failure_count, ad_aggregator_id, ...).
func SlaveAttr(slave, attr string) string {
	return readTrim("/sys/class/net/" + slave + "/bonding_slave/" + attr)
}

// waitMii waits until the bond's view of slave is want (up, down,
// going_back, going_down).
func (d *bondDev) waitMii(slave, want string, timeout time.Duration) {
	d.t.Helper()
	waitFor(d.t, timeout, fmt.Sprintf("%s mii_status %s in %s", slave, want, d.Name), func() bool {
		return SlaveAttr(slave, "mii_status") == want
	})
}

// waitActive waits until the active slave is want and returns how long it
// took from the call.
func (d *bondDev) waitActive(want string, timeout time.Duration) time.Duration {
	d.t.Helper()
	start := time.Now()
	deadline := start.Add(timeout)
	for {
		a := d.Active()
		if a == want {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("%s active slave is %q, want %q after %v\n%s", d.Name, a, want, timeout, d.Dump())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// holdActive checks for the whole of d that the active slave stays want.
func (d *bondDev) holdActive(want string, dur time.Duration) {
	d.t.Helper()
	deadline := time.Now().Add(dur)
	for time.Now().Before(deadline) {
		if a := d.Active(); a != want {
			d.t.Fatalf("%s active slave changed to %q; want it to stay %q\n%s", d.Name, a, want, d.Dump())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Dump is /proc/net/bonding/<bond>, for failure messages.
func (d *bondDev) Dump() string {
	b, err := os.ReadFile("/proc/net/bonding/" + d.Name)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// waitFor polls cond every 5 ms until it holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// peerNS is a named netns holding one of the guest's NICs: the switch side.
type peerNS struct {
	t    *testing.T
	Name string
	NIC  string
	Addr netip.Prefix
	MAC  net.HardwareAddr
	ns   netns.NsHandle
	h    *netlink.Handle
}

// addressBond gives the bond bondAddr and the peer, at peerMAC, as a
// static neighbour: the stream never waits for ARP.
func addressBond(t *testing.T, bond *bondDev, peerMAC net.HardwareAddr) {
	t.Helper()
	a, _ := netlink.ParseAddr(bondAddr.String())
	if err := netlink.AddrAdd(mustLink(t, bond.Name), a); err != nil {
		t.Fatalf("add %s to %s: %v", bondAddr, bond.Name, err)
	}
	if err := netlink.NeighSet(&netlink.Neigh{LinkIndex: bond.Index, Family: unix.AF_INET, State: netlink.NUD_PERMANENT,
		IP: net.IP(peerAddr.Addr().AsSlice()), HardwareAddr: peerMAC}); err != nil {
		t.Fatalf("static neighbour %s on %s: %v", peerAddr.Addr(), bond.Name, err)
	}
}

// newPeerNetns makes the named netns afresh, with IPv6 off: /proc/sys/net
// follows the opening thread's netns, and a NIC takes "default" when it
// arrives, so IPv6 stays off on it.
func newPeerNetns(t *testing.T, name string) netns.NsHandle {
	t.Helper()
	netns.DeleteNamed(name)
	ns, err := testkit.NewNamed(name, func() error {
		for _, k := range []string{"all", "default"} {
			os.WriteFile("/proc/sys/net/ipv6/conf/"+k+"/disable_ipv6", []byte("1"), 0o644)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

// newPeer creates netns name, moves nic into it with addr, IPv6 off, and
// brings lo and nic up. The NIC is moved back to the root netns (keeping
// its name; deleting the netns would return it possibly renamed) and the
// netns deleted when the test ends.
func newPeer(t *testing.T, name, nic string, addr netip.Prefix) *peerNS {
	t.Helper()
	l := mustLink(t, nic)
	if l.Attrs().MasterIndex != 0 {
		t.Fatalf("%s is enslaved; cannot move it to netns %s", nic, name)
	}
	setLinks(t, true, netdevOf(nic))
	ns := newPeerNetns(t, name)
	p := &peerNS{t: t, Name: name, NIC: nic, Addr: addr, ns: ns}
	t.Cleanup(func() {
		returnNICs(t, p.ns)
		if p.h != nil {
			p.h.Close()
		}
		netns.DeleteNamed(name)
		p.ns.Close()
	})
	if err := netlink.LinkSetNsFd(l, int(ns)); err != nil {
		t.Fatalf("move %s into netns %s: %v", nic, name, err)
	}
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatalf("netlink handle in %s: %v", name, err)
	}
	p.h = h
	for _, n := range []string{"lo", nic} {
		pl, err := h.LinkByName(n)
		if err != nil {
			t.Fatalf("%s: %s: %v", name, n, err)
		}
		if n == nic {
			a, _ := netlink.ParseAddr(addr.String())
			if err := h.AddrAdd(pl, a); err != nil {
				t.Fatalf("%s: add %s to %s: %v", name, addr, nic, err)
			}
			p.MAC = pl.Attrs().HardwareAddr
		}
		if err := h.LinkSetUp(pl); err != nil {
			t.Fatalf("%s: set %s up: %v", name, n, err)
		}
	}
	return p
}

// Handle is a netlink handle inside the peer netns (links, addresses,
// qdiscs and filters there).
func (p *peerNS) Handle() *netlink.Handle { return p.h }

// Do runs fn on an OS thread switched into the peer netns: sockets made
// there stay in the peer netns after fn returns.
func (p *peerNS) Do(fn func() error) error { return testkit.InNetns(p.ns, fn) }

// bondNet is the whole testbed: a bond with bondAddr and a peer netns
// holding eth2 with peerAddr, with static neighbour entries both ways so
// no ARP exchange lands in a measured outage.
type bondNet struct {
	Bond *bondDev
	Peer *peerNS
}

// newBondNet builds the testbed around a bond over cfg.Slaves (eth0 and
// eth1 by default). eth3 stays down: an up NIC in the root netns would
// answer ARP for the bond's address too (arp_ignore=0).
func newBondNet(t *testing.T, cfg bondConfig) *bondNet {
	t.Helper()
	guardNICs(t)
	if len(cfg.Slaves) == 0 {
		cfg.Slaves = []string{"eth0", "eth1"}
	}
	setAdmin(t, "eth3", false)
	peer := newPeer(t, peerNSName, "eth2", peerAddr)
	bond := newBond(t, cfg)
	addressBond(t, bond, peer.MAC)
	pl, err := peer.h.LinkByName(peer.NIC)
	if err != nil {
		t.Fatal(err)
	}
	if err := peer.h.NeighSet(&netlink.Neigh{LinkIndex: pl.Attrs().Index, Family: unix.AF_INET, State: netlink.NUD_PERMANENT,
		IP: net.IP(bondAddr.Addr().AsSlice()), HardwareAddr: bond.MAC}); err != nil {
		t.Fatalf("static neighbour %s in %s: %v", bondAddr.Addr(), peer.Name, err)
	}
	return &bondNet{Bond: bond, Peer: peer}
}

// stream is a fixed-rate UDP stream with sequence numbers from the bond's
// address to the peer. Each datagram carries its sequence number and its
// send time (CLOCK_MONOTONIC); the receiver in the peer netns records the
// arrival time of each.
type stream struct {
	t      *testing.T
	send   *net.UDPConn
	recv   *net.UDPConn
	stop   chan struct{}
	doneTx chan struct{}
	doneRx chan struct{}

	mu sync.Mutex
	rx []rxPacket
	// sentNs is each sequence number's send time (CLOCK_MONOTONIC).
	sentNs  []int64
	sent    uint64
	sendErr uint64
	lastErr error
}

type rxPacket struct {
	Seq    uint64
	SentNs int64
	RecvNs int64
}

const streamMagic = 0x6c6b6274 // "lkbt"

// startStream starts sending at rate packets/s and waits until the peer
// receives.
func (n *bondNet) startStream(t *testing.T, rate int) *stream {
	t.Helper()
	s := &stream{t: t, stop: make(chan struct{}), doneTx: make(chan struct{}), doneRx: make(chan struct{})}
	err := n.Peer.Do(func() error {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IP(peerAddr.Addr().AsSlice()), Port: streamPort})
		s.recv = c
		return err
	})
	if err != nil {
		t.Fatalf("stream receiver in %s: %v", n.Peer.Name, err)
	}
	s.recv.SetReadBuffer(4 << 20)
	s.send, err = net.DialUDP("udp4", &net.UDPAddr{IP: net.IP(bondAddr.Addr().AsSlice())},
		&net.UDPAddr{IP: net.IP(peerAddr.Addr().AsSlice()), Port: streamPort})
	if err != nil {
		s.recv.Close()
		t.Fatalf("stream sender: %v", err)
	}
	go s.receive()
	go s.transmit(rate)
	t.Cleanup(s.Stop)
	s.waitFlowing(100, 30*time.Second)
	return s
}

func (s *stream) receive() {
	defer close(s.doneRx)
	buf := make([]byte, 64)
	for {
		n, err := s.recv.Read(buf)
		at := monotonicNow()
		if err != nil {
			return
		}
		if n < 20 || binary.BigEndian.Uint32(buf) != streamMagic {
			continue
		}
		p := rxPacket{Seq: binary.BigEndian.Uint64(buf[4:]), SentNs: int64(binary.BigEndian.Uint64(buf[12:])), RecvNs: at}
		s.mu.Lock()
		s.rx = append(s.rx, p)
		s.mu.Unlock()
	}
}

// transmit keeps to the schedule start + seq/rate, catching up at most
// a few packets after a stall (so a stalled sender does not burst).
func (s *stream) transmit(rate int) {
	defer close(s.doneTx)
	interval := time.Second / time.Duration(rate)
	buf := make([]byte, 32)
	binary.BigEndian.PutUint32(buf, streamMagic)
	var seq uint64
	start := time.Now()
	for {
		select {
		case <-s.stop:
			return
		default:
		}
		due := uint64(time.Since(start)/interval) + 1
		if due > seq+20 {
			// Stalled (the guest is emulated): restart the schedule
			// rather than send a burst.
			start = time.Now().Add(-time.Duration(seq) * interval)
			due = seq + 1
		}
		for ; seq < due; seq++ {
			binary.BigEndian.PutUint64(buf[4:], seq)
			at := monotonicNow()
			binary.BigEndian.PutUint64(buf[12:], uint64(at))
			_, err := s.send.Write(buf)
			s.mu.Lock()
			s.sentNs = append(s.sentNs, at)
			s.sent++
			if err != nil {
				s.sendErr++
				s.lastErr = err
			}
			s.mu.Unlock()
		}
		time.Sleep(interval / 2)
	}
}

// Stop ends the stream; safe to call twice.
func (s *stream) Stop() {
	select {
	case <-s.stop:
		return
	default:
	}
	close(s.stop)
	<-s.doneTx
	s.send.Close()
	s.recv.Close()
	<-s.doneRx
	s.mu.Lock()
	defer s.mu.Unlock()
	s.t.Logf("stream: %d sent (%d send errors, last %v), %d received", s.sent, s.sendErr, s.lastErr, len(s.rx))
}

// Mark is a position in the received packets, taken before a cut.
func (s *stream) Mark() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.rx)
}

// waitFlowing waits until n more packets have arrived.
func (s *stream) waitFlowing(n int, timeout time.Duration) {
	s.t.Helper()
	m := s.Mark()
	waitFor(s.t, timeout, fmt.Sprintf("%d stream packets at the peer", n), func() bool { return s.Mark() >= m+n })
}

// receivedSentAfter counts the packets received that were sent after
// sinceNs (CLOCK_MONOTONIC).
func (s *stream) receivedSentAfter(sinceNs int64) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for i := len(s.rx) - 1; i >= 0 && s.rx[i].SentNs > sinceNs; i-- {
		n++
	}
	return n
}

// waitResumed waits until n packets sent after sinceNs have arrived: the
// path works again. It fails the test on timeout.
func (s *stream) waitResumed(sinceNs int64, n int, timeout time.Duration) {
	s.t.Helper()
	waitFor(s.t, timeout, fmt.Sprintf("the stream to resume (%d packets sent after the cut arriving)", n), func() bool {
		return s.receivedSentAfter(sinceNs) >= n
	})
}

// outage is the stream's interruption between a mark and now.
type outage struct {
	Gap      time.Duration // largest gap between consecutive arrivals
	GapAfter uint64        // sequence number received just before the gap
	Lost     uint64        // sequence numbers missing in the window
	Received int
}

func (o outage) String() string {
	return fmt.Sprintf("outage %v (largest receive gap, after seq %d), %d packets lost, %d received",
		o.Gap.Round(10*time.Microsecond), o.GapAfter, o.Lost, o.Received)
}

// Outage measures from the packet before mark to the last one received.
func (s *stream) Outage(mark int) outage {
	s.mu.Lock()
	defer s.mu.Unlock()
	from := max(mark-1, 0)
	w := s.rx[from:]
	var o outage
	o.Received = len(w)
	if len(w) == 0 {
		return o
	}
	seen := map[uint64]bool{}
	lo, hi := w[0].Seq, w[0].Seq
	for i, p := range w {
		seen[p.Seq] = true
		lo, hi = min(lo, p.Seq), max(hi, p.Seq)
		if i > 0 {
			if g := time.Duration(p.RecvNs - w[i-1].RecvNs); g > o.Gap {
				o.Gap, o.GapAfter = g, w[i-1].Seq
			}
		}
	}
	o.Lost = hi - lo + 1 - uint64(len(seen))
	return o
}

// txPackets reads a NIC's tx_packets from sysfs.
func txPackets(ifname string) uint64 {
	n, _ := strconv.ParseUint(readTrim("/sys/class/net/"+ifname+"/statistics/tx_packets"), 10, 64)
	return n
}

// carrierDownCount reads /sys/class/net/<if>/carrier_down_count.
func carrierDownCount(ifname string) uint64 {
	n, _ := strconv.ParseUint(readTrim("/sys/class/net/"+ifname+"/carrier_down_count"), 10, 64)
	return n
}

// kmsg reads the kernel log from the point it was opened, in order. It
// uses the raw fd: an os.File would park a non-blocking read in the poller
// instead of returning EAGAIN.
type kmsg struct {
	fd int
}

func openKmsg(t *testing.T) *kmsg {
	t.Helper()
	fd, err := unix.Open("/dev/kmsg", unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open /dev/kmsg: %v", err)
	}
	if _, err := unix.Seek(fd, 0, unix.SEEK_END); err != nil { // only what comes next
		t.Fatalf("seek /dev/kmsg: %v", err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return &kmsg{fd: fd}
}

// Read returns the messages logged since the last Read (text only).
func (k *kmsg) Read() []string {
	var out []string
	buf := make([]byte, 8192)
	for {
		n, err := unix.Read(k.fd, buf)
		if err == unix.EPIPE {
			continue // overwritten while we were away: skip ahead
		}
		if err != nil || n <= 0 {
			return out
		}
		rec := string(buf[:n])
		if _, msg, ok := strings.Cut(rec, ";"); ok {
			msg, _, _ = strings.Cut(msg, "\n") // drop the dictionary lines
			out = append(out, msg)
		}
	}
}

// firstIndex returns the index of the first message containing all of
// parts, -1 if none.
func firstIndex(msgs []string, parts ...string) int {
	for i, m := range msgs {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(m, p)
		}
		if ok {
			return i
		}
	}
	return -1
}

// activeWatch records changes of a bond's active slave from RTNLGRP_LINK,
// each stamped with CLOCK_MONOTONIC on receipt (an upper bound for when
// the kernel switched).
type activeWatch struct {
	bond    int
	mu      sync.Mutex
	changes []activeChange
}

type activeChange struct {
	At     int64
	Active int // ifindex, 0 for none
}

func watchActive(t *testing.T, bondIndex int) *activeWatch {
	t.Helper()
	n := subscribeLinks(t)
	n.s.SetReceiveBufferSize(1<<20, true)
	w := &activeWatch{bond: bondIndex}
	last := -1
	if l, err := netlink.LinkByIndex(bondIndex); err == nil {
		if b, ok := l.(*netlink.Bond); ok {
			last = max(b.ActiveSlave, 0)
		}
	}
	n.start(t, func(data []byte, at int64) {
		if int(nl.DeserializeIfInfomsg(data).Index) != bondIndex {
			return
		}
		l, err := netlink.LinkDeserialize(nil, data)
		if err != nil {
			return
		}
		b, ok := l.(*netlink.Bond)
		if !ok {
			return
		}
		if a := max(b.ActiveSlave, 0); a != last {
			last = a
			w.mu.Lock()
			w.changes = append(w.changes, activeChange{At: at, Active: a})
			w.mu.Unlock()
		}
	})
	return w
}

// changesSince returns the recorded changes at or after sinceNs.
func (w *activeWatch) changesSince(sinceNs int64) []activeChange {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []activeChange
	for _, c := range w.changes {
		if c.At >= sinceNs {
			out = append(out, c)
		}
	}
	return out
}

// firstChangeTo returns the first recorded change to ifindex at or after
// sinceNs.
func (w *activeWatch) firstChangeTo(ifindex int, sinceNs int64) (activeChange, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, c := range w.changes {
		if c.At >= sinceNs && c.Active == ifindex {
			return c, true
		}
	}
	return activeChange{}, false
}

// bondRun is `linkbeat run` for the bond tests, with its own state dir.
type bondRun struct {
	*daemon
	StateDir string
}

// startBondRun starts `linkbeat run` over every interface with a fresh
// state directory and waits until it is ready.
func startBondRun(t *testing.T, extra ...string) *bondRun {
	t.Helper()
	dir := t.TempDir()
	args := append([]string{"run", "--state-dir", dir}, extra...)
	d := startDaemon(t, args...)
	d.WaitReady(readyTimeout)
	return &bondRun{daemon: d, StateDir: dir}
}

// failoverRecord is one entry of <state-dir>/bonds.json (internal/bond's
// Failover; decoded here so the test reads the file as a user would).
type failoverRecord struct {
	Bond       string        `json:"bond"`
	From       string        `json:"from"`
	To         string        `json:"to"`
	Reason     string        `json:"reason"`
	By         string        `json:"by"`
	KernelNs   int64         `json:"kernel_ns"`
	DurationNs time.Duration `json:"duration_ns"`
	At         time.Time     `json:"at"`
}

// lastFailover reads the bond's last failover from bonds.json; ok is false
// if the file or the entry does not exist yet.
func (r *bondRun) lastFailover(bond string) (failoverRecord, bool, error) {
	b, err := os.ReadFile(filepath.Join(r.StateDir, "bonds.json"))
	if errors.Is(err, os.ErrNotExist) {
		return failoverRecord{}, false, nil
	}
	if err != nil {
		return failoverRecord{}, false, err
	}
	var st struct {
		Last map[string]failoverRecord `json:"last_failover"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return failoverRecord{}, false, fmt.Errorf("bonds.json: %v\n%s", err, b)
	}
	f, ok := st.Last[bond]
	return f, ok, nil
}

// waitFailoverRecord waits until bonds.json holds a failover of bond whose
// kernel event is at or after sinceNs.
func (r *bondRun) waitFailoverRecord(t *testing.T, bond string, sinceNs int64, timeout time.Duration) failoverRecord {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		f, ok, err := r.lastFailover(bond)
		if err != nil {
			t.Fatal(err)
		}
		if ok && f.KernelNs >= sinceNs {
			return f
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(r.StateDir, "bonds.json"))
			t.Fatalf("no failover of %s since the cut in %s/bonds.json within %v; file:\n%s", bond, r.StateDir, timeout, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// logRecord is one parsed logfmt line of the daemon's stderr.
type logRecord map[string]string

// logLines returns the daemon's stderr lines so far, parsed, from index
// from on; the second value is the index to continue from.
func (d *daemon) logRecords(from int) ([]logRecord, int) {
	d.mu.Lock()
	lines := slices.Clone(d.stderr[min(from, len(d.stderr)):])
	n := len(d.stderr)
	d.mu.Unlock()
	var out []logRecord
	for _, l := range lines {
		// "+15:04:05.000 " prefix added by startDaemon.
		if _, rest, ok := strings.Cut(l, " "); ok {
			out = append(out, parseLogfmt(rest))
		}
	}
	return out, n
}

// logMark is the position in the daemon's log, to look only at what
// comes after.
func (d *daemon) logMark() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.stderr)
}

// waitLog waits for a log record after mark matching match.
func (d *daemon) waitLog(t *testing.T, mark int, timeout time.Duration, what string, match func(logRecord) bool) logRecord {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		recs, _ := d.logRecords(mark)
		for _, r := range recs {
			if match(r) {
				return r
			}
		}
		select {
		case <-d.exited:
			t.Fatalf("waiting for %s: %s exited: %v", what, d.name, d.err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line with %s from %s within %v", what, d.name, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// findLogs returns the records after mark matching match.
func (d *daemon) findLogs(mark int, match func(logRecord) bool) []logRecord {
	recs, _ := d.logRecords(mark)
	var out []logRecord
	for _, r := range recs {
		if match(r) {
			out = append(out, r)
		}
	}
	return out
}

// isFailoverLog matches linkbeat's msg="bond failover" for bond.
func isFailoverLog(bond string) func(logRecord) bool {
	return func(r logRecord) bool { return r["msg"] == "bond failover" && r["bond"] == bond }
}

// parseLogfmt parses slog's TextHandler output: key=value pairs, values
// optionally quoted with Go escapes.
func parseLogfmt(line string) logRecord {
	r := logRecord{}
	i := 0
	for i < len(line) {
		for i < len(line) && line[i] == ' ' {
			i++
		}
		eq := strings.IndexByte(line[i:], '=')
		if eq < 0 {
			break
		}
		key := line[i : i+eq]
		i += eq + 1
		var val string
		if i < len(line) && line[i] == '"' {
			// Find the closing quote, honouring backslash escapes.
			j := i + 1
			for j < len(line) && line[j] != '"' {
				if line[j] == '\\' {
					j++
				}
				j++
			}
			q := line[i:min(j+1, len(line))]
			if u, err := strconv.Unquote(q); err == nil {
				val = u
			} else {
				val = strings.Trim(q, `"`)
			}
			i = j + 1
		} else {
			j := strings.IndexByte(line[i:], ' ')
			if j < 0 {
				j = len(line) - i
			}
			val = line[i : i+j]
			i += j
		}
		r[key] = val
	}
	return r
}

// median of durations (for the logged summaries only: timings are never
// pass/fail here).
func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// firstArrivalAfter returns the arrival time of the first packet sent
// after sinceNs.
func (s *stream) firstArrivalAfter(sinceNs int64) (int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.rx {
		if p.SentNs > sinceNs {
			return p.RecvNs, true
		}
	}
	return 0, false
}
