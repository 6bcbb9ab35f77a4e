package pathmon

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/linkbeat/linkbeat/internal/bond"
	"github.com/linkbeat/linkbeat/internal/tc"
)

// fakeKernel stands in for the kernel: links with addresses, and ports
// whose reply counters the test moves.
type fakeKernel struct {
	mu      sync.Mutex
	links   map[int]macInput
	ports   map[int]*fakePort // open ports by ifindex
	opened  []portSpec
	closed  []int
	openErr map[int]error
	unload  bool
}

type fakePort struct {
	k      *fakeKernel
	spec   portSpec
	probes int
	counts []uint64
	gone   bool
	// answer makes every probe answered by every target.
	answer bool
}

func newFakeKernel() *fakeKernel {
	return &fakeKernel{links: map[int]macInput{}, ports: map[int]*fakePort{}, openErr: map[int]error{}}
}

func (k *fakeKernel) mechanism() tc.Mechanism { return tc.TCX }

func (k *fakeKernel) macInput(_, slave int) (macInput, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	in, ok := k.links[slave]
	if !ok {
		return macInput{}, errors.New("no such link")
	}
	return in, nil
}

func (k *fakeKernel) open(p portSpec) (port, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.openErr[p.Ifindex]; err != nil {
		return nil, err
	}
	if _, ok := k.ports[p.Ifindex]; ok {
		panic("port opened twice")
	}
	fp := &fakePort{k: k, spec: p, counts: make([]uint64, len(p.Targets))}
	k.ports[p.Ifindex] = fp
	k.opened = append(k.opened, p)
	return fp, nil
}

func (k *fakeKernel) close() error { k.unload = true; return nil }

func (k *fakeKernel) port(idx int) *fakePort {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.ports[idx]
}

func (k *fakeKernel) setAnswer(idx int, on bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.ports[idx].answer = on
}

func (p *fakePort) probe() error {
	p.k.mu.Lock()
	defer p.k.mu.Unlock()
	p.probes++
	if p.answer {
		for i := range p.counts {
			p.counts[i]++
		}
	}
	return nil
}

func (p *fakePort) replies() ([]TargetReplies, error) {
	p.k.mu.Lock()
	defer p.k.mu.Unlock()
	out := make([]TargetReplies, len(p.counts))
	for i, r := range p.counts {
		out[i] = TargetReplies{Addr: p.spec.Targets[i], Replies: r}
	}
	return out, nil
}

func (p *fakePort) close(gone bool) error {
	p.k.mu.Lock()
	defer p.k.mu.Unlock()
	p.gone = gone
	delete(p.k.ports, p.spec.Ifindex)
	p.k.closed = append(p.k.closed, p.spec.Ifindex)
	return nil
}

var (
	bondMAC = mac("52:54:00:00:00:01")
	target1 = netip.MustParseAddr("192.0.2.1")
	target2 = netip.MustParseAddr("192.0.2.2")
)

// twoSlaves is bond0 (ifindex 10) over eth0 (2) and eth1 (3), fail_over_mac
// none: both carry the bond's address, eth0's own.
func twoSlaves() (*fakeKernel, Bond) {
	k := newFakeKernel()
	k.links[2] = macInput{Current: bondMAC, Perm: bondMAC, Bond: bondMAC, FailOverMAC: "none"}
	k.links[3] = macInput{Current: bondMAC, Perm: mac("52:54:00:00:00:02"), Bond: bondMAC, FailOverMAC: "none"}
	b := Bond{Index: 10, Name: "bond0", Targets: []netip.Addr{target1, target2}, Interval: time.Hour, MissedMax: 3,
		Slaves: []Slave{{Index: 2, Name: "eth0"}, {Index: 3, Name: "eth1"}}}
	return k, b
}

// ticks runs n probe intervals by hand and returns the reports.
func ticks(m *Monitor, bondIndex, n int) []bond.PathReport {
	m.mu.Lock()
	r := m.bonds[bondIndex]
	m.mu.Unlock()
	var out []bond.PathReport
	for range n {
		out = append(out, m.tick(r)...)
	}
	return out
}

func TestMonitorOpensPortsWithSafeAddresses(t *testing.T) {
	k, b := twoSlaves()
	m := newMonitor(k, nil)
	defer m.Close()
	if err := m.SetBond(b); err != nil {
		t.Fatal(err)
	}
	if len(k.opened) != 2 {
		t.Fatalf("opened %d ports, want 2", len(k.opened))
	}
	for _, p := range k.opened {
		if bytes.Equal(p.MAC, bondMAC) {
			t.Errorf("%s probes from the bond's address", p.Ifname)
		}
		if !p.Filter {
			t.Errorf("%s: address %s not added to the unicast filter", p.Ifname, p.MAC)
		}
		if len(p.Targets) != 2 {
			t.Errorf("%s: targets %v", p.Ifname, p.Targets)
		}
		// The first probe goes out at once.
		if k.port(p.Ifindex).probes != 1 {
			t.Errorf("%s: %d probes after SetBond, want 1", p.Ifname, k.port(p.Ifindex).probes)
		}
	}
	if got := k.opened[1].MAC.String(); got != "52:54:00:00:00:02" {
		t.Errorf("eth1 probes from %s, want its permanent address", got)
	}
}

func TestMonitorVerdicts(t *testing.T) {
	k, b := twoSlaves()
	m := newMonitor(k, nil)
	defer m.Close()
	if err := m.SetBond(b); err != nil {
		t.Fatal(err)
	}
	k.setAnswer(2, true)
	k.setAnswer(3, true)
	// The probes SetBond sent were not answered (answer was off).
	reps := ticks(m, 10, 2)
	if len(reps) != 2 || !reps[0].Alive || !reps[1].Alive {
		t.Fatalf("reports %+v, want both alive once", reps)
	}
	if m.Verdict(10, 2) != Alive || m.Verdict(10, 3) != Alive {
		t.Fatalf("verdicts %v %v", m.Verdict(10, 2), m.Verdict(10, 3))
	}
	// eth0's targets go silent; eth1's keep answering.
	k.setAnswer(2, false)
	// The interval after the change still sees the reply to the last
	// answered probe, then three missed intervals.
	if reps := ticks(m, 10, 3); len(reps) != 0 {
		t.Fatalf("reports before missed_max: %+v", reps)
	}
	reps = ticks(m, 10, 1)
	if len(reps) != 1 || reps[0] != (bond.PathReport{BondIndex: 10, SlaveIndex: 2, Alive: false, KernelNs: reps[0].KernelNs}) || reps[0].KernelNs == 0 {
		t.Fatalf("reports %+v, want eth0 dead", reps)
	}
	if m.Verdict(10, 2) != Dead || m.Verdict(10, 3) != Alive {
		t.Fatalf("verdicts %v %v", m.Verdict(10, 2), m.Verdict(10, 3))
	}
	if reps := ticks(m, 10, 5); len(reps) != 0 {
		t.Fatalf("a dead path reported again: %+v", reps)
	}
	k.setAnswer(2, true)
	reps = ticks(m, 10, 2)
	if len(reps) != 1 || reps[0].SlaveIndex != 2 || !reps[0].Alive {
		t.Fatalf("reports %+v, want eth0 alive", reps)
	}
	st := m.Status()
	if len(st) != 1 || len(st[0].Slaves) != 2 || st[0].Slaves[0].Name != "eth0" || st[0].Slaves[0].Verdict != Alive || st[0].Slaves[0].Replies == 0 {
		t.Fatalf("status %+v", st)
	}
	if got := len(st[0].Slaves[1].Targets); got != 2 {
		t.Fatalf("eth1 status has %d targets, want 2", got)
	}
}

func TestMonitorNeverAnswered(t *testing.T) {
	k, b := twoSlaves()
	m := newMonitor(k, nil)
	defer m.Close()
	if err := m.SetBond(b); err != nil {
		t.Fatal(err)
	}
	if reps := ticks(m, 10, 2); len(reps) != 0 {
		t.Fatalf("reports %+v before missed_max", reps)
	}
	reps := ticks(m, 10, 1)
	if len(reps) != 2 || reps[0].Alive || reps[1].Alive {
		t.Fatalf("reports %+v, want both dead", reps)
	}
}

func TestMonitorSlavesComeAndGo(t *testing.T) {
	k, b := twoSlaves()
	m := newMonitor(k, nil)
	defer m.Close()
	if err := m.SetBond(b); err != nil {
		t.Fatal(err)
	}
	// eth1 leaves the bond.
	b.Slaves = b.Slaves[:1]
	if err := m.SetBond(b); err != nil {
		t.Fatal(err)
	}
	if k.port(3) != nil || len(k.closed) != 1 || k.closed[0] != 3 {
		t.Fatalf("eth1 still probed: closed %v", k.closed)
	}
	// Setting the same again changes nothing.
	if err := m.SetBond(b); err != nil {
		t.Fatal(err)
	}
	if len(k.opened) != 2 || len(k.closed) != 1 {
		t.Fatalf("reopened: opened %d, closed %v", len(k.opened), k.closed)
	}
	// A new slave joins.
	k.links[4] = macInput{Current: bondMAC, Perm: mac("52:54:00:00:00:04"), Bond: bondMAC, FailOverMAC: "none"}
	b.Slaves = append(b.Slaves, Slave{Index: 4, Name: "eth2"})
	if err := m.SetBond(b); err != nil {
		t.Fatal(err)
	}
	if k.port(4) == nil {
		t.Fatal("eth2 not probed")
	}
	// eth0 disappears.
	if err := m.Forget(2); err != nil {
		t.Fatal(err)
	}
	if k.port(2) != nil {
		t.Fatal("eth0 still probed")
	}
	// Targets change: everything starts over.
	b.Slaves = b.Slaves[1:]
	b.Targets = []netip.Addr{target2}
	if err := m.SetBond(b); err != nil {
		t.Fatal(err)
	}
	if p := k.port(4); p == nil || len(p.spec.Targets) != 1 {
		t.Fatalf("eth2 not reopened with the new target: %+v", p)
	}
	// No targets: the bond is not probed.
	b.Targets = nil
	if err := m.SetBond(b); err != nil {
		t.Fatal(err)
	}
	if len(k.ports) != 0 || len(m.Status()) != 0 {
		t.Fatalf("ports left open: %v, status %+v", k.ports, m.Status())
	}
}

func TestMonitorForcedMAC(t *testing.T) {
	k, b := twoSlaves()
	m := newMonitor(k, nil)
	defer m.Close()
	forced := mac("02:aa:bb:cc:dd:ee")
	b.Slaves = []Slave{{Index: 3, Name: "eth1", MAC: forced}}
	if err := m.SetBond(b); err != nil {
		t.Fatal(err)
	}
	p := k.port(3)
	if !bytes.Equal(p.spec.MAC, forced) || !p.spec.Filter {
		t.Fatalf("port %+v, want the forced address, filtered", p.spec)
	}
	b.Slaves[0].MAC = net.HardwareAddr{0x01, 0, 0, 0, 0, 0}
	if err := m.SetBond(b); err == nil {
		t.Fatal("a multicast probe address was accepted")
	}
}

func TestMonitorOpenFailureKeepsOthers(t *testing.T) {
	k, b := twoSlaves()
	k.openErr[2] = errors.New("no tc for you")
	m := newMonitor(k, nil)
	defer m.Close()
	if err := m.SetBond(b); err == nil {
		t.Fatal("no error for the slave that failed")
	}
	if k.port(3) == nil {
		t.Fatal("eth1 not probed because eth0 failed")
	}
	st := m.Status()[0].Slaves
	if st[0].Err == "" || st[1].Err != "" {
		t.Fatalf("status %+v", st)
	}
	// The next SetBond tries the failed one again.
	delete(k.openErr, 2)
	if err := m.SetBond(b); err != nil {
		t.Fatal(err)
	}
	if k.port(2) == nil {
		t.Fatal("eth0 not retried")
	}
}

func TestMonitorValidates(t *testing.T) {
	k, b := twoSlaves()
	m := newMonitor(k, nil)
	defer m.Close()
	for _, bad := range []string{"0.0.0.0", "224.0.0.1", "ff02::1", "::", "::1", "::ffff:192.0.2.1", "fe80::1%eth0"} {
		b.Targets = []netip.Addr{netip.MustParseAddr(bad)}
		if err := m.SetBond(b); err == nil {
			t.Errorf("target %s was accepted", bad)
		}
	}
	b.Targets = []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("fe80::1")}
	if err := m.SetBond(b); err != nil {
		t.Errorf("ARP and NS targets together: %v", err)
	}
}

// TestMonitorRunsAndStops runs the real probe loop with a short interval:
// reports arrive on the channel, and Close stops every goroutine, removes
// every port and closes the channel.
func TestMonitorRunsAndStops(t *testing.T) {
	before := runtime.NumGoroutine()
	k, b := twoSlaves()
	b.Interval = 2 * time.Millisecond
	m := newMonitor(k, nil)
	if err := m.SetBond(b); err != nil {
		t.Fatal(err)
	}
	k.setAnswer(2, true)
	want := map[int]bool{2: true, 3: false}
	got := map[int]bool{}
	deadline := time.After(5 * time.Second)
	for len(got) < 2 {
		select {
		case r := <-m.Reports():
			got[r.SlaveIndex] = r.Alive
		case <-deadline:
			t.Fatalf("reports so far %v, want %v", got, want)
		}
	}
	if got[2] != want[2] || got[3] != want[3] {
		t.Fatalf("reports %v, want %v", got, want)
	}
	// A second bond, then removed while running.
	k.links[7] = macInput{Current: mac("52:54:00:00:00:07")}
	if err := m.SetBond(Bond{Index: 11, Name: "bond1", Targets: []netip.Addr{target1}, Interval: time.Millisecond, Slaves: []Slave{{Index: 7, Name: "eth7"}}}); err != nil {
		t.Fatal(err)
	}
	if err := m.RemoveBond(11); err != nil {
		t.Fatal(err)
	}
	if k.port(7) != nil {
		t.Fatal("bond1's slave still probed")
	}
	// Nobody reads Reports now; Close must not hang on a blocked sender.
	time.Sleep(20 * time.Millisecond)
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if len(k.ports) != 0 || !k.unload {
		t.Fatalf("after Close: ports %v, unloaded %v", k.ports, k.unload)
	}
	for range m.Reports() {
	}
	if err := m.SetBond(b); err == nil {
		t.Fatal("SetBond after Close succeeded")
	}
	for i := 0; runtime.NumGoroutine() > before; i++ {
		if i == 100 {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines before, %d after Close:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestMonitorIntervalChange(t *testing.T) {
	k, b := twoSlaves()
	m := newMonitor(k, nil)
	defer m.Close()
	if err := m.SetBond(b); err != nil { // an hour: no tick
		t.Fatal(err)
	}
	b.Interval = time.Millisecond
	if err := m.SetBond(b); err != nil {
		t.Fatal(err)
	}
	// The loop takes the new interval at once, not after an hour.
	deadline := time.Now().Add(5 * time.Second)
	for {
		k.mu.Lock()
		n := k.ports[2].probes
		k.mu.Unlock()
		if n >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d probes 5s after the interval became 1ms", n)
		}
		time.Sleep(time.Millisecond)
	}
	if st := m.Status(); st[0].Interval != time.Millisecond || len(k.opened) != 2 {
		t.Fatalf("status %+v, opened %d", st, len(k.opened))
	}
}
