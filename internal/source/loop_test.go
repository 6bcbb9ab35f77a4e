package source

import (
	"context"
	"log/slog"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/linkbeat/linkbeat/internal/carrier"
	"github.com/linkbeat/linkbeat/internal/registry"
)

// fakeRing is the BPF carrier source: events are handed out one per Read,
// Queued says how many the kernel queued so far.
type fakeRing struct {
	mu     sync.Mutex
	queued uint64
	events chan carrier.Event
	closed chan struct{}
	once   sync.Once
}

func newFakeRing() *fakeRing {
	return &fakeRing{events: make(chan carrier.Event, 16), closed: make(chan struct{})}
}

// queue is the driver's call: the event is queued (and counted) now, but
// Read hands it out only once deliver is called.
func (r *fakeRing) queue(ev carrier.Event) carrier.Event {
	r.mu.Lock()
	r.queued++
	ev.Seq = r.queued
	r.mu.Unlock()
	return ev
}

func (r *fakeRing) deliver(ev carrier.Event) { r.events <- ev }

func (r *fakeRing) Read() (carrier.Event, error) {
	select {
	case ev := <-r.events:
		return ev, nil
	case <-r.closed:
		return carrier.Event{}, os.ErrClosed
	}
}

func (r *fakeRing) Queued() (uint64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.queued, nil
}

func (r *fakeRing) Drops() (uint64, error) { return 0, nil }
func (r *fakeRing) Close() error           { r.once.Do(func() { close(r.closed) }); return nil }

// fakeWatcher hands out netlink batches; received reports each hand-out.
type fakeWatcher struct {
	batches  chan []registry.Update
	received chan struct{}
	closed   chan struct{}
	once     sync.Once
}

func newFakeWatcher() *fakeWatcher {
	return &fakeWatcher{batches: make(chan []registry.Update, 16), received: make(chan struct{}, 16), closed: make(chan struct{})}
}

func (w *fakeWatcher) Receive() ([]registry.Update, error) {
	select {
	case b := <-w.batches:
		w.received <- struct{}{}
		return b, nil
	case <-w.closed:
		return nil, os.ErrClosed
	}
}

func (w *fakeWatcher) Close() { w.once.Do(func() { close(w.closed) }) }

// fakeDump is the link table a full dump returns, and how often it ran.
type fakeDump struct {
	mu    sync.Mutex
	links []registry.Link
	calls int
}

func (f *fakeDump) set(links ...registry.Link) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.links = links
}

func (f *fakeDump) dump() ([]registry.Link, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	return slices.Clone(f.links), nil
}

// recorder is the handler and the observer: what left the event source.
type recorder struct {
	carrier chan carrier.Event
	links   chan registry.Change
	resyncs chan string
	ready   chan struct{}
	// startup is what Ready got; read it once ready is closed.
	startup Startup
	// reloads gets, at each Handler.Reload, how many link changes were
	// reported and not yet read.
	reloads chan int
	// members gets each carrier event's and link change's membership.
	members chan Membership
	// unmonitored gets the carrier changes of links out of the set.
	unmonitored chan carrier.Event
	// bonds gets what Handler.Bond gets.
	bonds chan LinkEvent
}

func newRecorder() *recorder {
	return &recorder{carrier: make(chan carrier.Event, 64), links: make(chan registry.Change, 64), resyncs: make(chan string, 16), ready: make(chan struct{}),
		reloads: make(chan int, 4), members: make(chan Membership, 256), unmonitored: make(chan carrier.Event, 64), bonds: make(chan LinkEvent, 64)}
}

func (r *recorder) Carrier(carrier.Event)     {}
func (r *recorder) Link(registry.Change)      {}
func (r *recorder) Resync(reason string)      { r.resyncs <- reason }
func (r *recorder) RingbufDrops(total uint64) {}

func (r *recorder) handler() Handler {
	return Handler{
		Carrier: func(_ context.Context, ev Event) {
			if !ev.Monitored {
				r.unmonitored <- ev.Event
				return
			}
			r.members <- ev.Membership
			r.carrier <- ev.Event
		},
		Link:   func(_ context.Context, c LinkEvent) { r.members <- c.Membership; r.links <- c.Change },
		Bond:   func(_ context.Context, ev LinkEvent) { r.bonds <- ev },
		Ready:  func(_ context.Context, s Startup) { r.startup = s; close(r.ready) },
		Reload: func(context.Context, []BondMembers) { r.reloads <- len(r.links) },
	}
}

func link(idx int, name string, up bool, upCount, downCount uint32) registry.Link {
	return registry.Link{Index: idx, Name: name, Kind: "veth", Carrier: up, UpCount: upCount, DownCount: downCount}
}

type source struct {
	d    *Source
	ring *fakeRing
	nl   *fakeWatcher
	dump *fakeDump
	rec  *recorder
	done chan error
}

// startSource runs the event source on fakes, with the given links at the
// first dump, until the test ends.
func startSource(t *testing.T, interfaces []string, links ...registry.Link) *source {
	t.Helper()
	s := &source{ring: newFakeRing(), nl: newFakeWatcher(), dump: &fakeDump{}, rec: newRecorder(), done: make(chan error, 1)}
	s.dump.set(links...)
	cfg := Config{Interfaces: interfaces, Observer: s.rec}
	s.d = &Source{cfg: cfg, log: slog.New(slog.DiscardHandler), interfaces: make(chan Reload),
		bpf: s.ring, watcher: s.nl, dump: s.dump.dump}
	s.d.setWanted(interfaces)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { s.done <- s.d.Run(ctx, s.rec.handler()) }()
	t.Cleanup(func() {
		cancel()
		if err := <-s.done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case <-s.rec.ready:
	case err := <-s.done:
		t.Fatalf("Run ended before ready: %v", err)
	}
	if r := <-s.rec.resyncs; r != "start" {
		t.Fatalf("first resync %q, want start", r)
	}
	return s
}

func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(5 * time.Second):
		t.Fatalf("no %s", what)
		panic("unreachable")
	}
}

// none checks that nothing more arrives on ch once the source is idle.
func none[T any](t *testing.T, ch <-chan T, what string) {
	t.Helper()
	select {
	case v := <-ch:
		t.Fatalf("unexpected %s: %+v", what, v)
	case <-time.After(100 * time.Millisecond):
	}
}

// The driver's call queues the BPF event before linkwatch sends its
// notice, but the two readers race. When the notice is read first, the
// source must hand out the queued BPF event (kernel time, BPF source)
// first, and the notice must not report the change a second time.
func TestSourceCatchesUpWithQueuedBPFEvents(t *testing.T) {
	s := startSource(t, nil, link(2, "eth1", true, 1, 0))
	added := recv(t, s.rec.links, "link added")
	if added.Kind != registry.Added || added.Link.Name != "eth1" {
		t.Fatalf("first link change %+v, want eth1 added", added)
	}

	ev := s.ring.queue(carrier.Event{Time: 42 * time.Millisecond, Ifindex: 2, Ifname: "eth1", Up: false, UpCount: 1, DownCount: 1, Source: carrier.SourceFentry})
	s.nl.batches <- []registry.Update{{Link: link(2, "eth1", false, 1, 1)}}
	// The notice has been read; only now does the ring reader get the event.
	recv(t, s.nl.received, "netlink receive")
	s.ring.deliver(ev)

	got := recv(t, s.rec.carrier, "carrier event")
	if got.Source != carrier.SourceFentry || got.Time != 42*time.Millisecond || got.Up {
		t.Fatalf("reported %+v, want the BPF event (fentry, 42ms, down)", got)
	}
	none(t, s.rec.carrier, "second report of the same change")
}

// A BPF event whose counters jumped by more than one transition means
// events were lost: the source resyncs from a dump and reports the carrier
// the dump shows.
func TestSourceResyncsOnCounterGap(t *testing.T) {
	s := startSource(t, nil, link(2, "eth1", true, 1, 0))
	recv(t, s.rec.links, "link added")

	// Two transitions lost (down, up), then a down: counters 2/2, not 1/1.
	s.dump.set(link(2, "eth1", false, 2, 2))
	s.ring.deliver(s.ring.queue(carrier.Event{Ifindex: 2, Ifname: "eth1", Up: false, UpCount: 2, DownCount: 2, Source: carrier.SourceFentry}))

	if got := recv(t, s.rec.carrier, "carrier event"); got.Up || got.Source != carrier.SourceFentry {
		t.Fatalf("reported %+v, want the BPF down event", got)
	}
	if r := recv(t, s.rec.resyncs, "resync"); r != "counter_gap" {
		t.Fatalf("resync reason %q, want counter_gap", r)
	}
	s.dump.mu.Lock()
	calls := s.dump.calls
	s.dump.mu.Unlock()
	if calls != 2 {
		t.Fatalf("%d dumps, want 2 (start, counter gap)", calls)
	}
	none(t, s.rec.carrier, "report after the resync (the dump agrees)")
}

// SetInterfaces changes the monitored set: a link that leaves is released
// (it still exists), one that joins is added with its carrier, and only
// monitored links' carrier changes are reported.
func TestSourceSetInterfaces(t *testing.T) {
	s := startSource(t, []string{"eth1"}, link(2, "eth1", true, 1, 0), link(3, "eth2", false, 0, 1))
	if c := recv(t, s.rec.links, "link added"); c.Link.Name != "eth1" || c.Kind != registry.Added {
		t.Fatalf("got %+v, want eth1 added", c)
	}
	none(t, s.rec.links, "change for the unmonitored eth2")

	if err := s.d.SetInterfaces(context.Background(), []string{"eth2"}); err != nil {
		t.Fatal(err)
	}
	changes := map[string]registry.Change{}
	for range 2 {
		c := recv(t, s.rec.links, "link change")
		changes[c.Link.Name] = c
	}
	if c := changes["eth1"]; c.Kind != registry.Removed || !c.Released {
		t.Errorf("eth1: %+v, want removed and released", c)
	}
	if c := changes["eth2"]; c.Kind != registry.Added || c.Link.Carrier {
		t.Errorf("eth2: %+v, want added without carrier", c)
	}

	s.nl.batches <- []registry.Update{{Link: link(2, "eth1", false, 1, 1)}}
	s.nl.batches <- []registry.Update{{Link: link(3, "eth2", true, 1, 1)}}
	got := recv(t, s.rec.carrier, "carrier event")
	if got.Ifname != "eth2" || !got.Up || got.Source != carrier.SourceNetlink {
		t.Fatalf("reported %+v, want eth2 up from netlink only", got)
	}
	none(t, s.rec.carrier, "eth1's change after it left the set")
}

// A reload reaches the handler in one stream with the links its new set
// released, after them; one that does not ask to be told is not.
func TestSourceReloadAfterReleased(t *testing.T) {
	s := startSource(t, []string{"eth1"}, link(2, "eth1", true, 1, 0), link(3, "eth2", false, 0, 1))
	recv(t, s.rec.links, "link added")
	if err := s.d.Reload(context.Background(), Reload{Interfaces: []string{"eth2"}, SetInterfaces: true, Notify: true}); err != nil {
		t.Fatal(err)
	}
	if n := recv(t, s.rec.reloads, "reload"); n != 2 {
		t.Fatalf("%d link changes before the reload, want 2 (eth1 released, eth2 added)", n)
	}
	if err := s.d.SetInterfaces(context.Background(), []string{"eth2"}); err != nil {
		t.Fatal(err)
	}
	none(t, s.rec.reloads, "reload not asked for")
	if err := s.d.Reload(context.Background(), Reload{Notify: true}); err != nil {
		t.Fatal(err)
	}
	if n := recv(t, s.rec.reloads, "reload"); n != 2 {
		t.Fatalf("%d link changes before the second reload, want the same 2 (the set did not change)", n)
	}
}

// Each event carries its link's bond as the link table has it now: the
// slave's bond and name, the bond's name and active slave, and nothing
// for a link in no bond.
func TestSourceEventsCarryMembership(t *testing.T) {
	bond := registry.Link{Index: 10, Name: "bond0", Kind: "bond", Carrier: true, Bond: &registry.Bond{ActiveSlave: 11}}
	slave := link(11, "eth1", true, 1, 0)
	slave.MasterIndex, slave.BondSlave = 10, &registry.BondSlave{}
	s := startSource(t, nil, bond, slave, link(12, "eth2", true, 1, 0))
	got := map[string]Membership{}
	for range 3 {
		c := recv(t, s.rec.links, "link added")
		got[c.Link.Name] = recv(t, s.rec.members, "membership")
	}
	want := map[string]Membership{"bond0": {Bond: "bond0", Slave: "eth1"}, "eth1": {Bond: "bond0", Slave: "eth1"}, "eth2": {}}
	for name, m := range want {
		if got[name] != m {
			t.Errorf("%s added with %+v, want %+v", name, got[name], m)
		}
	}
	s.ring.deliver(s.ring.queue(carrier.Event{Ifindex: 11, Ifname: "eth1", Up: false, UpCount: 1, DownCount: 1, Source: carrier.SourceFentry}))
	if m := recv(t, s.rec.members, "membership"); m != (Membership{Bond: "bond0", Slave: "eth1"}) {
		t.Fatalf("carrier event of eth1 with %+v, want bond0/eth1", m)
	}
	recv(t, s.rec.carrier, "carrier event")
}

// A bond slave outside the monitored set still reaches the bond side, in
// order: the driver's event first, and a notice read late, built before
// it, does not bring its carrier back.
func TestSourceOrdersUnmonitoredBondSlaves(t *testing.T) {
	bond := registry.Link{Index: 10, Name: "bond0", Kind: "bond", Carrier: true, Bond: &registry.Bond{ActiveSlave: 11}}
	slave := link(11, "eth1", true, 1, 0)
	slave.MasterIndex, slave.BondSlave = 10, &registry.BondSlave{}
	s := startSource(t, []string{"eth9"}, bond, slave)
	for range 2 {
		ev := recv(t, s.rec.bonds, "bond event")
		if ev.Kind != registry.Added || len(ev.Bonds) != 1 || ev.Bonds[0].Name != "bond0" || len(ev.Bonds[0].Slaves) != 1 {
			t.Fatalf("start: %+v, want bond0 and eth1 added, bond0 with one slave", ev)
		}
	}
	s.ring.deliver(s.ring.queue(carrier.Event{Time: 7, Ifindex: 11, Ifname: "eth1", Up: false, UpCount: 1, DownCount: 1, Source: carrier.SourceFentry}))
	ev := recv(t, s.rec.bonds, "bond event")
	if ev.Link.Name != "eth1" || ev.Link.Carrier || ev.CarrierNs != 7 || ev.Membership != (Membership{Bond: "bond0", Slave: "eth1"}) {
		t.Fatalf("BPF down: %+v, want eth1 down at 7 in bond0", ev)
	}
	if got := recv(t, s.rec.unmonitored, "unmonitored carrier"); got.Up || got.Ifindex != 11 {
		t.Fatalf("carrier %+v, want eth1 down", got)
	}
	// Read late: the notice from before the cut (1/0, up).
	s.nl.batches <- []registry.Update{{Link: slave}}
	ev = recv(t, s.rec.bonds, "bond event")
	if ev.Link.Carrier || ev.CarrierNs != 0 {
		t.Fatalf("stale notice: %+v, want carrier still down, unchanged", ev)
	}
	none(t, s.rec.unmonitored, "carrier report of the stale notice")
	none(t, s.rec.carrier, "carrier report of an unmonitored link")
	// Released from the bond: the bond is told it has no slave left.
	free := link(11, "eth1", false, 1, 1)
	s.nl.batches <- []registry.Update{{Link: free}}
	ev = recv(t, s.rec.bonds, "bond event")
	if len(ev.Bonds) != 1 || ev.Bonds[0].Index != 10 || len(ev.Bonds[0].Slaves) != 0 || ev.Membership != (Membership{}) {
		t.Fatalf("released: %+v, want bond0 without slaves", ev)
	}
}

// A link that joins the set is reported with the carrier the tracker
// ordered, not the table's: here the driver's event of eth2's loss came
// while it was outside the set and before netlink's notice, which must
// not report it up afterwards either.
func TestSourceJoinsWithOrderedCarrier(t *testing.T) {
	s := startSource(t, []string{"eth1"}, link(2, "eth1", true, 1, 0), link(3, "eth2", true, 1, 0))
	recv(t, s.rec.links, "eth1 added")
	s.ring.deliver(s.ring.queue(carrier.Event{Ifindex: 3, Ifname: "eth2", Up: false, UpCount: 1, DownCount: 1, Source: carrier.SourceFentry}))
	if got := recv(t, s.rec.unmonitored, "eth2's loss, unmonitored"); got.Up {
		t.Fatalf("got %+v, want eth2 down", got)
	}
	if err := s.d.SetInterfaces(context.Background(), []string{"eth1", "eth2"}); err != nil {
		t.Fatal(err)
	}
	if c := recv(t, s.rec.links, "eth2 added"); c.Link.Name != "eth2" || c.Link.Carrier {
		t.Fatalf("got %+v, want eth2 added without carrier", c)
	}
	s.nl.batches <- []registry.Update{{Link: link(3, "eth2", true, 1, 0)}} // read late, from before the loss
	s.nl.batches <- []registry.Update{{Link: link(3, "eth2", false, 1, 1)}}
	none(t, s.rec.carrier, "a carrier report for eth2's stale or repeated notice")
}

// Ready gets the link table split by the monitored set: the monitored
// links (the agent's count for systemd) and the others (whose routes an
// earlier run may have left withdrawn).
func TestSourceReadySplitsByMonitoredSet(t *testing.T) {
	s := startSource(t, []string{"eth1"}, link(2, "eth1", true, 1, 0), link(3, "eth2", false, 0, 0), link(4, "eth3", true, 1, 0))
	names := func(ls []registry.Link) []string {
		var out []string
		for _, l := range ls {
			out = append(out, l.Name)
		}
		return out
	}
	if got := names(s.rec.startup.Monitored); !slices.Equal(got, []string{"eth1"}) {
		t.Errorf("monitored %v, want [eth1]", got)
	}
	if got := names(s.rec.startup.Unmonitored); !slices.Equal(got, []string{"eth2", "eth3"}) {
		t.Errorf("unmonitored %v, want [eth2 eth3]", got)
	}
}
