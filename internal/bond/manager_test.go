package bond

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/linkbeat/linkbeat/internal/config"
	"github.com/linkbeat/linkbeat/internal/registry"
	"github.com/linkbeat/linkbeat/internal/source"
)

// fakeKernel is a bond whose active slave the manager may change; it
// refuses like the kernel when asked to.
type fakeKernel struct {
	mu      sync.Mutex
	active  map[int]int
	sets    []int
	refuse  bool
	order   []string
	speeds  map[string]int
	moveNow int // when set, the bond has already moved to it before linkbeat acts
	// slaves, when set, is the kernel's fresh view of the bond's slaves.
	slaves []registry.Link
}

func (k *fakeKernel) Slaves(int) ([]registry.Link, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]registry.Link(nil), k.slaves...), nil
}

func (k *fakeKernel) SetActive(bond, slave int) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.sets = append(k.sets, slave)
	if k.refuse {
		return errors.New("invalid argument")
	}
	k.active[bond] = slave
	return nil
}

func (k *fakeKernel) Active(bond int) (int, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.moveNow != 0 {
		k.active[bond] = k.moveNow
	}
	return k.active[bond], nil
}

func (k *fakeKernel) SlaveOrder(string) ([]string, error) { return k.order, nil }
func (k *fakeKernel) Speed(n string) (int, int)           { return k.speeds[n], 1 }

func (k *fakeKernel) setCalls() []int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]int(nil), k.sets...)
}

type recorder struct {
	mu        sync.Mutex
	failovers []Failover
	declined  []Declined
}

func (r *recorder) Failover(f Failover) {
	r.mu.Lock()
	r.failovers = append(r.failovers, f)
	r.mu.Unlock()
}
func (r *recorder) Declined(d Declined) {
	r.mu.Lock()
	r.declined = append(r.declined, d)
	r.mu.Unlock()
}
func (r *recorder) get() ([]Failover, []Declined) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Failover(nil), r.failovers...), append([]Declined(nil), r.declined...)
}

type fixture struct {
	// links are the links as the source last reported them.
	links map[int]registry.Link
	m     *Manager
	k     *fakeKernel
	rec   *recorder
	now   int64
	dir   string
}

// newFixture is bond0 (ifindex 10) over eth0 (2, active) and eth1 (3),
// fed to the manager directly, without Run, so each step is synchronous.
func newFixture(t *testing.T, cfg *config.Config, bond registry.Bond) *fixture {
	f := &fixture{k: &fakeKernel{active: map[int]int{10: 2}, order: []string{"eth0", "eth1"}}, rec: &recorder{}, now: int64(time.Second), dir: t.TempDir(),
		links: map[int]registry.Link{}}
	if cfg == nil {
		cfg = &config.Config{}
	}
	f.m = NewManager(Options{Kernel: f.k, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Observer: f.rec,
		Settings: cfg.ForBond, StateDir: f.dir, Now: func() int64 { return f.now }})
	bond.ActiveSlave = 2
	if bond.Mode == "" {
		bond.Mode = "active-backup"
	}
	for _, l := range []registry.Link{
		{Index: 2, Name: "eth0", AdminUp: true, Carrier: true, UpCount: 1, MasterIndex: 10, BondSlave: &registry.BondSlave{MiiStatus: "up", State: "active"}},
		{Index: 3, Name: "eth1", AdminUp: true, Carrier: true, UpCount: 1, MasterIndex: 10, BondSlave: &registry.BondSlave{MiiStatus: "up", State: "backup"}},
		{Index: 10, Name: "bond0", Kind: "bond", AdminUp: true, Carrier: true, Bond: &bond},
	} {
		f.links[l.Index] = l
		f.m.link(change(registry.Change{Kind: registry.Added, Link: l}))
	}
	return f
}

// cut is the source's ordered report of a slave's carrier change, now.
func (f *fixture) cut(idx int, up bool) {
	l := f.links[idx]
	l.Carrier = up
	f.links[idx] = l
	f.m.link(source.LinkEvent{Change: registry.Change{Kind: registry.Updated, Link: l, Old: l}, CarrierNs: f.now})
}

// carrierEvent is the source's ordered report that l's carrier changed at
// ns.
func carrierEvent(l registry.Link, up bool, ns int64) source.LinkEvent {
	l.Carrier = up
	return source.LinkEvent{Change: registry.Change{Kind: registry.Updated, Link: l, Old: l}, CarrierNs: ns}
}

// change is a link change that leaves carrier as it was.
func change(c registry.Change) source.LinkEvent { return source.LinkEvent{Change: c} }

func TestManagerSwitchesOnActiveCarrierLoss(t *testing.T) {
	f := newFixture(t, nil, registry.Bond{Miimon: 100, PrimaryReselect: "always"})
	if calls := f.k.setCalls(); len(calls) != 0 {
		t.Fatalf("a healthy bond was switched: %v", calls)
	}
	cutAt := f.now
	f.now += 300 * int64(time.Microsecond) // the manager's clock when it acts
	f.m.link(carrierEvent(f.links[2], false, cutAt))
	if calls := f.k.setCalls(); len(calls) != 1 || calls[0] != 3 {
		t.Fatalf("SetActive calls %v, want [3]", calls)
	}
	fo, _ := f.rec.get()
	if len(fo) != 1 || fo[0].From != "eth0" || fo[0].To != "eth1" || fo[0].Reason != ReasonCarrier || fo[0].By != "linkbeat" ||
		fo[0].Duration != 300*time.Microsecond || fo[0].KernelNs != cutAt {
		t.Fatalf("failovers %+v", fo)
	}
	st, err := ReadState(f.dir)
	if err != nil || st.Last["bond0"].To != "eth1" {
		t.Fatalf("state %+v, %v", st, err)
	}
	// The netlink notice of its own switch is not a bond failover.
	f.m.link(change(registry.Change{Kind: registry.Updated, Link: registry.Link{Index: 10, Name: "bond0", Kind: "bond",
		Bond: &registry.Bond{Mode: "active-backup", Miimon: 100, ActiveSlave: 3}}}))
	if fo, _ := f.rec.get(); len(fo) != 1 {
		t.Fatalf("failovers after the notice %+v", fo)
	}
}

func TestManagerDoesNotFightTheBond(t *testing.T) {
	f := newFixture(t, nil, registry.Bond{Miimon: 100})
	f.k.moveNow = 3 // miimon got there first
	f.cut(2, false)
	if calls := f.k.setCalls(); len(calls) != 0 {
		t.Fatalf("switched a bond that had already moved: %v", calls)
	}
	fo, _ := f.rec.get()
	if len(fo) != 1 || fo[0].By != "bond" || fo[0].To != "eth1" {
		t.Fatalf("failovers %+v", fo)
	}
}

func TestManagerKernelRefusalIsDeclinedOnce(t *testing.T) {
	f := newFixture(t, nil, registry.Bond{Miimon: 100})
	f.k.refuse = true
	f.cut(2, false)
	f.m.evaluate(10)
	f.m.evaluate(10)
	fo, dec := f.rec.get()
	if len(fo) != 0 || len(dec) != 1 || dec[0].Reason != "kernel_refused" || dec[0].Bond != "bond0" {
		t.Fatalf("failovers %+v declined %+v", fo, dec)
	}
}

func TestManagerSlaveLifecycle(t *testing.T) {
	f := newFixture(t, nil, registry.Bond{Miimon: 100})
	// eth1 released: eth0's loss has nowhere to go.
	f.m.link(change(registry.Change{Kind: registry.Updated, Link: registry.Link{Index: 3, Name: "eth1", AdminUp: true, Carrier: true, UpCount: 1}}))
	f.cut(2, false)
	if calls := f.k.setCalls(); len(calls) != 0 {
		t.Fatalf("switched to a released slave: %v", calls)
	}
	_, dec := f.rec.get()
	if len(dec) != 1 || dec[0].Reason != "no_live_slave" {
		t.Fatalf("declined %+v", dec)
	}
	f.m.link(change(registry.Change{Kind: registry.Removed, Link: registry.Link{Index: 10, Name: "bond0"}}))
	if len(f.m.bonds) != 0 {
		t.Fatalf("bond kept after removal: %+v", f.m.bonds)
	}
}

// TestManagerRunDownDelay runs the real loop and timer: the switch waits
// for downdelay, and a blip shorter than it causes none.
func TestManagerRunDownDelay(t *testing.T) {
	k := &fakeKernel{active: map[int]int{10: 2}}
	rec := &recorder{}
	start := time.Now()
	now := func() int64 { return int64(time.Since(start)) + int64(time.Second) }
	m := NewManager(Options{Kernel: k, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Observer: rec, Now: now})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	eth0 := registry.Link{Index: 2, Name: "eth0", AdminUp: true, Carrier: true, MasterIndex: 10, BondSlave: &registry.BondSlave{MiiStatus: "up"}}
	for _, l := range []registry.Link{
		eth0,
		{Index: 3, Name: "eth1", AdminUp: true, Carrier: true, MasterIndex: 10, BondSlave: &registry.BondSlave{MiiStatus: "up"}},
		{Index: 10, Name: "bond0", Kind: "bond", Bond: &registry.Bond{Mode: "active-backup", Miimon: 100, DownDelay: 200, ActiveSlave: 2}},
	} {
		m.Link(source.LinkEvent{Change: registry.Change{Kind: registry.Added, Link: l}})
	}
	// A 50ms blip.
	m.Link(carrierEvent(eth0, false, now()))
	time.Sleep(50 * time.Millisecond)
	m.Link(carrierEvent(eth0, true, now()))
	time.Sleep(400 * time.Millisecond)
	if calls := k.setCalls(); len(calls) != 0 {
		t.Fatalf("a blip shorter than downdelay switched the bond: %v", calls)
	}
	// A real loss.
	lost := now()
	m.Link(carrierEvent(eth0, false, lost))
	deadline := time.Now().Add(5 * time.Second)
	for len(k.setCalls()) == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	fo, _ := rec.get()
	if len(fo) != 1 || fo[0].To != "eth1" {
		t.Fatalf("failovers %+v", fo)
	}
	if fo[0].Duration < 200*time.Millisecond {
		t.Fatalf("switched %v after the loss, before downdelay (200ms) ran out", fo[0].Duration)
	}
}

// TestManagerReadsTheBondsViewFresh: the notice that the backup is up
// again in the bond's view has not arrived when the active slave fails;
// the manager reads the kernel before giving up, and switches.
func TestManagerReadsTheBondsViewFresh(t *testing.T) {
	f := newFixture(t, nil, registry.Bond{Miimon: 100})
	f.m.link(change(registry.Change{Kind: registry.Updated, Link: registry.Link{Index: 3, Name: "eth1", AdminUp: true, Carrier: true, UpCount: 1,
		MasterIndex: 10, BondSlave: &registry.BondSlave{MiiStatus: "going_back"}}}))
	f.k.slaves = []registry.Link{
		{Index: 2, Name: "eth0", AdminUp: true, Carrier: false, UpCount: 1, DownCount: 1, MasterIndex: 10, BondSlave: &registry.BondSlave{MiiStatus: "up"}},
		{Index: 3, Name: "eth1", AdminUp: true, Carrier: true, UpCount: 1, MasterIndex: 10, BondSlave: &registry.BondSlave{MiiStatus: "up"}},
	}
	f.cut(2, false)
	if calls := f.k.setCalls(); len(calls) != 1 || calls[0] != 3 {
		t.Fatalf("SetActive calls %v, want [3]", calls)
	}
	if _, dec := f.rec.get(); len(dec) != 0 {
		t.Fatalf("declined %+v", dec)
	}
	// A fresh view that still has no live slave: declined, no switch.
	f2 := newFixture(t, nil, registry.Bond{Miimon: 100})
	f2.k.slaves = []registry.Link{
		{Index: 3, Name: "eth1", AdminUp: true, Carrier: true, UpCount: 1, MasterIndex: 10, BondSlave: &registry.BondSlave{MiiStatus: "down"}},
	}
	f2.cut(2, false)
	if calls := f2.k.setCalls(); len(calls) != 0 {
		t.Fatalf("switched to a slave down in the bond's fresh view: %v", calls)
	}
	if _, dec := f2.rec.get(); len(dec) != 1 || dec[0].Reason != "no_live_slave" {
		t.Fatalf("declined %+v", dec)
	}
}

type fastViews struct {
	views []FastView
	gone  []int
}

func (f *fastViews) Bond(v FastView) { f.views = append(f.views, v) }
func (f *fastViews) Gone(idx int)    { f.gone = append(f.gone, idx) }

// TestManagerTellsTheFastPath: the fast path hears each bond as the
// manager decided it: its settings, active slave and slaves in the bond's
// order, and the new active slave once the manager switched.
func TestManagerTellsTheFastPath(t *testing.T) {
	f := newFixture(t, &config.Config{Bonds: map[string]config.Bond{"bond0": {FastPath: new(config.Switch(false))}}},
		registry.Bond{Miimon: 100, FailOverMac: "none", DownDelay: 0})
	fv := &fastViews{}
	f.m.o.FastPath = fv
	f.m.evaluate(10)
	if len(fv.views) != 1 {
		t.Fatalf("views %+v", fv.views)
	}
	v := fv.views[0]
	if v.Name != "bond0" || v.Active != 2 || v.On || v.FailOverMac != "none" || len(v.Slaves) != 2 ||
		v.Slaves[0].Name != "eth0" || !v.Slaves[1].BondUp || !v.Slaves[1].Carrier {
		t.Fatalf("view %+v", v)
	}
	f.cut(2, false)
	last := fv.views[len(fv.views)-1]
	if last.Active != 3 || last.Slaves[0].Carrier {
		t.Errorf("view after the switch %+v, want active 3 and eth0 without carrier", last)
	}
	f.m.link(change(registry.Change{Kind: registry.Removed, Link: registry.Link{Index: 10, Name: "bond0"}}))
	if len(fv.gone) != 1 || fv.gone[0] != 10 {
		t.Errorf("gone %v, want [10]", fv.gone)
	}
}

// TestManagerTellsTheFastPathAggregators: an 802.3ad bond's view carries
// its active aggregator and each port's aggregator and backup flag, which
// the fast path's candidates follow.
func TestManagerTellsTheFastPathAggregators(t *testing.T) {
	f := newFixture(t, nil, registry.Bond{Mode: "802.3ad", Miimon: 100, AdAggregator: 1})
	fv := &fastViews{}
	f.m.o.FastPath = fv
	for _, l := range []registry.Link{
		{Index: 2, Name: "eth0", AdminUp: true, Carrier: true, UpCount: 1, MasterIndex: 10, BondSlave: &registry.BondSlave{MiiStatus: "up", State: "active", AggregatorID: 1}},
		{Index: 3, Name: "eth1", AdminUp: true, Carrier: true, UpCount: 1, MasterIndex: 10, BondSlave: &registry.BondSlave{MiiStatus: "up", State: "backup", AggregatorID: 2}},
	} {
		f.m.link(change(registry.Change{Kind: registry.Updated, Link: l}))
	}
	f.m.evaluate(10)
	v := fv.views[len(fv.views)-1]
	if v.AdAggregator != 1 || len(v.Slaves) != 2 || v.Slaves[0].Aggregator != 1 || v.Slaves[0].Backup ||
		v.Slaves[1].Aggregator != 2 || !v.Slaves[1].Backup || !v.Slaves[0].NoticedCarrier {
		t.Fatalf("view %+v, want active aggregator 1, eth0 in it and eth1 a backup in aggregator 2", v)
	}
	// Linkwatch's notice of eth0's carrier loss: operstate down.
	l := registry.Link{Index: 2, Name: "eth0", AdminUp: true, OperDown: true, UpCount: 1, DownCount: 1, MasterIndex: 10,
		BondSlave: &registry.BondSlave{MiiStatus: "up", State: "active", AggregatorID: 1}}
	f.m.link(change(registry.Change{Kind: registry.Updated, Link: l}))
	if v := fv.views[len(fv.views)-1]; v.Slaves[0].NoticedCarrier {
		t.Errorf("view %+v after a notice with operstate down, want eth0 NoticedCarrier false", v)
	}
}
