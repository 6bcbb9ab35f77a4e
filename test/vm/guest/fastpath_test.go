//go:build vmguest

package guest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// The bond fast path: the carrier program marks the dead
// active slave and picks its replacement in the driver's call; TC moves
// the dead slave's frames out of the replacement and the replacement's
// frames into the bond until the bond has switched.

// fastPathMaxLost bounds the packets of the 1000 packets/s streams that
// a cut may lose after the driver's carrier call with the fast path: at
// most this many in any one cut, and the median cut at most
// fastPathMedianLost. With the redirect broken a cut loses 5 to 23 after
// the call (miimon alone about 45); working, almost every cut loses 0,
// but under TCG the first redirect once came 4.4 ms after the call and a
// cut lost 3, so one cut's bound alone would make the test flaky.
const (
	fastPathMaxLost    = 4
	fastPathMedianLost = 1
)

const (
	tcpPort  = 9102
	echoPort = 9103
)

// startReverseStream is startStream the other way: the peer sends to the
// bond's address, so the bond's receive path is measured (a backup's
// frames reach the bond only through the fast path until the switch).
func (n *bondNet) startReverseStream(t *testing.T, rate int) *stream {
	t.Helper()
	s := &stream{t: t, stop: make(chan struct{}), doneTx: make(chan struct{}), doneRx: make(chan struct{})}
	to := &net.UDPAddr{IP: net.IP(bondAddr.Addr().AsSlice()), Port: streamPort + 1}
	var err error
	if s.recv, err = net.ListenUDP("udp4", to); err != nil {
		t.Fatalf("reverse stream receiver: %v", err)
	}
	s.recv.SetReadBuffer(4 << 20)
	err = n.Peer.Do(func() error {
		var err error
		s.send, err = net.DialUDP("udp4", &net.UDPAddr{IP: net.IP(peerAddr.Addr().AsSlice())}, to)
		return err
	})
	if err != nil {
		s.recv.Close()
		t.Fatalf("reverse stream sender in %s: %v", n.Peer.Name, err)
	}
	go s.receive()
	go s.transmit(rate)
	t.Cleanup(s.Stop)
	s.waitFlowing(100, 30*time.Second)
	return s
}

func rootHandle(t *testing.T) *netlink.Handle {
	t.Helper()
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// flushNeigh6 drops the IPv6 neighbour entries on both sides, so the next
// exchange needs neighbour discovery.
func (n *bondNet) flushNeigh6(t *testing.T) {
	t.Helper()
	for _, side := range []struct {
		h    *netlink.Handle
		link string
	}{{rootHandle(t), n.Bond.Name}, {n.Peer.h, n.Peer.NIC}} {
		l, err := side.h.LinkByName(side.link)
		if err != nil {
			t.Fatal(err)
		}
		neighs, err := side.h.NeighList(l.Attrs().Index, netlink.FAMILY_V6)
		if err != nil {
			t.Fatal(err)
		}
		for _, ne := range neighs {
			if ne.State&netlink.NUD_PERMANENT == 0 {
				side.h.NeighDel(&ne)
			}
		}
	}
}

// echo6 is a UDP echo server on each side's IPv6 address, and a client
// socket on each side.
type echo6 struct{ bond, peer, bondClient, peerClient *net.UDPConn }

func (n *bondNet) startEcho6(t *testing.T) *echo6 {
	t.Helper()
	e := &echo6{}
	var err error
	e.bond, err = net.ListenUDP("udp6", &net.UDPAddr{IP: bondAddr6.Addr().AsSlice(), Port: echoPort})
	if err != nil {
		t.Fatalf("echo on the bond: %v", err)
	}
	if e.bondClient, err = net.ListenUDP("udp6", &net.UDPAddr{IP: bondAddr6.Addr().AsSlice()}); err != nil {
		t.Fatalf("echo client on the bond: %v", err)
	}
	err = n.Peer.Do(func() error {
		if e.peer, err = net.ListenUDP("udp6", &net.UDPAddr{IP: peerAddr6.Addr().AsSlice(), Port: echoPort}); err != nil {
			return err
		}
		e.peerClient, err = net.ListenUDP("udp6", &net.UDPAddr{IP: peerAddr6.Addr().AsSlice()})
		return err
	})
	if err != nil {
		t.Fatalf("echo in %s: %v", n.Peer.Name, err)
	}
	for _, c := range []*net.UDPConn{e.bond, e.peer} {
		go func() {
			buf := make([]byte, 64)
			for {
				k, from, err := c.ReadFromUDP(buf)
				if err != nil {
					return
				}
				c.WriteToUDP(buf[:k], from)
			}
		}()
	}
	t.Cleanup(func() {
		for _, c := range []*net.UDPConn{e.bond, e.peer, e.bondClient, e.peerClient} {
			c.Close()
		}
	})
	return e
}

// ping6 sends one datagram from local to the echo at dst and waits for
// it to come back, resending every 200 ms (the first may wait in the
// neighbour queue), for up to timeout.
func ping6(local *net.UDPConn, dst netip.Addr, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	to := &net.UDPAddr{IP: dst.AsSlice(), Port: echoPort}
	buf := make([]byte, 64)
	for time.Since(start) < timeout {
		msg := []byte("lb6-" + strconv.FormatInt(time.Now().UnixNano(), 10))
		if _, err := local.WriteToUDP(msg, to); err != nil {
			return 0, err
		}
		local.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		for {
			k, _, err := local.ReadFromUDP(buf)
			if err != nil {
				break
			}
			if string(buf[:k]) == string(msg) {
				return time.Since(start), nil
			}
		}
	}
	return 0, fmt.Errorf("no echo from %s within %v", dst, timeout)
}

// tcpPair is one TCP connection between the bond and the peer on which
// both ends write and read all the time.
type tcpPair struct {
	conns    [2]net.Conn
	received [2]atomic.Int64 // bytes read by the bond's end, the peer's end
	errs     [2]atomic.Pointer[error]
	wg       sync.WaitGroup
	stop     chan struct{}
}

func (n *bondNet) startTCP(t *testing.T) *tcpPair {
	t.Helper()
	var ln net.Listener
	err := n.Peer.Do(func() error {
		var err error
		ln, err = net.Listen("tcp4", net.JoinHostPort(peerAddr.Addr().String(), strconv.Itoa(tcpPort)))
		return err
	})
	if err != nil {
		t.Fatalf("tcp listener in %s: %v", n.Peer.Name, err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: bondAddr.Addr().AsSlice()}, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp4", net.JoinHostPort(peerAddr.Addr().String(), strconv.Itoa(tcpPort)))
	if err != nil {
		t.Fatalf("tcp connect to the peer: %v", err)
	}
	p := &tcpPair{stop: make(chan struct{})}
	p.conns[0] = c
	select {
	case p.conns[1] = <-accepted:
	case <-time.After(10 * time.Second):
		t.Fatal("the peer accepted no connection")
	}
	for i, c := range p.conns {
		p.wg.Add(2)
		go func() { defer p.wg.Done(); p.write(i, c) }()
		go func() { defer p.wg.Done(); p.read(i, c) }()
	}
	t.Cleanup(p.close)
	return p
}

// write sends 1 KiB every 2 ms.
func (p *tcpPair) write(i int, c net.Conn) {
	buf := make([]byte, 1024)
	for {
		select {
		case <-p.stop:
			return
		default:
		}
		if _, err := c.Write(buf); err != nil {
			p.fail(i, err)
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (p *tcpPair) read(i int, c net.Conn) {
	buf := make([]byte, 64<<10)
	for {
		k, err := c.Read(buf)
		p.received[i].Add(int64(k))
		if err != nil {
			select {
			case <-p.stop:
			default:
				p.fail(i, err)
			}
			return
		}
	}
}

func (p *tcpPair) fail(i int, err error) {
	select {
	case <-p.stop:
		return // our own close
	default:
	}
	p.errs[i].CompareAndSwap(nil, &err)
}

// check fails the test if either end saw an error (a reset above all).
func (p *tcpPair) check(t *testing.T) {
	t.Helper()
	for i, side := range []string{"bond", "peer"} {
		if e := p.errs[i].Load(); e != nil {
			reset := errors.Is(*e, unix.ECONNRESET) || errors.Is(*e, io.EOF)
			t.Errorf("TCP connection, %s's end: %v (reset or closed: %v)", side, *e, reset)
		}
	}
}

// flowing waits until both ends have read more than they had at before.
func (p *tcpPair) flowing(t *testing.T, before [2]int64, timeout time.Duration) {
	t.Helper()
	waitFor(t, timeout, "TCP data both ways", func() bool {
		return p.received[0].Load() > before[0]+4096 && p.received[1].Load() > before[1]+4096
	})
}

func (p *tcpPair) mark() [2]int64 { return [2]int64{p.received[0].Load(), p.received[1].Load()} }

func (p *tcpPair) close() {
	select {
	case <-p.stop:
		return
	default:
	}
	close(p.stop)
	for _, c := range p.conns {
		c.Close()
	}
	p.wg.Wait()
}

// fastCut is one cut of the active slave with the fast path running.
type fastCut struct {
	cutResult
	mark  int
	Ping6 [2]time.Duration // bond to peer, peer to bond
}

// cutFast cuts the active slave, exchanges datagrams over IPv6 both ways
// at once (neighbour discovery through the fast path, the entries having
// been flushed), then waits for the bond's switch and the stream.
func (n *bondNet) cutFast(t *testing.T, s *stream, e *echo6) fastCut {
	t.Helper()
	b := n.Bond
	from := b.Active()
	want := b.other(from)
	b.waitMii(want, "up", 30*time.Second)
	n.flushNeigh6(t)
	mark := s.Mark()
	r := fastCut{cutResult: cutResult{From: from, To: want, CutNs: monotonicNow()}, mark: mark}
	setLinks(t, false, netdevOf(from))
	r.CutDoneNs = monotonicNow()
	var err [2]error
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); r.Ping6[0], err[0] = ping6(e.bondClient, peerAddr6.Addr(), 5*time.Second) }()
	go func() { defer wg.Done(); r.Ping6[1], err[1] = ping6(e.peerClient, bondAddr6.Addr(), 5*time.Second) }()
	wg.Wait()
	for i, dir := range []string{"bond to peer", "peer to bond"} {
		if err[i] != nil {
			t.Errorf("IPv6 right after the cut, %s: %v", dir, err[i])
		}
	}
	r.SeenAt = b.waitActive(want, switchTimeout)
	s.waitResumed(r.CutDoneNs, resumePackets, switchTimeout)
	r.Outage = s.Outage(mark)
	return r
}

// lostAround splits the packets lost since mark at a kernel time by when
// they were sent. Packets sent before the driver's carrier call went into
// the cut cable: no failover can save them (the testbed's floor).
func (s *stream) lostAround(mark int, atNs int64) (before, after uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := s.rx[max(mark-1, 0):]
	got := map[uint64]bool{}
	var lo, hi uint64
	for i, p := range w {
		got[p.Seq] = true
		if i == 0 || p.Seq < lo {
			lo = p.Seq
		}
		hi = max(hi, p.Seq)
	}
	for q := lo; q <= hi && q < uint64(len(s.sentNs)); q++ {
		switch {
		case got[q]:
		case s.sentNs[q] < atNs:
			before++
		default:
			after++
		}
	}
	return before, after
}

// isFastFailoverEnd matches the fast path's record of a failover, or its
// note that the redirect ended without a frame to redirect.
func isFastFailoverEnd(bond string) func(logRecord) bool {
	return func(r logRecord) bool {
		return (r["msg"] == "bond fast failover" || r["msg"] == "bond fast failover redirected no frame") && r["bond"] == bond
	}
}

// checkFastRecord checks a fast failover's end record for a cut from one
// slave to another made at cutNs: one that redirected frames names them
// and says by=fastpath, with the driver-to-first-redirect time. It
// returns the driver's call (kernel_ns) and whether frames were redirected.
func checkFastRecord(t *testing.T, rec logRecord, from, to string, cutNs int64) (deadNs int64, redirected bool) {
	t.Helper()
	if redirected = rec["msg"] == "bond fast failover"; redirected {
		if rec["by"] != "fastpath" || rec["from"] != from || rec["to"] != to || rec["first_redirect_us"] == "" {
			t.Errorf("fast failover log %v, want by=fastpath from=%s to=%s with first_redirect_us", rec, from, to)
		}
	}
	deadNs, err := strconv.ParseInt(rec["kernel_ns"], 10, 64)
	if err != nil || deadNs < cutNs {
		t.Fatalf("fast path record %v: kernel_ns is not the driver's call after the cut (at %d)", rec, cutNs)
	}
	return deadNs, redirected
}

// TestBondFastPath: active-backup with miimon=100 and `linkbeat run`; QMP
// cuts the active slave several times while a 1000 packets/s UDP stream
// runs to the peer and a TCP connection carries data both ways. Each cut
// must stay within fastPathMaxLost and fastPathMedianLost, linkbeat must log the fast
// failover (by fastpath, with the driver-to-first-redirect time), IPv6
// must work both ways right after the cut with the neighbour entries
// flushed, and the TCP connection must survive every cut, with data
// flowing both ways after the last.
func TestBondFastPath(t *testing.T) {
	fastPathCuts(t, bondConfig{Mode: "active-backup", Miimon: 100}, "")
}

// TestBondFastPathNetlink forces the netlink carrier source: the daemon
// marks the redirect itself when it reads the notice (no BPF carrier
// program), which still skips the wait for RTNL. Losses between the
// driver's call and the notice are linkwatch's and are logged, not
// bounded; the record must say source=netlink and the connections must
// survive.
func TestBondFastPathNetlink(t *testing.T) {
	fastPathCuts(t, bondConfig{Mode: "active-backup", Miimon: 100}, "", "--carrier-source", "netlink")
}

// TestBondFastPathNetlinkUnmonitored is TestBondFastPathNetlink with the
// bond and its slaves outside the monitored set (--interfaces names only
// eth3): linkbeat fails bonds over whatever set it watches for routes, so
// the slaves' carrier notices must still reach the fast path.
func TestBondFastPathNetlinkUnmonitored(t *testing.T) {
	fastPathCuts(t, bondConfig{Mode: "active-backup", Miimon: 100}, "", "--carrier-source", "netlink", "--interfaces", "eth3")
}

// TestBondFastPathARP is the same with the bond's ARP monitor instead of
// miimon (seed 004's line: arp_interval=500 arp_ip_target=<peer>), whose
// outage alone is about a second.
func TestBondFastPathARP(t *testing.T) {
	fastPathCuts(t, bondConfig{Mode: "active-backup", ArpInterval: 500, ArpTargets: []string{peerAddr.Addr().String()}}, "")
}

// TestBondFastPathARPValidate adds arp_validate=all: the bond counts a
// slave up only on ARP it validates, so the replacement's ARP must still
// reach the bond's monitor while the fast path hands its other frames to
// the bond.
func TestBondFastPathARPValidate(t *testing.T) {
	fastPathCuts(t, bondConfig{Mode: "active-backup", ArpInterval: 500, ArpTargets: []string{peerAddr.Addr().String()}}, "all")
}

func fastPathCuts(t *testing.T, cfg bondConfig, arpValidate string, runArgs ...string) {
	netlinkOnly := slices.Contains(runArgs, "netlink")
	requireLinkbeat(t)
	n := newBondNet(t, cfg)
	if arpValidate != "" {
		writeBondOpt(t, n.Bond.Name, "arp_validate", arpValidate)
		t.Logf("%s: arp_validate %s", n.Bond.Name, n.Bond.Opt("arp_validate"))
	}
	n.enableIPv6(t)
	addr := freeLoopbackAddr(t)
	lb := startBondRun(t, append([]string{"--web.listen-address", addr}, runArgs...)...)
	lb.waitLog(t, 0, 30*time.Second, "bond fast path live", func(r logRecord) bool {
		return r["msg"] == "bond fast path live" && r["bond"] == n.Bond.Name
	})
	e := n.startEcho6(t)
	s := n.startStream(t, streamRate)
	rs := n.startReverseStream(t, streamRate)
	tcp := n.startTCP(t)
	tcp.flowing(t, tcp.mark(), 30*time.Second)

	const cuts = 6
	var lost []uint64
	var afters []uint64 // lost after the driver's call, both streams, every cut
	redirected := 0
	for i := 0; i < cuts; i++ {
		time.Sleep(linkwatchQuiet)
		if cfg.Miimon > 0 {
			n.randomPhase()
		}
		lm := lb.logMark()
		rmark := rs.Mark()
		r := n.cutFast(t, s, e)
		rs.waitResumed(r.CutDoneNs, resumePackets, switchTimeout)
		lost = append(lost, r.Outage.Lost)
		// The fast path's record comes with the first redirected frame;
		// when the bond switched before the stream handed the dead
		// slave a frame, there is none to redirect, and it says so.
		rec := lb.waitLog(t, lm, 10*time.Second, "a fast failover record", isFastFailoverEnd(n.Bond.Name))
		t.Logf("cut %d: %s -> %s; %s; IPv6 echo bond->peer %v, peer->bond %v; fast path: %v",
			i+1, r.From, r.To, r.Outage, r.Ping6[0].Round(time.Millisecond), r.Ping6[1].Round(time.Millisecond), rec)
		deadNs, red := checkFastRecord(t, rec, r.From, r.To, r.CutNs)
		if red {
			redirected++
		}
		before, after := s.lostAround(r.mark, deadNs)
		t.Logf("cut %d: %d lost before the driver's carrier call (%v after the cut), %d after it",
			i+1, before, time.Duration(deadNs-r.CutNs), after)
		if want := map[bool]string{true: "netlink", false: "fentry"}[netlinkOnly]; rec["source"] != "" && rec["source"] != want {
			t.Errorf("fast path record %v: source %s, want %s", rec, rec["source"], want)
		}
		afters = append(afters, after)
		if after > fastPathMaxLost && !netlinkOnly {
			t.Errorf("cut %d lost %d packets sent after the driver's carrier call, want at most %d with the fast path", i+1, after, fastPathMaxLost)
		}
		rbefore, rafter := rs.lostAround(rmark, deadNs)
		t.Logf("cut %d, peer to bond: %s; %d lost before the driver's carrier call, %d after it", i+1, rs.Outage(rmark), rbefore, rafter)
		afters = append(afters, rafter)
		if rafter > fastPathMaxLost && !netlinkOnly {
			t.Errorf("cut %d: the peer's stream to the bond lost %d packets sent after the driver's carrier call, want at most %d with the fast path", i+1, rafter, fastPathMaxLost)
		}
		got := tcp.mark()
		n.restoreSlave(t, r.From)
		tcp.flowing(t, got, 30*time.Second)
		tcp.check(t)
	}
	t.Logf("lost packets per cut: %v, fast failovers that redirected frames: %d of %d (kernel %s)", lost, redirected, cuts, kernelRelease())
	if redirected == 0 {
		t.Errorf("the fast path redirected no frame in %d cuts", cuts)
	}
	checkFastPathCounters(t, "http://"+addr+"/metrics", n.Bond.Name, redirected > 0)
	slices.Sort(afters)
	if m := afters[len(afters)/2]; m > fastPathMedianLost && !netlinkOnly {
		t.Errorf("median packets lost after the driver's carrier call over both streams' cuts: %d (%v), want at most %d with the fast path", m, afters, fastPathMedianLost)
	}
	// Packets sent before the driver's carrier call are lost to the
	// testbed's QMP-to-driver delay, which grows with the host's load:
	// they are a figure (see the log above), not the fast path's doing.
	checkFastState(t, lb, n.Bond.Name)
}

// checkFastState reads the last fast failover from bonds.json.
func checkFastState(t *testing.T, lb *bondRun, bond string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(lb.StateDir, "bonds.json"))
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Fast map[string]failoverRecord `json:"last_fast_failover"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("bonds.json: %v\n%s", err, b)
	}
	f, ok := st.Fast[bond]
	if !ok || f.By != "fastpath" || f.DurationNs <= 0 {
		t.Errorf("bonds.json last_fast_failover[%s] = %+v (found %v), want by fastpath with a duration", bond, f, ok)
	}
}

// TestBondALBEgress: balance-alb (miimon=100) sends through every slave,
// the stream through the one its hash picked. The bond checks each
// slave's carrier on every frame (bond_do_alb_xmit, bond_slave_can_tx):
// the first frame hashed to the cut slave is dropped and the hash entry
// cleared (tlb_dynamic_lb), so egress moves at once by itself and no frame
// reaches the dead slave for a fast path to redirect. linkbeat must say
// its fast path is off for the bond, and why, and the stream must resume
// through the other slave; the losses are logged (they include the
// packets sent into the cut cable before the driver's call, which the host's
// load decides).
func TestBondALBEgress(t *testing.T) {
	requireLinkbeat(t)
	n := newBondNet(t, bondConfig{Mode: "balance-alb", Miimon: 100})
	lb := startBondRun(t)
	rec := lb.waitLog(t, 0, 30*time.Second, "bond fast path off", func(r logRecord) bool {
		return r["msg"] == "bond fast path off" && r["bond"] == n.Bond.Name
	})
	if !strings.Contains(rec["reason"], "bond_slave_can_tx") {
		t.Errorf("fast path off for %s with reason %q, want the bond's own carrier check named", n.Bond.Name, rec["reason"])
	}
	s := n.startStream(t, streamRate)
	const cuts = 3
	for i := 0; i < cuts; i++ {
		time.Sleep(linkwatchQuiet)
		tx := streamSlave(t, n.Bond)
		n.randomPhase()
		mark := s.Mark()
		setLinks(t, false, netdevOf(tx))
		cutDone := monotonicNow()
		s.waitResumed(cutDone, resumePackets, switchTimeout)
		other := n.Bond.other(tx)
		// Only packets sent after the counter is read count: one in
		// flight then may arrive among the 100 (a 6.12 run once counted
		// 98 against 100 arrivals that way).
		before := txPackets(other)
		since := monotonicNow()
		waitFor(t, switchTimeout, "100 stream packets sent after the count", func() bool { return s.receivedSentAfter(since) >= 100 })
		if d := txPackets(other) - before; d < 100 {
			t.Errorf("cut %d: %s sent %d packets while 100 stream packets sent after the count arrived, want the stream on it", i+1, other, d)
		}
		t.Logf("cut %d of %s (the stream's slave): %s", i+1, tx, s.Outage(mark))
		n.restoreSlave(t, tx)
	}
}

// streamSlave is the slave whose transmit counter grows by the stream's
// rate: the one the bond's hash gives the stream.
func streamSlave(t *testing.T, b *bondDev) string {
	t.Helper()
	before := map[string]uint64{}
	for _, sl := range b.Slaves {
		before[sl] = txPackets(sl)
	}
	time.Sleep(time.Second)
	best, most := "", uint64(0)
	for _, sl := range b.Slaves {
		if d := txPackets(sl) - before[sl]; d > most {
			best, most = sl, d
		}
	}
	// A tenth of the rate: the emulated guest's sender slows down when
	// the host is busy.
	if most < streamRate/10 {
		t.Fatalf("no slave of %s sent the stream (most: %s, %d packets in a second)", b.Name, best, most)
	}
	return best
}

// checkFastPathCounters scrapes the exporter after the cuts: every frame
// the fast path took from a dead slave (tx) left through a live one
// (taken), so the two sums are equal, and not zero when a record said
// frames were redirected.
func checkFastPathCounters(t *testing.T, url, bond string, redirected bool) {
	t.Helper()
	snap, err := scrapeMetrics(url)
	if err != nil {
		t.Fatal(err)
	}
	sum := func(name string, labels map[string]string) float64 {
		v := 0.0
		for _, m := range snap.series(name, labels) {
			v += m.GetCounter().GetValue()
		}
		return v
	}
	tx := sum("linkbeat_bond_fast_path_redirected_packets_total", map[string]string{"direction": "tx"})
	taken := sum("linkbeat_bond_fast_path_taken_packets_total", nil)
	t.Logf("fast path counters: %v frames redirected from dead slaves, %v taken by live ones", tx, taken)
	if tx != taken {
		t.Errorf("fast path counters: %v frames redirected from dead slaves, but %v taken by live ones", tx, taken)
	}
	if redirected && tx == 0 {
		t.Errorf("a fast failover record said frames were redirected, but linkbeat_bond_fast_path_redirected_packets_total{direction=\"tx\"} is 0")
	}
	if live := snap.series("linkbeat_bond_fast_path_live", map[string]string{"bond": bond}); len(live) != 1 || live[0].GetGauge().GetValue() != 1 {
		t.Errorf("linkbeat_bond_fast_path_live{bond=%q}: %v, want 1", bond, live)
	}
}
