package agent

import (
	"context"
	"log/slog"

	"github.com/linkbeat/linkbeat/internal/bond"
	"github.com/linkbeat/linkbeat/internal/config"
	"github.com/linkbeat/linkbeat/internal/pathmon"
	"github.com/linkbeat/linkbeat/internal/source"
	"github.com/linkbeat/linkbeat/internal/traffic"
)

// wantsPaths says whether any bond has ARP or NS targets to probe.
func wantsPaths(cfg *config.Config) bool {
	for name := range cfg.Bonds {
		if len(cfg.ForBond(name).Targets()) > 0 {
			return true
		}
	}
	return false
}

// paths runs the ARP path monitor, when a bond asks for it, off the event
// loop: attaching its programs is netlink work.
type paths struct {
	mon    *pathmon.Monitor
	sync   *pathmon.Syncer
	in     chan pathInput
	done   chan struct{}
	cancel context.CancelFunc
	log    *slog.Logger
}

// pathInput is a bond or slave change for the path monitor's syncer, a
// reload's bonds (refresh), or a liveness tick (ping).
type pathInput struct {
	change  source.LinkEvent
	refresh []source.BondMembers
	ping    func()
}

// openPaths opens the ARP path monitor when a bond has targets to probe.
func openPaths(cfg *config.Config, d *source.Source, log *slog.Logger) *pathmon.Monitor {
	if !wantsPaths(cfg) {
		return nil
	}
	mon, err := pathmon.Open(pathmon.Options{PinDir: d.PinDir(), Mechanism: traffic.Mechanism(d.Features().TCMechanism), Log: log})
	if err != nil {
		// Carrier failover still works; only the ARP path checks are off.
		log.Error("ARP path health off: bonds fail over on carrier only", "err", err)
		return nil
	}
	return mon
}

func startPaths(ctx context.Context, mon *pathmon.Monitor, cfg *liveConfig, bonds *bond.Manager, log *slog.Logger) *paths {
	p := &paths{log: log}
	if mon == nil {
		return p
	}
	p.mon, p.in, p.done = mon, make(chan pathInput, 1024), make(chan struct{})
	ctx, p.cancel = context.WithCancel(ctx)
	p.sync = pathmon.NewSyncer(mon, cfg.forBond)
	go func() {
		for r := range mon.Reports() {
			bonds.Path(r)
		}
	}()
	go func() {
		defer close(p.done)
		for {
			select {
			case <-ctx.Done():
				return
			case x := <-p.in:
				p.handle(x)
			}
		}
	}()
	return p
}

// handle runs one input on the syncer's goroutine.
func (p *paths) handle(x pathInput) {
	switch {
	case x.ping != nil:
		x.ping()
	case x.refresh != nil:
		if err := p.sync.Refresh(x.refresh); err != nil {
			p.log.Warn("path monitor: applying the reloaded settings", "err", err)
		}
	default:
		if err := p.sync.Link(x.change); err != nil {
			p.log.Warn("path monitor", "ifname", x.change.Link.Name, "err", err)
		}
	}
}

func (p *paths) link(ev source.LinkEvent) {
	if p.in == nil {
		return
	}
	select {
	case p.in <- pathInput{change: ev}:
	default:
		p.log.Error("path monitor queue full: link change dropped", "ifname", ev.Link.Name)
	}
}

// running says whether the path monitor runs, and so answers ticks.
func (p *paths) running() bool { return p.in != nil }

// ping has the path monitor's goroutine call f behind the changes queued
// before it: a liveness tick. False if the queue is full.
func (p *paths) ping(f func()) bool {
	select {
	case p.in <- pathInput{ping: f}:
		return true
	default:
		return false
	}
}

// refresh makes the path monitor take the bonds' settings again (a
// reload), behind the changes queued before it.
func (p *paths) refresh(bonds []source.BondMembers) {
	if p.in == nil {
		return
	}
	if bonds == nil {
		bonds = []source.BondMembers{}
	}
	select {
	case p.in <- pathInput{refresh: bonds}:
	default:
		p.log.Error("path monitor queue full: reloaded settings not applied")
	}
}

// stop ends the syncer's goroutine; the agent closes the monitor after.
func (p *paths) stop() {
	if p.mon == nil {
		return
	}
	p.cancel()
	<-p.done
}
