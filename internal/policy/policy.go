// Package policy decides what a carrier event means for a link: it applies
// up/down delays and flap dampening, and says when a link is to be treated
// as down or up. It is pure: the caller feeds it events and the clock, and
// arms one timer for NextDeadline.
package policy

import (
	"maps"
	"slices"
	"time"

	"github.com/linkbeat/linkbeat/internal/carrier"
)

// Rules are one interface's timing rules.
type Rules struct {
	UpDelay   time.Duration
	DownDelay time.Duration
	// Dampening holds a link down for HoldDown once it has made
	// Transitions carrier changes within Window. Transitions 0 is off.
	Transitions int
	Window      time.Duration
	HoldDown    time.Duration
}

// Membership is the bond a link belongs to (or is) and the slave
// concerned, as the caller heard it with an event (the scripts'
// LINKBEAT_BOND and LINKBEAT_SLAVE). The policy does not decide on it: it
// keeps it with the link's last event, so that a decision, at once or
// after a delay, carries the membership of the event that led to it.
type Membership struct {
	Bond, Slave string
}

// Decision says a link is now to be treated as up or down. Event is the
// carrier event that led to it (its kernel time measures reaction latency),
// Membership what came with that event.
type Decision struct {
	Ifindex int
	Ifname  string
	Up      bool
	Event   carrier.Event
	Membership
	// Reason is "carrier", "delay" (after up/down delay), "hold_down_end"
	// or "initial".
	Reason string
}

type link struct {
	rules     Rules
	effective bool // what the actors were last told
	known     bool // effective has been decided once
	carrier   bool // last reported carrier
	last      carrier.Event
	member    Membership // what came with last
	pending   time.Time  // deadline of a delayed decision; zero when none
	heldUntil time.Time
	changes   []time.Time // carrier changes inside the dampening window
}

// Policy holds the per-link state. One goroutine owns it.
type Policy struct {
	rules func(ifname string) Rules
	links map[int]*link
}

// New takes a function giving the rules of an interface by name, so a
// config reload applies to the next event.
func New(rules func(ifname string) Rules) *Policy {
	return &Policy{rules: rules, links: make(map[int]*link)}
}

func (p *Policy) get(ev carrier.Event) *link {
	l := p.links[ev.Ifindex]
	if l == nil {
		l = &link{}
		p.links[ev.Ifindex] = l
	}
	l.rules = p.rules(ev.Ifname)
	return l
}

// Initial records a link's carrier at start (or when it appears). A link
// found without carrier is decided down at once: its routes must go even
// though no event will come.
func (p *Policy) Initial(ev carrier.Event, m Membership) []Decision {
	l := p.get(ev)
	l.carrier, l.last, l.member, l.known, l.effective = ev.Up, ev, m, true, ev.Up
	if ev.Up {
		return nil
	}
	return []Decision{{Ifindex: ev.Ifindex, Ifname: ev.Ifname, Up: false, Event: ev, Membership: m, Reason: "initial"}}
}

// Forget drops a link that was deleted.
func (p *Policy) Forget(ifindex int) { delete(p.links, ifindex) }

// Event takes a carrier change at time now, with the link's membership.
func (p *Policy) Event(ev carrier.Event, m Membership, now time.Time) []Decision {
	l := p.get(ev)
	if !l.known {
		// No Initial: the first thing we hear is a change, so the link
		// was in the opposite state.
		l.known, l.effective = true, !ev.Up
	}
	l.carrier, l.last, l.member = ev.Up, ev, m
	l.pending = time.Time{}

	if r := l.rules; r.Transitions > 0 {
		cut := now.Add(-r.Window)
		kept := l.changes[:0]
		for _, t := range l.changes {
			if t.After(cut) {
				kept = append(kept, t)
			}
		}
		l.changes = append(kept, now)
		if len(l.changes) >= r.Transitions {
			// Each flap during hold-down extends it.
			l.heldUntil = now.Add(r.HoldDown)
		}
	}
	if !ev.Up {
		if l.rules.DownDelay > 0 && l.effective {
			l.pending = now.Add(l.rules.DownDelay)
			return nil
		}
		return l.decide(false, "carrier")
	}
	if now.Before(l.heldUntil) {
		return nil // the hold-down's end decides
	}
	if l.rules.UpDelay > 0 && !l.effective {
		l.pending = now.Add(l.rules.UpDelay)
		return nil
	}
	return l.decide(true, "carrier")
}

// decide treats the link as up or down from its last event, which the
// decision carries with its membership.
func (l *link) decide(up bool, reason string) []Decision {
	if l.effective == up {
		return nil
	}
	l.effective = up
	ev := l.last
	return []Decision{{Ifindex: ev.Ifindex, Ifname: ev.Ifname, Up: up, Event: ev, Membership: l.member, Reason: reason}}
}

// Tick fires the decisions whose time has come.
func (p *Policy) Tick(now time.Time) []Decision {
	var out []Decision
	for _, l := range p.links {
		if !l.pending.IsZero() && !now.Before(l.pending) {
			l.pending = time.Time{}
			if l.carrier && now.Before(l.heldUntil) {
				continue
			}
			out = append(out, l.decide(l.carrier, "delay")...)
		}
		if !l.heldUntil.IsZero() && !now.Before(l.heldUntil) {
			l.heldUntil = time.Time{}
			if l.carrier && l.pending.IsZero() {
				if l.rules.UpDelay > 0 && !l.effective {
					l.pending = now.Add(l.rules.UpDelay)
					continue
				}
				out = append(out, l.decide(true, "hold_down_end")...)
			}
		}
	}
	return out
}

// NextDeadline is when Tick next has work, if ever.
func (p *Policy) NextDeadline() (time.Time, bool) {
	var next time.Time
	for _, l := range p.links {
		for _, t := range []time.Time{l.pending, l.heldUntil} {
			if !t.IsZero() && (next.IsZero() || t.Before(next)) {
				next = t
			}
		}
	}
	return next, !next.IsZero()
}

// Down lists the last event of each link treated as down now, by ifindex.
func (p *Policy) Down() []carrier.Event { return p.treated(false) }

// Up lists the last event of each link treated as up now, by ifindex.
func (p *Policy) Up() []carrier.Event { return p.treated(true) }

func (p *Policy) treated(up bool) []carrier.Event {
	var out []carrier.Event
	for _, idx := range slices.Sorted(maps.Keys(p.links)) {
		if l := p.links[idx]; l.known && l.effective == up {
			out = append(out, l.last)
		}
	}
	return out
}

// Effective says how a link is being treated now.
func (p *Policy) Effective(ifindex int) (up, known bool) {
	l := p.links[ifindex]
	if l == nil {
		return false, false
	}
	return l.effective, l.known
}
