package agent

import (
	"context"
	"runtime"
	"sync/atomic"

	"github.com/linkbeat/linkbeat/internal/actions"
	"github.com/linkbeat/linkbeat/internal/carrier"
	"github.com/linkbeat/linkbeat/internal/registry"
	"github.com/linkbeat/linkbeat/internal/source"
)

// handler is where the event source's ordered stream is handed to the
// actors. Its functions run on the event loop's goroutine and never block.
func (p *pipeline) handler() source.Handler {
	return source.Handler{
		Carrier: p.carrier,
		// The source calls it before Carrier: the bond switch is the one
		// a millisecond matters to.
		Bond: func(_ context.Context, ev source.LinkEvent) {
			p.bonds.Link(ev)
			p.paths.link(ev)
		},
		Link:      p.link,
		Ready:     p.ready,
		Heartbeat: p.heartbeat(),
		// After the Released inputs of the links the reload took out.
		Reload: func(_ context.Context, bonds []source.BondMembers) {
			p.enqueue(actions.Input{Kind: actions.Reload})
			p.paths.refresh(bonds)
		},
	}
}

// carrier takes each ordered carrier change. The fast path hears every
// link's: a bond's slaves are often left out of the monitored set (the
// routes are on the bond), and it ignores links that are no slave. For the
// actions, a link outside the monitored set matters only when its carrier
// returns: a released link may wait for it (actions.Unmonitored).
func (p *pipeline) carrier(_ context.Context, ev source.Event) {
	if p.fp != nil {
		p.fp.Carrier(ev.Event)
	}
	if !ev.Monitored {
		if ev.Up {
			p.enqueue(actions.Input{Kind: actions.Unmonitored, Event: ev.Event})
		}
		return
	}
	p.enqueue(actions.Input{Kind: actions.Carrier, Event: ev.Event, Bond: ev.Bond, Slave: ev.Slave})
	// The actions goroutine was just made ready on this thread; yield to
	// it so the routes change before the source records the change in
	// its pinned map and metrics. Without this the actions waited for the
	// loop to finish and park, or for another thread to steal them: tens
	// of microseconds of every carrier loss.
	runtime.Gosched()
}

// link takes a monitored link's first sight, its removal, and its leaving
// the monitored set.
func (p *pipeline) link(_ context.Context, c source.LinkEvent) {
	x := actions.Input{Kind: actions.Initial, Bond: c.Bond, Slave: c.Slave,
		Event: carrier.Event{Ifindex: c.Link.Index, Ifname: c.Link.Name, Up: c.Link.Carrier, Source: carrier.SourceNetlink}}
	switch {
	case c.Released:
		// A rename moves its record to the new name (routes.renamed).
		x.Kind = actions.Released
	case c.Kind == registry.Removed:
		x.Kind = actions.Removed
	}
	p.enqueue(x)
}

// ready hands back what an earlier run withdrew from links this run does
// not monitor, then tells Hooks.Ready, with how many links the source
// monitors, once the start-up inputs are carried out: it crosses the
// action queue behind them.
func (p *pipeline) ready(_ context.Context, s source.Startup) {
	p.releaseUnmonitored(s.Unmonitored)
	hook := p.a.cfg.Hooks.Ready
	if hook == nil {
		return
	}
	n, f := len(s.Monitored), p.a.src.Features()
	if !p.barrier(func() { hook(n, f) }) {
		// Never withhold it: systemd would fail the start.
		p.log.Warn("action queue full: telling systemd ready before the start-up actions are done")
		hook(n, f)
	}
}

// actor is one goroutine that must answer liveness ticks: ping queues f
// for it to call, or says its queue is full.
type actor struct {
	name string
	ping func(f func()) bool
}

// heartbeat is the liveness tick. Each actor (the action goroutine, the
// bond manager, the path monitor if it runs) answers it behind the inputs
// queued before it; Hooks.Alive is called once all have answered, so a
// stuck loop or any stuck actor stops the answers.
func (p *pipeline) heartbeat() func(context.Context) {
	hook := p.a.cfg.Hooks.Alive
	if hook == nil {
		return nil
	}
	return func(context.Context) {
		actors := []actor{{"action", p.barrier}, {"bond manager", p.bonds.Ping}}
		if p.paths.running() {
			actors = append(actors, actor{"path monitor", p.paths.ping})
		}
		var left atomic.Int32
		left.Store(int32(len(actors)))
		answer := func() {
			if left.Add(-1) == 0 {
				hook()
			}
		}
		for _, a := range actors {
			if !a.ping(answer) {
				// Never blocks: this tick stays unanswered.
				p.log.Warn(a.name + " queue full: liveness tick skipped")
			}
		}
	}
}

// barrier queues f behind every input queued so far; false if the queue
// is full.
func (p *pipeline) barrier(f func()) bool {
	select {
	case p.in <- actions.Input{Kind: actions.Barrier, Barrier: f}:
		return true
	default:
		return false
	}
}

// releaseUnmonitored hands back what an earlier run withdrew from links
// this run does not monitor (a reload or a rename took them out of the
// set): nothing else would ever restore it. held is what the routes held
// withdrawn before the actions started.
func (p *pipeline) releaseUnmonitored(unmonitored []registry.Link) {
	for _, l := range unmonitored {
		if _, ok := p.held[l.Index]; ok {
			p.enqueue(actions.Input{Event: carrier.Event{Ifindex: l.Index, Ifname: l.Name, Up: l.Carrier}, Kind: actions.Released})
		}
	}
}
