package actions

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/linkbeat/linkbeat/internal/carrier"
	"github.com/linkbeat/linkbeat/internal/config"
	"github.com/linkbeat/linkbeat/internal/routes"
	"github.com/linkbeat/linkbeat/internal/script"
)

type call struct {
	what    string
	ifindex int
}

// fakeRoutes records the calls and keeps a record of the links with
// something withdrawn, as the routes manager does.
type fakeRoutes struct {
	calls *[]call
	// noCarrier has Release leave nexthop objects waiting for carrier.
	noCarrier bool
	held      map[int]bool
}

func newFakeRoutes(calls *[]call, noCarrier bool) fakeRoutes {
	return fakeRoutes{calls: calls, noCarrier: noCarrier, held: map[int]bool{}}
}

func (f fakeRoutes) LinkDown(i int, _ string) (routes.Result, error) {
	*f.calls = append(*f.calls, call{"routes down", i})
	f.held[i] = true
	return routes.Result{Withdrawn: 1}, nil
}
func (f fakeRoutes) LinkUp(i int, _ string) (routes.Result, error) {
	*f.calls = append(*f.calls, call{"routes up", i})
	delete(f.held, i)
	return routes.Result{Restored: 1}, nil
}

func (f fakeRoutes) Forget(i int) error {
	delete(f.held, i)
	return nil
}

func (f fakeRoutes) Withdrawn() map[string]int { return nil }

func (f fakeRoutes) Holds(i int) bool { return f.held[i] }

func (f fakeRoutes) Release(i int, _ string) (routes.Result, error) {
	*f.calls = append(*f.calls, call{"routes release", i})
	if f.noCarrier && f.held[i] {
		return routes.Result{NoCarrier: true, Skipped: 1}, nil
	}
	delete(f.held, i)
	return routes.Result{Restored: 1}, nil
}

type fakeScripts struct {
	calls *[]call
	jobs  *[]script.Job // nil: not kept
}

func (f fakeScripts) Submit(j script.Job) {
	w := "script down"
	if j.Up {
		w = "script up"
	}
	*f.calls = append(*f.calls, call{w, 0})
	if f.jobs != nil {
		*f.jobs = append(*f.jobs, j)
	}
}

func newActions(t *testing.T, doc string) (*Actions, *[]call) {
	t.Helper()
	c, err := config.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	var calls []call
	a := New(slog.New(slog.NewTextHandler(io.Discard, nil)), func() *config.Config { return c },
		newFakeRoutes(&calls, false), fakeScripts{calls: &calls}, func() time.Duration { return 0 }, nil)
	return a, &calls
}

func ev(up bool) carrier.Event { return carrier.Event{Ifindex: 3, Ifname: "eth1", Up: up} }

func TestRoutesBeforeScript(t *testing.T) {
	a, calls := newActions(t, "defaults: {script: /bin/true}\n")
	a.Handle(Input{Event: ev(true), Kind: Initial})
	a.Handle(Input{Event: ev(false)})
	a.Handle(Input{Event: ev(true)})
	want := []call{{"routes down", 3}, {"script down", 0}, {"routes up", 3}, {"script up", 0}}
	if len(*calls) != len(want) {
		t.Fatalf("calls %v, want %v", *calls, want)
	}
	for i := range want {
		if (*calls)[i] != want[i] {
			t.Fatalf("calls %v, want %v", *calls, want)
		}
	}
}

func TestRoutesKeepSkipsRouteActor(t *testing.T) {
	a, calls := newActions(t, "interfaces: {eth1: {routes: keep}}\n")
	a.Handle(Input{Event: ev(true), Kind: Initial})
	a.Handle(Input{Event: ev(false)})
	if len(*calls) != 0 {
		t.Fatalf("routes: keep still called %v", *calls)
	}
}

func TestInitialDownWithdraws(t *testing.T) {
	a, calls := newActions(t, "")
	a.Handle(Input{Event: ev(false), Kind: Initial})
	if len(*calls) != 1 || (*calls)[0].what != "routes down" {
		t.Fatalf("calls %v", *calls)
	}
}

func TestReleasedLinkGetsItsRoutesBack(t *testing.T) {
	a, calls := newActions(t, "")
	a.Handle(Input{Event: ev(false), Kind: Initial})
	a.Handle(Input{Event: ev(false), Kind: Released})
	want := []call{{"routes down", 3}, {"routes release", 3}}
	if len(*calls) != 2 || (*calls)[0] != want[0] || (*calls)[1] != want[1] {
		t.Fatalf("calls %v, want %v", *calls, want)
	}
	if _, known := a.Effective(3); known {
		t.Fatal("a released link is still in the policy")
	}
}

func TestReloadReappliesRoutePolicyToDownLinks(t *testing.T) {
	parse := func(doc string) *config.Config {
		c, err := config.Parse([]byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	cur := parse("interfaces: {eth1: {routes: keep}}\n")
	var calls []call
	a := New(slog.New(slog.NewTextHandler(io.Discard, nil)), func() *config.Config { return cur },
		newFakeRoutes(&calls, false), nil, func() time.Duration { return 0 }, nil)
	a.Handle(Input{Event: ev(false), Kind: Initial})
	if len(calls) != 0 {
		t.Fatalf("routes: keep acted: %v", calls)
	}
	cur = parse("")
	a.Handle(Input{Kind: Reload})
	if len(calls) != 1 || calls[0] != (call{"routes down", 3}) {
		t.Fatalf("after reload to withdraw: %v, want the down link's routes withdrawn", calls)
	}
	cur = parse("interfaces: {eth1: {routes: keep}}\n")
	a.Handle(Input{Kind: Reload})
	if len(calls) != 2 || calls[1] != (call{"routes release", 3}) {
		t.Fatalf("after reload to keep: %v, want the routes back", calls)
	}
	// A link withdrawn under an older config gets its routes back on up
	// even though the config now keeps them.
	a.Handle(Input{Event: ev(true)})
	if len(calls) != 3 || calls[2] != (call{"routes up", 3}) {
		t.Fatalf("up under routes: keep: %v, want a restore", calls)
	}
}

// A released link whose nexthop objects wait for its carrier gets them
// back when the carrier returns, though it is no longer monitored; its
// carrier changes never reach the policy.
func TestReleasedLinkWaitsForCarrier(t *testing.T) {
	var calls []call
	a := New(slog.New(slog.NewTextHandler(io.Discard, nil)), func() *config.Config { return &config.Config{} },
		newFakeRoutes(&calls, true), nil, func() time.Duration { return 0 }, nil)
	a.Handle(Input{Event: ev(false), Kind: Initial})
	a.Handle(Input{Event: ev(false), Kind: Released})
	a.Handle(Input{Event: ev(false), Kind: Unmonitored})
	want := []call{{"routes down", 3}, {"routes release", 3}}
	if len(calls) != 2 || calls[0] != want[0] || calls[1] != want[1] {
		t.Fatalf("calls %v, want %v", calls, want)
	}
	a.Handle(Input{Event: ev(true), Kind: Unmonitored})
	if len(calls) != 3 || calls[2] != (call{"routes release", 3}) {
		t.Fatalf("carrier back: %v, want a second release", calls)
	}
	if _, known := a.Effective(3); known {
		t.Fatal("an unmonitored link's carrier reached the policy")
	}
	// A link the record holds nothing of waits for nothing.
	a.Handle(Input{Event: carrier.Event{Ifindex: 4, Ifname: "eth2", Up: true}, Kind: Unmonitored})
	if len(calls) != 3 {
		t.Fatalf("carrier of a link with nothing withdrawn: %v, want no call", calls)
	}
}

// A delayed decision's script hears the bond and slave that came with the
// event that led to it, and a link that left its bond meanwhile is
// reported without one: the membership travels with the event, not in a
// table of the actions' own.
func TestDelayedDecisionKeepsItsMembership(t *testing.T) {
	c, err := config.Parse([]byte("defaults: {script: /bin/true, down_delay: 1s, up_delay: 1s}\n"))
	if err != nil {
		t.Fatal(err)
	}
	var (
		calls []call
		jobs  []script.Job
	)
	a := New(slog.New(slog.DiscardHandler), func() *config.Config { return c },
		newFakeRoutes(&calls, false), fakeScripts{calls: &calls, jobs: &jobs}, func() time.Duration { return 0 }, nil)
	now := time.Unix(1000, 0)
	a.now = func() time.Time { return now }
	a.Handle(Input{Event: ev(true), Kind: Initial})
	a.Handle(Input{Event: ev(false), Bond: "bond0", Slave: "eth1"})
	if len(jobs) != 0 {
		t.Fatalf("script ran before the down delay: %+v", jobs)
	}
	now = now.Add(time.Second)
	a.apply(a.policy.Tick(now))
	// Back up, out of the bond: the up delay's decision has no bond.
	a.Handle(Input{Event: ev(true)})
	now = now.Add(time.Second)
	a.apply(a.policy.Tick(now))
	if len(jobs) != 2 {
		t.Fatalf("scripts %+v, want one down and one up", jobs)
	}
	if env := jobs[0].Env; jobs[0].Up || env["BOND"] != "bond0" || env["SLAVE"] != "eth1" {
		t.Errorf("delayed down: up %v, env %v; want BOND=bond0 SLAVE=eth1", jobs[0].Up, env)
	}
	if env := jobs[1].Env; !jobs[1].Up || env["BOND"] != "" || env["SLAVE"] != "" {
		t.Errorf("delayed up out of the bond: up %v, env %v; want no BOND or SLAVE", jobs[1].Up, env)
	}
}
