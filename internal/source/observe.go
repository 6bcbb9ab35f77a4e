package source

import (
	"context"

	"github.com/cilium/ebpf"

	"github.com/linkbeat/linkbeat/internal/carrier"
	"github.com/linkbeat/linkbeat/internal/monotime"
	"github.com/linkbeat/linkbeat/internal/registry"
	"github.com/linkbeat/linkbeat/internal/traffic"
)

// Observer hears what the loop does, for metrics. Its methods are called
// from the loop's goroutine, on the event path: they must not block.
type Observer interface {
	// Carrier gets each carrier change of a monitored link, after the
	// handler got it; the others' are not its business.
	Carrier(ev carrier.Event)
	// Link gets a monitored link's first sight and its removal.
	Link(c registry.Change)
	// Resync gets each full netlink resync, by reason: "start",
	// "netlink_overflow", "counter_gap", "ringbuf_drop".
	Resync(reason string)
	// RingbufDrops gets the BPF carrier ring buffer's drop counter, the
	// total since the programs were loaded, each time it is read.
	RingbufDrops(total uint64)
}

// observe wraps the handler so that the pinned link_state map and the
// observer hear of every change the handler hears of, after it.
func (d *Source) observe(h Handler) Handler {
	obs := d.cfg.Observer
	carrierFn, linkFn := h.Carrier, h.Link
	h.Carrier = func(ctx context.Context, e Event) {
		if carrierFn != nil {
			carrierFn(ctx, e)
		}
		if !e.Monitored {
			return
		}
		ev := e.Event
		if d.traffic != nil {
			err := d.traffic.RecordChange(ev.Ifindex, traffic.LinkState{Carrier: ev.Up, ChangedNS: uint64(ev.Time), SeenNS: uint64(ev.Time),
				UpCount: ev.UpCount, DownCount: ev.DownCount, Source: uint8(ev.Source)})
			if err != nil {
				d.log.Warn("cannot record carrier change in the link_state map", "ifname", ev.Ifname, "err", err)
			}
		}
		if obs != nil {
			obs.Carrier(ev)
		}
	}
	h.Link = func(ctx context.Context, lc LinkEvent) {
		if linkFn != nil {
			linkFn(ctx, lc)
		}
		c := lc.Change
		if d.traffic != nil && c.Kind == registry.Added {
			err := d.traffic.RecordSight(c.Link.Index, traffic.LinkState{Carrier: c.Link.Carrier, SeenNS: uint64(monotime.Now()),
				UpCount: c.Link.UpCount, DownCount: c.Link.DownCount})
			if err != nil {
				d.log.Warn("cannot record carrier in the link_state map", "ifname", c.Link.Name, "err", err)
			}
		}
		if obs != nil {
			obs.Link(c)
		}
	}
	return h
}

// observeRenamed moves a monitored link's series to its new name, or
// drops them when the new name is not monitored.
func (d *Source) observeRenamed(c registry.Change, monitored bool) {
	if d.cfg.Observer == nil {
		return
	}
	d.cfg.Observer.Link(registry.Change{Kind: registry.Removed, Link: c.Old})
	if monitored {
		d.cfg.Observer.Link(registry.Change{Kind: registry.Added, Link: c.Link})
	}
}

func (d *Source) observeResync(reason string) {
	if d.cfg.Observer != nil {
		d.cfg.Observer.Resync(reason)
	}
}

func (d *Source) observeDrops(total uint64) {
	if d.cfg.Observer != nil {
		d.cfg.Observer.RingbufDrops(total)
	}
}

// pruneTraffic drops what an earlier run left pinned for interfaces not
// monitored now, once the start resync has attached the monitored ones.
func (d *Source) pruneTraffic() {
	if d.traffic == nil {
		return
	}
	if err := d.traffic.Prune(); err != nil {
		d.log.Warn("cannot remove an earlier run's leftovers", "err", err)
	}
}

// TrafficMap is the counter map (nil when traffic counting is off), for
// the metrics collector, which reads it from its own goroutine.
func (d *Source) TrafficMap() *ebpf.Map {
	if d.traffic == nil {
		return nil
	}
	return d.traffic.Map()
}

// ReplacedMaps names the pinned maps replaced at start because their
// layout changed, each with the difference.
func (d *Source) ReplacedMaps() map[string]string {
	if d.traffic == nil {
		return nil
	}
	return d.traffic.Replaced()
}
