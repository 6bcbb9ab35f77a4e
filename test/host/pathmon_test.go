package host

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/linkbeat/linkbeat/gen"
	"github.com/linkbeat/linkbeat/internal/bond"
	"github.com/linkbeat/linkbeat/internal/pathmon"
	"github.com/linkbeat/linkbeat/internal/traffic"
	"github.com/linkbeat/linkbeat/test/dropper"
)

// TestPathmon drives the ARP path monitor directly (the host has no
// bonding): two veth paths, pm0-pm1 and pn0-pn1, from netns a to netns b,
// where the target 10.79.0.2 lives. Both paths answer; then b drops ARP
// arriving on pn1 (a TC program, carrier stays up) and pn0's verdict goes
// dead while pm0 stays alive; then the drop goes and pn0 is alive again.
// pm0 probes from an address that is not its own, so the monitor must
// put that address in pm0's unicast filter, and take it out at the end.
func TestPathmon(t *testing.T) {
	for _, mech := range []traffic.Mechanism{traffic.TCX, traffic.Clsact} {
		t.Run(string(mech), func(t *testing.T) { testPathmon(t, mech) })
	}
}

const (
	pmInterval  = 50 * time.Millisecond
	pmMissedMax = 3
)

func testPathmon(t *testing.T, mech traffic.Mechanism) {
	a, b := newNetns(t), newNetns(t)
	for _, p := range [][2]string{{"pm0", "pm1"}, {"pn0", "pn1"}} {
		a.ip(t, "link", "add", p[0], "type", "veth", "peer", "name", p[1], "netns", string(b))
		a.ip(t, "link", "set", p[0], "up")
		b.ip(t, "link", "set", p[1], "up")
	}
	b.ip(t, "addr", "add", "10.79.0.2/24", "dev", "pm1")
	a.ip(t, "addr", "add", "10.79.0.1/24", "dev", "pm0")
	target := netip.MustParseAddr("10.79.0.2")
	forced, _ := net.ParseMAC("02:00:00:79:00:01")
	pm0, pn0, pn1 := a.ifindex(t, "pm0"), a.ifindex(t, "pn0"), b.ifindex(t, "pn1")
	pn0MAC := linkMAC(t, a, "pn0")

	dir := pinDir(t)
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	var m *pathmon.Monitor
	a.do(t, func() {
		var err error
		m, err = pathmon.Open(pathmon.Options{PinDir: dir, Mechanism: mech, Log: log})
		if err != nil {
			t.Fatal(err)
		}
	})
	closed := false
	t.Cleanup(func() {
		if !closed {
			a.do(t, func() { m.Close() })
		}
	})
	const bondIndex = 1000 // no such bond: the host has no bonding
	spec := pathmon.Bond{Index: bondIndex, Name: "tbond", Targets: []netip.Addr{target}, Interval: pmInterval, MissedMax: pmMissedMax,
		Slaves: []pathmon.Slave{{Index: pm0, Name: "pm0", MAC: forced}, {Index: pn0, Name: "pn0"}}}
	start := monoNow()
	a.do(t, func() {
		if err := m.SetBond(spec); err != nil {
			t.Fatal(err)
		}
	})

	// The forced address is in pm0's unicast filter; pn0 probes from its
	// own address, which needs none.
	if fdb := a.exec(t, "bridge", "fdb", "show", "dev", "pm0"); !strings.Contains(fdb, "02:00:00:79:00:01 self permanent") {
		t.Fatalf("pm0's unicast filter lacks the probe address:\n%s", fdb)
	}
	if !hookOn(t, a, "pm0", mech) || !hookOn(t, a, "pn0", mech) {
		t.Fatalf("the ARP program is not on both slaves:\n%s", a.exec(t, "tc", "filter", "show", "dev", "pm0", "ingress"))
	}
	st := slaveStatus(t, m, pn0)
	if st.MAC != pn0MAC.String() || st.MACSource != "current" || st.Filter {
		t.Fatalf("pn0 status %+v, want its own address %s, unfiltered", st, pn0MAC)
	}

	// Both paths answer.
	alive := map[int]int64{}
	for len(alive) < 2 {
		r := nextReport(t, m, 5*time.Second)
		if !r.Alive || r.BondIndex != bondIndex {
			t.Fatalf("report %+v before both paths were alive", r)
		}
		alive[r.SlaveIndex] = r.KernelNs
	}
	t.Logf("%s: both paths alive %v after SetBond", mech, time.Duration(max(alive[pm0], alive[pn0])-start))

	// Replies are counted, once per probe: the program counts only
	// replies to the probe's address (the ping below gets others).
	a.exec(t, "ping", "-c", "1", "-W", "2", "10.79.0.2") // ARP through the program still works
	time.Sleep(5 * pmInterval)
	for _, idx := range []int{pm0, pn0} {
		st := slaveStatus(t, m, idx)
		if st.Verdict != pathmon.Alive || st.Replies < 4 || len(st.Targets) != 1 || st.Targets[0].LastNs <= start {
			t.Fatalf("slave %d status %+v, want alive with replies", idx, st)
		}
	}
	// The pinned map holds the same counters.
	pinned, err := ebpf.LoadPinnedMap(filepath.Join(dir, pathmon.PinName), &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if n := mapLen(t, pinned); n != 2 {
		t.Errorf("pinned map has %d entries, want 2 (one per slave and target)", n)
	}
	// No neighbour entry in b learned from a probe: sender IP 0.0.0.0.
	if neigh := b.ip(t, "neigh", "show"); strings.Contains(neigh, "02:00:00:79:00:01") || strings.Contains(neigh, pn0MAC.String()) {
		t.Fatalf("the target learned a neighbour from the probes:\n%s", neigh)
	}

	// A drop for another sender's address changes nothing: the filter
	// the VM recipe copies is specific to one slave's probes.
	var other *traffic.HookLink
	b.do(t, func() { other = dropARP(t, mech, pn1, "pn1", forced) })
	time.Sleep((pmMissedMax + 2) * pmInterval)
	select {
	case r := <-m.Reports():
		t.Fatalf("report %+v while only another sender's ARP was dropped", r)
	default:
	}
	b.do(t, func() {
		if err := other.Close(false); err != nil {
			t.Fatal(err)
		}
	})

	// b stops answering on pn1: pn0's probes dropped at its ingress,
	// carrier up.
	var drop *traffic.HookLink
	b.do(t, func() { drop = dropARP(t, mech, pn1, "pn1", pn0MAC) })
	dropped := monoNow()
	// missed_max intervals without a reply make a path dead, the first
	// of which may have begun before the drop: for missed_max-1
	// intervals after it, pn0 must still be alive.
	r, ok := holdVerdict(t, m, bondIndex, pn0, pathmon.Alive, dropped+int64((pmMissedMax-1)*pmInterval))
	if !ok {
		r = nextReport(t, m, 5*time.Second)
	}
	if r.SlaveIndex != pn0 || r.Alive {
		t.Fatalf("report %+v, want pn0 dead", r)
	}
	t.Logf("%s: pn0 dead %v after the drop (interval %v, missed_max %d)", mech, time.Duration(r.KernelNs-dropped), pmInterval, pmMissedMax)
	if v := m.Verdict(bondIndex, pm0); v != pathmon.Alive {
		t.Errorf("pm0 is %v while its path answers", v)
	}
	if !strings.Contains(a.ip(t, "link", "show", "dev", "pn0"), "LOWER_UP") {
		t.Error("pn0 lost carrier: the test meant to cut the path only")
	}

	// The path answers again.
	b.do(t, func() {
		if err := drop.Close(false); err != nil {
			t.Fatal(err)
		}
	})
	restored := monoNow()
	r = nextReport(t, m, 5*time.Second)
	if r.SlaveIndex != pn0 || !r.Alive {
		t.Fatalf("report %+v, want pn0 alive", r)
	}
	t.Logf("%s: pn0 alive %v after the drop ended", mech, time.Duration(r.KernelNs-restored))

	// pn0 leaves: its program goes; pm0 keeps probing.
	spec.Slaves = spec.Slaves[:1]
	a.do(t, func() {
		if err := m.SetBond(spec); err != nil {
			t.Fatal(err)
		}
	})
	if hookOn(t, a, "pn0", mech) || !hookOn(t, a, "pm0", mech) {
		t.Fatalf("after pn0 left:\n%s", a.exec(t, "tc", "filter", "show", "dev", "pm0", "ingress"))
	}
	if n := mapLen(t, pinned); n != 1 {
		t.Errorf("pinned map has %d entries after pn0 left, want 1", n)
	}

	// The bond goes: everything the monitor added goes with it.
	a.do(t, func() {
		if err := m.RemoveBond(bondIndex); err != nil {
			t.Fatal(err)
		}
	})
	if hookOn(t, a, "pm0", mech) {
		t.Fatalf("the ARP program is still on pm0:\n%s", a.exec(t, "tc", "filter", "show", "dev", "pm0", "ingress"))
	}
	if fdb := a.exec(t, "bridge", "fdb", "show", "dev", "pm0"); strings.Contains(fdb, "02:00:00:79:00:01") {
		t.Fatalf("the probe address is still in pm0's unicast filter:\n%s", fdb)
	}
	if n := mapLen(t, pinned); n != 0 {
		t.Errorf("pinned map has %d entries after the bond went, want 0", n)
	}
	pinned.Close()
	a.do(t, func() {
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
	})
	closed = true
	if _, ok := <-m.Reports(); ok {
		t.Error("Reports still open after Close")
	}
}

// holdVerdict checks, until the monotonic time untilNs, that slave's
// verdict stays want and that no report comes. A read counts only when it
// finished before untilNs, so a change that may have come after the
// window cannot fail the test. A report taken at the window's end is
// returned (ok) for the caller.
func holdVerdict(t *testing.T, m *pathmon.Monitor, bondIndex, slave int, want pathmon.Verdict, untilNs int64) (bond.PathReport, bool) {
	t.Helper()
	for {
		var r *bond.PathReport
		select {
		case rep := <-m.Reports():
			r = &rep
		default:
		}
		v := m.Verdict(bondIndex, slave)
		if monoNow() >= untilNs {
			if r != nil {
				return *r, true
			}
			return bond.PathReport{}, false
		}
		if r != nil {
			t.Fatalf("report %+v %v before the end of the window in which slave %d must stay %v", *r, time.Duration(untilNs-monoNow()), slave, want)
		}
		if v != want {
			t.Fatalf("slave %d is %v %v before the end of the window in which it must stay %v", slave, v, time.Duration(untilNs-monoNow()), want)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func monoNow() int64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

func nextReport(t *testing.T, m *pathmon.Monitor, timeout time.Duration) bond.PathReport {
	t.Helper()
	select {
	case r, ok := <-m.Reports():
		if !ok {
			t.Fatal("Reports closed")
		}
		return r
	case <-time.After(timeout):
		t.Fatalf("no path report within %v; status %+v", timeout, m.Status())
	}
	panic("unreachable")
}

func slaveStatus(t *testing.T, m *pathmon.Monitor, ifindex int) pathmon.SlaveStatus {
	t.Helper()
	for _, b := range m.Status() {
		for _, s := range b.Slaves {
			if s.Index == ifindex {
				return s
			}
		}
	}
	t.Fatalf("ifindex %d not in status %+v", ifindex, m.Status())
	return pathmon.SlaveStatus{}
}

func linkMAC(t *testing.T, ns netns, dev string) net.HardwareAddr {
	t.Helper()
	f := strings.Fields(ns.ip(t, "-br", "link", "show", "dev", dev))
	if len(f) < 3 {
		t.Fatalf("ip -br link show %s: %v", dev, f)
	}
	mac, err := net.ParseMAC(f[2])
	if err != nil {
		t.Fatal(err)
	}
	return mac
}

// hookOn says whether the monitor's program is on dev's ingress in ns: a
// tcx program named arp_ingress, or the clsact filter linkbeat-arp.
func hookOn(t *testing.T, ns netns, dev string, mech traffic.Mechanism) bool {
	t.Helper()
	if mech == traffic.Clsact {
		return strings.Contains(ns.exec(t, "tc", "filter", "show", "dev", dev, "ingress"), "linkbeat-arp")
	}
	found := false
	ns.do(t, func() {
		l, err := net.InterfaceByName(dev)
		if err != nil {
			t.Fatal(err)
		}
		res, err := link.QueryPrograms(link.QueryOptions{Target: l.Index, Attach: ebpf.AttachTCXIngress})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range res.Programs {
			prog, err := ebpf.NewProgramFromID(p.ID)
			if err != nil {
				continue
			}
			info, err := prog.Info()
			prog.Close()
			if err == nil && info.Name == "arp_ingress" {
				found = true
			}
		}
	})
	return found
}

func mapLen(t *testing.T, m *ebpf.Map) int {
	t.Helper()
	n := 0
	var (
		key gen.ArpPathKey
		val gen.ArpPathReplies
	)
	it := m.Iterate()
	for it.Next(&key, &val) {
		n++
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}

// dropARP attaches a TC program to ifindex's ingress in the caller's
// netns that drops the ARP frames whose sender hardware address is sha:
// one host's probes stop being answered while the carrier stays up. (On a
// shared segment, as the VM testbed's hub, this is how the peer cuts one
// slave's path and not the other's.)
func dropARP(t *testing.T, mech traffic.Mechanism, ifindex int, ifname string, sha net.HardwareAddr) *traffic.HookLink {
	t.Helper()
	prog, err := dropper.ARPFrom(sha)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { prog.Close() })
	l, err := traffic.AttachHook(mech, ifindex, ifname, traffic.Hook{Program: prog, Name: "lbtest-drop", Priority: 1, Protocol: unix.ETH_P_ARP})
	if err != nil {
		if errors.Is(err, ebpf.ErrNotSupported) {
			t.Skipf("%s: %v", mech, err)
		}
		t.Fatal(err)
	}
	return l
}
