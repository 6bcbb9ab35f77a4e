package agent

import (
	"context"
	"log/slog"
	"sync/atomic"

	"github.com/linkbeat/linkbeat/internal/actions"
	"github.com/linkbeat/linkbeat/internal/carrier"
	"github.com/linkbeat/linkbeat/internal/registry"
	"github.com/linkbeat/linkbeat/internal/routes"
	"github.com/linkbeat/linkbeat/internal/source"
)

// handler is where the event source's ordered stream is handed to the
// actors. Its functions run on the event loop's goroutine and never block.
func (p *pipeline) handler() source.Handler {
	return source.Handler{
		// Bonds first: their switch is the one a millisecond matters to.
		Carrier: func(_ context.Context, ev carrier.Event) {
			p.bonds.Carrier(ev)
			p.send(actions.Input{Kind: actions.Carrier, Event: ev})
		},
		Ready:     p.ready(),
		Heartbeat: p.heartbeat(),
		Update: func(_ context.Context, c registry.Change) {
			if c.Kind == registry.Updated && c.Link.Carrier && !c.Old.Carrier {
				p.enqueue(actions.Input{Event: carrier.Event{Ifindex: c.Link.Index, Ifname: c.Link.Name, Up: true}, Kind: actions.CarrierBack})
			}
			p.links.update(c)
			p.bonds.Link(c)
			p.paths.link(c)
		},
		Link: p.link,
		// After the Released inputs of the links the reload took out.
		Reload: func(context.Context) { p.enqueue(actions.Input{Kind: actions.Reload}) },
	}
}

// link takes a monitored link's first sight, its removal, and its leaving
// the monitored set.
func (p *pipeline) link(_ context.Context, c registry.Change) {
	ev := carrier.Event{Ifindex: c.Link.Index, Ifname: c.Link.Name, Up: c.Link.Carrier, Source: carrier.SourceNetlink}
	if c.Released {
		// A rename moves its record to the new name (routes.renamed).
		delete(p.live, c.Link.Index)
		p.send(actions.Input{Kind: actions.Released, Event: ev})
		return
	}
	if c.Kind == registry.Removed {
		delete(p.live, c.Link.Index)
		p.send(actions.Input{Kind: actions.Removed, Event: ev})
		return
	}
	p.live[c.Link.Index] = c.Link.Name
	p.send(actions.Input{Kind: actions.Initial, Event: ev})
}

// send names the event's bond for the scripts and enqueues it.
func (p *pipeline) send(x actions.Input) {
	x.Bond, x.Slave = p.links.bondOf(x.Event.Ifindex)
	p.enqueue(x)
}

// ready tells Hooks.Ready once the start-up inputs are carried out: it
// crosses the action queue behind them.
func (p *pipeline) ready() func(context.Context) {
	hook := p.a.cfg.Hooks.Ready
	if hook == nil {
		return nil
	}
	return func(context.Context) {
		n, f := len(p.live), p.a.src.Features()
		if !p.barrier(func() { hook(n, f) }) {
			// Never withhold it: systemd would fail the start.
			p.log.Warn("action queue full: telling systemd ready before the start-up actions are done")
			hook(n, f)
		}
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
// set): nothing else would ever restore it.
func releaseUnmonitored(rm *routes.Manager, scfg source.Config, enqueue func(actions.Input), log *slog.Logger) {
	held := rm.WithdrawnLinks()
	if len(held) == 0 {
		return
	}
	dump, err := registry.Dump()
	if err != nil {
		log.Warn("cannot list links to release withdrawn routes of unmonitored ones", "err", err)
		return
	}
	names := map[int]string{}
	for _, l := range dump {
		names[l.Index] = l.Name
	}
	for _, l := range dump {
		if _, ok := held[l.Index]; ok && !source.Monitors(scfg, l, names[l.MasterIndex]) {
			enqueue(actions.Input{Event: carrier.Event{Ifindex: l.Index, Ifname: l.Name, Up: l.Carrier}, Kind: actions.Released})
		}
	}
}

// linkNames remembers, from the source's link updates, which bond each
// link belongs to, for the scripts' LINKBEAT_BOND and LINKBEAT_SLAVE.
type linkNames struct {
	names  map[int]string
	master map[int]int // bond slave -> bond
	active map[int]int // bond -> active slave
}

func newLinkNames() *linkNames {
	return &linkNames{names: map[int]string{}, master: map[int]int{}, active: map[int]int{}}
}

func (n *linkNames) update(c registry.Change) {
	l := c.Link
	if c.Kind == registry.Removed {
		delete(n.names, l.Index)
		delete(n.master, l.Index)
		delete(n.active, l.Index)
		return
	}
	n.names[l.Index] = l.Name
	if l.BondSlave != nil {
		n.master[l.Index] = l.MasterIndex
	} else {
		delete(n.master, l.Index)
	}
	if l.Bond != nil {
		n.active[l.Index] = l.Bond.ActiveSlave
	}
}

// bondOf is (bond, slave) for a bond slave, (bond, active slave) for a
// bond, and nothing for other links.
func (n *linkNames) bondOf(idx int) (string, string) {
	if m, ok := n.master[idx]; ok {
		return n.names[m], n.names[idx]
	}
	if a, ok := n.active[idx]; ok {
		return n.names[idx], n.names[a]
	}
	return "", ""
}
