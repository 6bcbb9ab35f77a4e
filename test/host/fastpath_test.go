package host

import (
	"context"
	bin "encoding/binary"
	"log/slog"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/linkbeat/linkbeat/gen"
	"github.com/linkbeat/linkbeat/internal/fastpath"
	"github.com/linkbeat/linkbeat/internal/traffic"
)

// The bond fast path's TC programs (bpf/fastpath.c) under
// BPF_PROG_TEST_RUN. The host has no bonding driver, so veths stand in
// for a bond and its slaves and the maps are written by hand, as the
// daemon and the carrier programs would.

const (
	tcNext     = -1 // TC_ACT_UNSPEC / TCX_NEXT
	tcRedirect = 7  // TC_ACT_REDIRECT
)

// fpBed is a stand-in bond (fpbond) with slaves fpa (active) and fpb, fpc.
type fpBed struct {
	ns                netns
	o                 *fastpath.Objects
	bond, a, b, c     int
	ipv4, arp, lacpFr []byte
}

func newFPBed(t *testing.T) *fpBed {
	t.Helper()
	ns := newNetns(t)
	for _, n := range []string{"fpbond", "fpa", "fpb", "fpc"} {
		ns.vethPair(t, n, n+"-p")
	}
	o, err := fastpath.Load(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	f := &fpBed{ns: ns, o: o, bond: ns.ifindex(t, "fpbond"), a: ns.ifindex(t, "fpa"), b: ns.ifindex(t, "fpb"), c: ns.ifindex(t, "fpc")}
	for _, s := range []int{f.a, f.b, f.c} {
		if err := o.SetSlave(s, f.bond, true); err != nil {
			t.Fatal(err)
		}
	}
	if err := o.SetBond(f.bond, f.a, []uint32{uint32(f.a), uint32(f.b), uint32(f.c)}, time.Second, fastpath.FlagIngress); err != nil {
		t.Fatal(err)
	}
	f.ipv4 = ethFrame(0x0800, 46)
	f.arp = ethFrame(0x0806, 28)
	f.lacpFr = ethFrame(0x8809, 110)
	return f
}

func ethFrame(proto uint16, payload int) []byte {
	b := make([]byte, 14+payload)
	copy(b, []byte{0x02, 0, 0, 0, 0, 2})
	copy(b[6:], []byte{0x02, 0, 0, 0, 0, 1})
	bin.BigEndian.PutUint16(b[12:], proto)
	if proto == 0x0800 {
		b[14] = 0x45
	}
	return b
}

// run runs prog on a frame as if it were on ifindex, inside the netns
// (the kernel looks the device up there).
func (f *fpBed) run(t *testing.T, prog *ebpf.Program, ifindex int, frame []byte) int32 {
	t.Helper()
	var ret uint32
	f.ns.do(t, func() {
		ctx := make([]byte, 192) // struct __sk_buff, zero but for ifindex
		bin.NativeEndian.PutUint32(ctx[40:], uint32(ifindex))
		r, err := prog.Run(&ebpf.RunOptions{Data: frame, Context: ctx})
		if err != nil {
			t.Fatalf("test run on ifindex %d: %v", ifindex, err)
		}
		ret = r
	})
	return int32(ret)
}

func (f *fpBed) pend(t *testing.T, dead, to int, expires time.Duration) {
	t.Helper()
	now := uint64(monoNow())
	r := fastpath.Redirect{DeadNs: now, ExpiresNs: uint64(int64(now) + int64(expires)), Dead: uint32(dead), To: uint32(to), Source: 1}
	if err := f.o.FpRedirects.Put(uint32(f.bond), r); err != nil {
		t.Fatal(err)
	}
}

func (f *fpBed) carrier(t *testing.T, idx int, up bool) {
	t.Helper()
	v := gen.FastpathFpSlave{Bond: uint32(f.bond)}
	if up {
		v.Carrier = 1
	}
	if err := f.o.FpSlaves.Put(uint32(idx), v); err != nil {
		t.Fatal(err)
	}
}

func (f *fpBed) stats(t *testing.T, idx int) fastpath.Stats {
	t.Helper()
	all, err := fastpath.SlaveStats(f.o.FpSlaveStats)
	if err != nil {
		t.Fatal(err)
	}
	return all[idx]
}

func TestFastPathEgress(t *testing.T) {
	f := newFPBed(t)
	eg := f.o.FpEgress
	if got := f.run(t, eg, f.a, f.ipv4); got != tcNext {
		t.Fatalf("no redirect pending: verdict %d, want %d (pass)", got, tcNext)
	}
	f.carrier(t, f.a, false)
	f.pend(t, f.a, f.b, time.Second)
	if got := f.run(t, eg, f.a, f.ipv4); got != tcRedirect {
		t.Fatalf("frame on the dead slave: verdict %d, want %d (redirect)", got, tcRedirect)
	}
	r, ok := f.o.Redirect(f.bond)
	if !ok || r.FirstNs == 0 || r.FirstNs < r.DeadNs {
		t.Errorf("first redirected frame not stamped: %+v", r)
	}
	if st := f.stats(t, f.a); st.TxRedirected != 1 {
		t.Errorf("dead slave's tx_redirected = %d, want 1", st.TxRedirected)
	}
	// The redirected frame arrives at the replacement's egress: it must
	// leave there, not move again.
	if got := f.run(t, eg, f.b, f.ipv4); got != tcNext {
		t.Errorf("frame on the replacement: verdict %d, want %d (never redirected twice)", got, tcNext)
	}
	if got := f.run(t, eg, f.c, f.ipv4); got != tcNext {
		t.Errorf("frame on an uninvolved slave: verdict %d, want %d", got, tcNext)
	}
	if got := f.run(t, eg, f.a, f.arp); got != tcRedirect {
		t.Errorf("ARP on the dead slave: verdict %d, want %d: the bond's own ARP must leave too", got, tcRedirect)
	}
}

func TestFastPathEgressNoLiveReplacement(t *testing.T) {
	f := newFPBed(t)
	f.carrier(t, f.a, false)
	f.pend(t, f.a, f.b, time.Second)
	f.carrier(t, f.b, false) // the replacement lost carrier since the pick
	if got := f.run(t, f.o.FpEgress, f.a, f.ipv4); got != tcNext {
		t.Fatalf("replacement without carrier: verdict %d, want %d (nothing done)", got, tcNext)
	}
	if st := f.stats(t, f.a); st.TxSkipped != 1 || st.TxRedirected != 0 {
		t.Errorf("counters %+v, want one skipped, none redirected", st)
	}
}

func TestFastPathExpiry(t *testing.T) {
	f := newFPBed(t)
	f.carrier(t, f.a, false)
	f.pend(t, f.a, f.b, -time.Millisecond) // expired a millisecond ago
	if got := f.run(t, f.o.FpEgress, f.a, f.ipv4); got != tcNext {
		t.Errorf("expired redirect, egress: verdict %d, want %d", got, tcNext)
	}
	if got := f.run(t, f.o.FpIngress, f.b, f.ipv4); got != tcNext {
		t.Errorf("expired redirect, ingress: verdict %d, want %d", got, tcNext)
	}
}

func TestFastPathIngress(t *testing.T) {
	f := newFPBed(t)
	in := f.o.FpIngress
	if got := f.run(t, in, f.b, f.ipv4); got != tcNext {
		t.Fatalf("no redirect pending: verdict %d, want %d", got, tcNext)
	}
	f.carrier(t, f.a, false)
	f.pend(t, f.a, f.b, time.Second)
	if got := f.run(t, in, f.b, f.ipv4); got != tcRedirect {
		t.Fatalf("IPv4 frame on the replacement: verdict %d, want %d (to the bond)", got, tcRedirect)
	}
	if got := f.run(t, in, f.b, f.arp); got != tcNext {
		t.Errorf("ARP on the replacement: verdict %d, want %d: the bond's ARP monitor reads it on the slave", got, tcNext)
	}
	if got := f.run(t, in, f.b, f.lacpFr); got != tcNext {
		t.Errorf("LACP on the replacement: verdict %d, want %d", got, tcNext)
	}
	if st := f.stats(t, f.b); st.RxRedirected != 2 {
		t.Errorf("replacement's rx_redirected = %d, want 2 (the IPv4 frame and the ARP copy)", st.RxRedirected)
	}
	if got := f.run(t, in, f.c, f.ipv4); got != tcNext {
		t.Errorf("frame on an uninvolved slave: verdict %d, want %d", got, tcNext)
	}
	if got := f.run(t, in, f.a, f.ipv4); got != tcNext {
		t.Errorf("frame on the dead slave: verdict %d, want %d", got, tcNext)
	}
}

// TestFastPathMark is the netlink-only host's mark (Objects.Mark), which
// follows fp_carrier's rules: only the active slave's loss, the first
// candidate with carrier, nothing when none has it.
func TestFastPathMark(t *testing.T) {
	f := newFPBed(t)
	now := monoNow()
	if err := f.o.Mark(f.b, now); err != nil {
		t.Fatal(err)
	}
	if r, ok := f.o.Redirect(f.bond); ok {
		t.Fatalf("a backup's loss marked a redirect: %+v", r)
	}
	f.carrier(t, f.b, true)
	f.carrier(t, f.c, true)
	// The first candidate (fpb) has no carrier now: fpc is picked.
	f.carrier(t, f.b, false)
	if err := f.o.Mark(f.a, now); err != nil {
		t.Fatal(err)
	}
	r, ok := f.o.Redirect(f.bond)
	if !ok || int(r.Dead) != f.a || int(r.To) != f.c || r.ExpiresNs != uint64(now)+uint64(time.Second) {
		t.Fatalf("redirect %+v (found %v), want dead %d to %d expiring a second after the mark", r, ok, f.a, f.c)
	}
	if err := f.o.FpRedirects.Delete(uint32(f.bond)); err != nil {
		t.Fatal(err)
	}
	f.carrier(t, f.a, true)
	f.carrier(t, f.c, false)
	if err := f.o.Mark(f.a, now); err != nil {
		t.Fatal(err)
	}
	if r, ok := f.o.Redirect(f.bond); ok {
		t.Fatalf("no candidate has carrier, yet a redirect was marked: %+v", r)
	}
}

// TestFastPathAnySlave: in a mode that sends through every slave (FlagAny,
// the basis for the hash modes) a backup's loss is marked too, and the
// ingress program leaves the replacement's frames to the bond's own
// receive handler.
func TestFastPathAnySlave(t *testing.T) {
	f := newFPBed(t)
	if err := f.o.SetBond(f.bond, f.a, []uint32{uint32(f.a), uint32(f.b), uint32(f.c)}, time.Second, fastpath.FlagAny); err != nil {
		t.Fatal(err)
	}
	if err := f.o.Mark(f.b, monoNow()); err != nil {
		t.Fatal(err)
	}
	r, ok := f.o.Redirect(f.bond)
	if !ok || int(r.Dead) != f.b || int(r.To) != f.a {
		t.Fatalf("a backup's loss with FlagAny: redirect %+v (found %v), want from %d to the active %d", r, ok, f.b, f.a)
	}
	if got := f.run(t, f.o.FpEgress, f.b, f.ipv4); got != tcRedirect {
		t.Errorf("frame on the dead slave: verdict %d, want %d", got, tcRedirect)
	}
	if got := f.run(t, f.o.FpIngress, f.a, f.ipv4); got != tcNext {
		t.Errorf("frame on the replacement with FlagAny: verdict %d, want %d (the bond receives on every slave)", got, tcNext)
	}
}

// TestFastPathClearedAtStartAndExit: a redirect left in the maps (an
// earlier run's, or one pending when the daemon stops) is gone once the
// manager has started, and again once it has stopped.
func TestFastPathClearedAtStartAndExit(t *testing.T) {
	f := newFPBed(t)
	f.pend(t, f.a, f.b, time.Hour)
	m := fastpath.New(fastpath.Options{Objects: f.o, Mechanism: traffic.Clsact, Log: slog.New(slog.DiscardHandler), Now: monoNow})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); m.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, ok := f.o.Redirect(f.bond); !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a redirect from before the start is still in force 5s after it")
		}
		time.Sleep(10 * time.Millisecond)
	}
	f.pend(t, f.a, f.b, time.Hour) // one pending when the daemon stops
	if err := f.o.SetBond(f.bond, f.a, []uint32{uint32(f.b)}, time.Second, fastpath.FlagIngress); err != nil {
		t.Fatal(err)
	}
	cancel()
	<-done
	if r, ok := f.o.Redirect(f.bond); ok {
		t.Errorf("a redirect is still in force after the manager stopped: %+v", r)
	}
	var b gen.FastpathFpBond
	if err := f.o.FpBonds.Lookup(uint32(f.bond), &b); err == nil {
		t.Errorf("the candidate table is still there after the manager stopped: %+v", b)
	}
}

// udpFrame is an IPv4 UDP frame of one flow (source port sport), for the
// hash modes' per-flow pick.
func udpFrame(sport uint16) []byte {
	b := ethFrame(0x0800, 46)
	ip := b[14:]
	ip[0], ip[8], ip[9] = 0x45, 64, 17
	bin.BigEndian.PutUint16(ip[2:], 46)
	copy(ip[12:], []byte{10, 0, 0, 1})
	copy(ip[16:], []byte{10, 0, 0, 2})
	bin.BigEndian.PutUint16(ip[20:], sport)
	bin.BigEndian.PutUint16(ip[22:], 9000)
	bin.BigEndian.PutUint16(ip[24:], 26)
	return b
}

// TestFastPathHash: in a hash mode (802.3ad, balance-xor) the dead
// slave's flows spread over every live candidate, each flow always on
// the same one; LACPDUs stay on their port; a redirected frame is not
// redirected again; with no live candidate nothing is done.
func TestFastPathHash(t *testing.T) {
	f := newFPBed(t)
	if err := f.o.SetBond(f.bond, 0, []uint32{uint32(f.a), uint32(f.b), uint32(f.c)}, time.Second, fastpath.FlagAny|fastpath.FlagHash); err != nil {
		t.Fatal(err)
	}
	f.carrier(t, f.a, false)
	f.pend(t, f.a, f.b, time.Second)
	eg := f.o.FpEgress
	taken := func() (b, c uint64) { return f.stats(t, f.b).TxTaken, f.stats(t, f.c).TxTaken }
	const flows = 32
	for i := range flows {
		fr := udpFrame(uint16(40000 + i))
		b0, c0 := taken()
		for range 3 {
			if got := f.run(t, eg, f.a, fr); got != tcRedirect {
				t.Fatalf("flow %d on the dead slave: verdict %d, want %d (redirect)", i, got, tcRedirect)
			}
		}
		b1, c1 := taken()
		if (b1-b0 != 3 || c1 != c0) && (c1-c0 != 3 || b1 != b0) {
			t.Fatalf("flow %d: 3 frames went %d to fpb and %d to fpc, want all 3 to one slave", i, b1-b0, c1-c0)
		}
	}
	b, c := taken()
	if b == 0 || c == 0 || b+c != 3*flows {
		t.Errorf("%d flows: %d frames to fpb, %d to fpc, want both used and %d in all", flows, b, c, 3*flows)
	}
	if got := f.run(t, eg, f.b, udpFrame(40000)); got != tcNext {
		t.Errorf("frame on a live slave: verdict %d, want %d (never redirected twice)", got, tcNext)
	}
	before := f.stats(t, f.a)
	if got := f.run(t, eg, f.a, f.lacpFr); got != tcNext {
		t.Errorf("LACPDU on the dead slave: verdict %d, want %d: slow protocols are per port", got, tcNext)
	}
	if after := f.stats(t, f.a); after != before {
		t.Errorf("LACPDU counted: %+v -> %+v", before, after)
	}
	// fpc loses carrier too: every flow goes to fpb.
	f.carrier(t, f.c, false)
	b0, c0 := taken()
	for i := range flows {
		if got := f.run(t, eg, f.a, udpFrame(uint16(40000+i))); got != tcRedirect {
			t.Fatalf("flow %d with fpc dead: verdict %d, want %d", i, got, tcRedirect)
		}
	}
	if b1, c1 := taken(); b1-b0 != flows || c1 != c0 {
		t.Errorf("fpc without carrier: %d frames to fpb, %d to fpc, want all %d to fpb", b1-b0, c1-c0, flows)
	}
	f.carrier(t, f.b, false)
	if got := f.run(t, eg, f.a, udpFrame(40000)); got != tcNext {
		t.Errorf("no live candidate: verdict %d, want %d (nothing done)", got, tcNext)
	}
	if st := f.stats(t, f.a); st.TxSkipped != 1 {
		t.Errorf("no live candidate: tx_skipped %d, want 1", st.TxSkipped)
	}
	if got := f.run(t, f.o.FpIngress, f.b, f.ipv4); got != tcNext {
		t.Errorf("ingress in a hash mode: verdict %d, want %d (the bond receives on every slave)", got, tcNext)
	}
}

// TestFastPathLACPNeverRedirected: not in active-backup either.
func TestFastPathLACPNeverRedirected(t *testing.T) {
	f := newFPBed(t)
	f.carrier(t, f.a, false)
	f.pend(t, f.a, f.b, time.Second)
	if got := f.run(t, f.o.FpEgress, f.a, f.lacpFr); got != tcNext {
		t.Errorf("LACPDU on the dead active slave: verdict %d, want %d", got, tcNext)
	}
}

// TestFastPathMarkHash: in a hash mode the netlink-only mark, like the
// carrier program, counts only a slave the bond sends on (a candidate):
// another aggregator's port carries nothing to redirect.
func TestFastPathMarkHash(t *testing.T) {
	f := newFPBed(t)
	if err := f.o.SetBond(f.bond, 0, []uint32{uint32(f.a), uint32(f.b)}, time.Second, fastpath.FlagAny|fastpath.FlagHash); err != nil {
		t.Fatal(err)
	}
	if err := f.o.Mark(f.c, monoNow()); err != nil {
		t.Fatal(err)
	}
	if r, ok := f.o.Redirect(f.bond); ok {
		t.Fatalf("a port outside the transmit array marked a redirect: %+v", r)
	}
	if err := f.o.Mark(f.b, monoNow()); err != nil {
		t.Fatal(err)
	}
	if r, ok := f.o.Redirect(f.bond); !ok || int(r.Dead) != f.b || int(r.To) != f.a {
		t.Fatalf("a candidate's loss: redirect %+v (found %v), want from %d to %d", r, ok, f.b, f.a)
	}
}
