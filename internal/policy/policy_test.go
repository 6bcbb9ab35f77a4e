package policy

import (
	"testing"
	"time"

	"github.com/linkbeat/linkbeat/internal/carrier"
)

var t0 = time.Unix(1000, 0)

func ev(up bool) carrier.Event {
	return carrier.Event{Ifindex: 2, Ifname: "eth0", Up: up, Source: carrier.SourceFentry}
}

func fixed(r Rules) func(string) Rules { return func(string) Rules { return r } }

func one(t *testing.T, ds []Decision, up bool) {
	t.Helper()
	if len(ds) != 1 || ds[0].Up != up {
		t.Fatalf("decisions %+v, want one with up=%v", ds, up)
	}
}

func none(t *testing.T, ds []Decision) {
	t.Helper()
	if len(ds) != 0 {
		t.Fatalf("decisions %+v, want none", ds)
	}
}

func TestNoDelaysDecideAtOnce(t *testing.T) {
	p := New(fixed(Rules{}))
	none(t, p.Initial(ev(true), Membership{}))
	one(t, p.Event(ev(false), Membership{}, t0), false)
	one(t, p.Event(ev(true), Membership{}, t0.Add(time.Millisecond)), true)
	if _, ok := p.NextDeadline(); ok {
		t.Fatal("no timer should be armed")
	}
}

func TestInitialWithoutCarrierDecidesDown(t *testing.T) {
	p := New(fixed(Rules{}))
	ds := p.Initial(ev(false), Membership{})
	one(t, ds, false)
	if ds[0].Reason != "initial" {
		t.Fatalf("reason %q", ds[0].Reason)
	}
}

func TestDownDelayCancelledByQuickReturn(t *testing.T) {
	p := New(fixed(Rules{DownDelay: 100 * time.Millisecond}))
	p.Initial(ev(true), Membership{})
	none(t, p.Event(ev(false), Membership{}, t0))
	if d, ok := p.NextDeadline(); !ok || !d.Equal(t0.Add(100*time.Millisecond)) {
		t.Fatalf("deadline %v %v", d, ok)
	}
	none(t, p.Event(ev(true), Membership{}, t0.Add(50*time.Millisecond)))
	none(t, p.Tick(t0.Add(200*time.Millisecond)))
}

func TestDownDelayExpires(t *testing.T) {
	p := New(fixed(Rules{DownDelay: 100 * time.Millisecond}))
	p.Initial(ev(true), Membership{})
	p.Event(ev(false), Membership{}, t0)
	none(t, p.Tick(t0.Add(99*time.Millisecond)))
	ds := p.Tick(t0.Add(100 * time.Millisecond))
	one(t, ds, false)
	if ds[0].Reason != "delay" {
		t.Fatalf("reason %q", ds[0].Reason)
	}
}

func TestUpDelay(t *testing.T) {
	p := New(fixed(Rules{UpDelay: time.Second}))
	p.Initial(ev(true), Membership{})
	one(t, p.Event(ev(false), Membership{}, t0), false)
	none(t, p.Event(ev(true), Membership{}, t0.Add(time.Millisecond)))
	// Down again within the up-delay: never restored.
	none(t, p.Event(ev(false), Membership{}, t0.Add(500*time.Millisecond)))
	none(t, p.Tick(t0.Add(2*time.Second)))
	none(t, p.Event(ev(true), Membership{}, t0.Add(3*time.Second)))
	one(t, p.Tick(t0.Add(4*time.Second)), true)
}

func TestDampeningHoldsDownThenReleases(t *testing.T) {
	p := New(fixed(Rules{Transitions: 4, Window: time.Second, HoldDown: 5 * time.Second}))
	p.Initial(ev(true), Membership{})
	now := t0
	ups, downs := 0, 0
	for i := 0; i < 20; i++ {
		now = now.Add(50 * time.Millisecond)
		for _, d := range p.Event(ev(i%2 == 1), Membership{}, now) {
			if d.Up {
				ups++
			} else {
				downs++
			}
		}
	}
	// 20 flaps in 1s: down once, back up once before the window filled.
	if downs > 2 || ups > 1 {
		t.Fatalf("dampening let %d downs and %d ups through", downs, ups)
	}
	if up, _ := p.Effective(2); up {
		t.Fatal("held link must be treated as down")
	}
	// Carrier ends up (i=19); released only when the hold-down ends.
	none(t, p.Tick(now.Add(4*time.Second)))
	ds := p.Tick(now.Add(5 * time.Second))
	one(t, ds, true)
	if ds[0].Reason != "hold_down_end" {
		t.Fatalf("reason %q", ds[0].Reason)
	}
}

func TestRepeatedStateIsNotDecidedTwice(t *testing.T) {
	p := New(fixed(Rules{}))
	p.Initial(ev(true), Membership{})
	one(t, p.Event(ev(false), Membership{}, t0), false)
	none(t, p.Event(ev(false), Membership{}, t0.Add(time.Millisecond)))
}

// A decision carries the membership that came with the event that led to
// it, at once or after a delay; a later event's replaces it.
func TestDecisionCarriesItsEventsMembership(t *testing.T) {
	p := New(fixed(Rules{DownDelay: time.Second}))
	none(t, p.Initial(ev(true), Membership{Bond: "bond0", Slave: "eth0"}))
	none(t, p.Event(ev(false), Membership{Bond: "bond1", Slave: "eth0"}, t0))
	ds := p.Tick(t0.Add(time.Second))
	one(t, ds, false)
	if want := (Membership{Bond: "bond1", Slave: "eth0"}); ds[0].Membership != want {
		t.Fatalf("delayed decision: membership %+v, want %+v", ds[0].Membership, want)
	}
	ds = p.Event(ev(true), Membership{}, t0.Add(2*time.Second))
	one(t, ds, true)
	if ds[0].Membership != (Membership{}) {
		t.Fatalf("decision at once: membership %+v, want none", ds[0].Membership)
	}
}
