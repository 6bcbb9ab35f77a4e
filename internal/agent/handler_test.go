package agent

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/linkbeat/linkbeat/internal/actions"
	"github.com/linkbeat/linkbeat/internal/bond"
	"github.com/linkbeat/linkbeat/internal/carrier"
	"github.com/linkbeat/linkbeat/internal/config"
	"github.com/linkbeat/linkbeat/internal/monotime"
	"github.com/linkbeat/linkbeat/internal/source"
)

// tickPipeline is a pipeline with only what the liveness tick needs: an
// action queue of one and a bond manager, running if asked.
func tickPipeline(t *testing.T, alive *atomic.Int32, bondsRun bool) *pipeline {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	p := &pipeline{a: &Agent{cfg: Config{Hooks: Hooks{Alive: func() { alive.Add(1) }}}}, log: log,
		in: make(chan actions.Input, 1), paths: &paths{log: log},
		bonds: bond.NewManager(bond.Options{Log: log, Now: monotime.NowNS})}
	if bondsRun {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); p.bonds.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
	}
	return p
}

// eventually waits for cond; the actors answer on their own goroutines.
func eventually(t *testing.T, cond func() bool, what string) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatal(what)
}

// A liveness tick is answered only once the action goroutine has carried
// out the inputs queued before it and the bond manager has answered; a
// full queue skips the tick without blocking the event loop.
func TestHeartbeatCrossesTheActionQueue(t *testing.T) {
	var alive atomic.Int32
	p := tickPipeline(t, &alive, true)
	tick := p.heartbeat()
	tick(context.Background())
	time.Sleep(50 * time.Millisecond) // the bond manager answers meanwhile
	if alive.Load() != 0 {
		t.Fatal("answered before the action goroutine took the tick")
	}
	tick(context.Background()) // action queue full: skipped, must not block
	(<-p.in).Barrier()
	eventually(t, func() bool { return alive.Load() == 1 }, "no answer once both actors answered")
	if len(p.in) != 0 {
		t.Fatalf("queued %d, want 0: the second tick was skipped", len(p.in))
	}
	time.Sleep(50 * time.Millisecond)
	if n := alive.Load(); n != 1 {
		t.Fatalf("%d answers, want 1: the skipped tick must not count", n)
	}
}

// A stuck bond manager stops the answers even when the action goroutine
// answers.
func TestHeartbeatWaitsForTheBondManager(t *testing.T) {
	var alive atomic.Int32
	p := tickPipeline(t, &alive, false) // its goroutine never runs: stuck
	p.heartbeat()(context.Background())
	(<-p.in).Barrier()
	time.Sleep(50 * time.Millisecond)
	if n := alive.Load(); n != 0 {
		t.Fatalf("%d answers with the bond manager stuck, want 0", n)
	}
}

// Without an Alive hook there is no tick at all.
func TestNoHeartbeatWithoutHook(t *testing.T) {
	p := &pipeline{a: &Agent{}}
	if p.heartbeat() != nil {
		t.Fatal("a tick without a hook")
	}
}

// A config that does not load stops New with its error, before anything
// is opened, and leaves nothing to run.
func TestNewRefusesABadConfig(t *testing.T) {
	bad := errors.New("line 2: bad")
	a, err := New(Config{Load: func() (*config.Config, error) { return nil, bad }, Log: slog.New(slog.DiscardHandler)})
	if !errors.Is(err, bad) || a != nil {
		t.Fatalf("New: %v, %v; want the load error and no agent", a, err)
	}
}

// The ordered carrier stream reaches the actions as one Kind per link: a
// monitored link's change as Carrier, with its bond; another link's only
// when its carrier returns, as Unmonitored, for a released link that waits
// for it.
func TestCarrierKinds(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	p := &pipeline{log: log, in: make(chan actions.Input, 8)}
	ctx := context.Background()
	p.carrier(ctx, source.Event{Event: carrier.Event{Ifindex: 2, Up: false}, Membership: source.Membership{Bond: "bond0", Slave: "eth0"}, Monitored: true})
	p.carrier(ctx, source.Event{Event: carrier.Event{Ifindex: 3, Up: false}})
	p.carrier(ctx, source.Event{Event: carrier.Event{Ifindex: 3, Up: true}})
	want := []actions.Input{
		{Kind: actions.Carrier, Event: carrier.Event{Ifindex: 2}, Bond: "bond0", Slave: "eth0"},
		{Kind: actions.Unmonitored, Event: carrier.Event{Ifindex: 3, Up: true}},
	}
	if len(p.in) != len(want) {
		t.Fatalf("queued %d inputs, want %d", len(p.in), len(want))
	}
	for i, w := range want {
		got := <-p.in
		if got.Kind != w.Kind || got.Event != w.Event || got.Bond != w.Bond || got.Slave != w.Slave {
			t.Errorf("input %d: %+v, want %+v", i, got, w)
		}
	}
}
