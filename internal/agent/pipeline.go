package agent

import (
	"context"
	"log/slog"
	"sync"

	"github.com/linkbeat/linkbeat/internal/actions"
	"github.com/linkbeat/linkbeat/internal/bond"
	"github.com/linkbeat/linkbeat/internal/carrier"
	"github.com/linkbeat/linkbeat/internal/config"
	"github.com/linkbeat/linkbeat/internal/fastpath"
	"github.com/linkbeat/linkbeat/internal/monotime"
	"github.com/linkbeat/linkbeat/internal/script"
)

// pipeline is what runs between New and the end of Run.
type pipeline struct {
	a       *Agent
	log     *slog.Logger
	in      chan actions.Input
	act     *actions.Actions
	scripts *script.Runner
	bonds   *bond.Manager
	fp      *fastpath.Manager // nil: the fast path is off
	paths   *paths
	// held are the links an earlier run left routes withdrawn on.
	held map[int]string

	wg        sync.WaitGroup
	stopBonds context.CancelFunc
}

// build makes the actors and starts their goroutines.
func (a *Agent) build(ctx context.Context) (*pipeline, error) {
	p := &pipeline{a: a, log: a.log, in: make(chan actions.Input, 4096)}
	// Scripts outlive ctx's cancellation only for the quit-time run.
	p.scripts = script.NewRunner(context.WithoutCancel(ctx), a.log, a.obs.scripts)
	// What an earlier run left withdrawn, before the first change.
	a.cfg.Metrics.SetWithdrawn(a.routes.Withdrawn())
	p.act = actions.New(a.log, a.live.get, a.routes, p.scripts, monotime.Now, a.obs.actions)
	bopts := bond.Options{Kernel: a.bk, Log: a.log, Observer: a.obs.bonds, Settings: a.live.forBond,
		StateDir: a.cfg.StateDir, Now: monotime.NowNS, Paths: a.pm != nil}
	p.fp = startFastPath(a.fpObjs, a.src, a.cfg.StateDir, a.cfg.Metrics, func(f bond.Failover) {
		p.bonds.FastFailover(f)
		a.obs.fast(f)
	}, a.log)
	if p.fp != nil {
		bopts.FastPath = p.fp
	}
	p.bonds = bond.NewManager(bopts)
	bctx, stopBonds := context.WithCancel(ctx)
	p.stopBonds = stopBonds
	p.paths = startPaths(bctx, a.pm, a.live, p.bonds, a.log)
	// The path syncer stops after the bonds, before the path monitor and
	// the bond kernel handle are closed.
	a.onClose(p.paths.stop)
	a.onClose(stopBonds)
	p.wg.Add(2)
	go func() { defer p.wg.Done(); p.act.Run(ctx, p.in) }()
	go func() { defer p.wg.Done(); p.bonds.Run(bctx) }()
	if p.fp != nil {
		p.wg.Add(1)
		go func() { defer p.wg.Done(); p.runFastPath(bctx) }()
	}
	return p, nil
}

// runFastPath runs the fast path until the bonds stop. Its exit clears
// every redirect before the programs go, and then the pins go: the next
// start makes fresh maps.
func (p *pipeline) runFastPath(ctx context.Context) {
	p.fp.Run(ctx)
	if pin := p.a.src.PinDir(); pin != "" {
		if err := p.a.fpObjs.Unpin(pin); err != nil {
			p.log.Warn("removing the fast path's pins", "err", err)
		}
	}
}

// run feeds the event source's stream to the actors until ctx ends, then
// stops them in order.
func (p *pipeline) run(ctx context.Context) error {
	a := p.a
	// Before the actions change anything: what an earlier run left
	// withdrawn (see releaseUnmonitored).
	p.held = a.routes.WithdrawnLinks()
	rctx, stopReloads := context.WithCancel(ctx)
	rl := &reloader{load: a.cfg.Load, file: a.cfg.ConfigFile, flagIfaces: a.cfg.Source.Interfaces, live: a.live,
		apply: a.src.Reload, pathsOn: a.pm != nil,
		observe: a.obs.reload, log: p.log, reloading: a.cfg.Hooks.Reloading, reloaded: a.cfg.Hooks.Reloaded}
	reloadsDone := make(chan struct{})
	go func() { defer close(reloadsDone); rl.run(rctx, a.cfg.Reloads) }()
	err := a.src.Run(ctx, p.handler())
	if a.cfg.Hooks.Stopping != nil {
		a.cfg.Hooks.Stopping()
	}
	// Run also returns on a start-up error, with ctx still live: closing
	// the queue and cancelling the bonds is what stops them then.
	stopReloads()
	<-reloadsDone // it sends to in
	close(p.in)
	p.stopBonds()
	p.wg.Wait()
	p.exitScripts()
	p.scripts.Wait()
	return err
}

// exitScripts runs the down script of each link treated as up, as
// ifplugd does when it quits (unless told not to). The actions, stopped
// by now, know those links: they leave the policy when they leave the
// monitored set.
func (p *pipeline) exitScripts() {
	for _, j := range exitJobs(p.a.live.get(), p.act.Up()) {
		p.scripts.Run(j, "up")
	}
}

// exitJobs are the quit-time runs: the down script of each link in up
// that has one.
func exitJobs(cfg *config.Config, up []carrier.Event) []script.Job {
	if !cfg.RunScriptOnExit() {
		return nil
	}
	var out []script.Job
	for _, ev := range up {
		if s := cfg.For(ev.Ifname); s.Script != "" {
			out = append(out, script.Job{Path: s.Script, Extra: s.ScriptExtra, Timeout: s.ScriptTimeout, Capabilities: s.ScriptCaps, Ifname: ev.Ifname, Up: false,
				Env: script.Env(ev.Ifindex, "exit", 0, "", "")})
		}
	}
	return out
}

// enqueue hands an input to the actions. It never blocks the event loop:
// a full queue means the actors are stuck, and the resync on the next
// change repairs it.
func (p *pipeline) enqueue(x actions.Input) {
	select {
	case p.in <- x:
	default:
		p.log.Error("action queue full: event dropped", "kind", x.Kind, "ifname", x.Event.Ifname)
	}
}
