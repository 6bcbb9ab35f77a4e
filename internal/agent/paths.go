package agent

import (
	"context"
	"log/slog"

	"github.com/linkbeat/linkbeat/internal/bond"
	"github.com/linkbeat/linkbeat/internal/config"
	"github.com/linkbeat/linkbeat/internal/pathmon"
	"github.com/linkbeat/linkbeat/internal/registry"
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

// pathInput is a link change for the path monitor's syncer, or a
// liveness tick (ping).
type pathInput struct {
	change registry.Change
	ping   func()
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
				if x.ping != nil {
					x.ping()
					continue
				}
				if err := p.sync.Link(x.change); err != nil {
					log.Warn("path monitor", "ifname", x.change.Link.Name, "err", err)
				}
			}
		}
	}()
	return p
}

func (p *paths) link(c registry.Change) {
	if p.in == nil {
		return
	}
	select {
	case p.in <- pathInput{change: c}:
	default:
		p.log.Error("path monitor queue full: link change dropped", "ifname", c.Link.Name)
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
// reload).
func (p *paths) refresh() {
	if p.sync == nil {
		return
	}
	if err := p.sync.Refresh(); err != nil {
		p.log.Warn("path monitor: applying the reloaded settings", "err", err)
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
