// Package agent is where the daemon is put together: New builds the
// pipeline once (the event source, the route, bond, path and script
// actors, the actions that carry out the policy), and Run runs it and owns
// the order in which it starts and stops. cmd/linkbeat keeps the flags,
// logging, telemetry and sd_notify, and hears of the agent through Hooks.
package agent

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"time"

	"github.com/linkbeat/linkbeat/internal/bond"
	"github.com/linkbeat/linkbeat/internal/config"
	"github.com/linkbeat/linkbeat/internal/fastpath"
	"github.com/linkbeat/linkbeat/internal/metrics"
	"github.com/linkbeat/linkbeat/internal/pathmon"
	"github.com/linkbeat/linkbeat/internal/routes"
	"github.com/linkbeat/linkbeat/internal/source"
)

// Config is what the agent is asked to run.
type Config struct {
	// Source configures the event source; its Interfaces are the
	// --interfaces flag's, which the config file's list joins.
	Source source.Config
	// Load reads the config (file and flags) on each reload, and at start
	// unless First is set.
	Load  func() (*config.Config, error)
	First *config.Config
	// ConfigFile names the config file, for the reload's log line.
	ConfigFile string
	// StateDir keeps what a crash must not lose (withdrawn routes, bond
	// state).
	StateDir string
	// Reloads asks for a config reload on each receive (SIGHUP).
	Reloads <-chan os.Signal
	// Metrics hears what every actor does.
	Metrics *metrics.Metrics
	// Telemetry, if set, is closed before the event source's maps are,
	// so that no scrape reads a closed map.
	Telemetry interface{ Close() }
	Hooks     Hooks
	Log       *slog.Logger
}

// Hooks tell the caller (systemd, the health endpoint, the exporter) of
// the agent's life. Each may be nil.
type Hooks struct {
	// Opened is called once the event source is open, before any actor
	// starts; an error stops the start.
	Opened func(src *source.Source, pinDir string) error
	// Ready is called once the start-up inputs have been carried out:
	// the state linkbeat promises is in force.
	Ready func(monitored int, f source.Features)
	// Alive is called each Heartbeat once the event loop and the actors
	// have answered a liveness tick.
	Alive     func()
	Heartbeat time.Duration
	// Stopping is called when the shutdown begins.
	Stopping func()
	// Reloading and Reloaded bracket each config reload.
	Reloading, Reloaded func()
}

// Agent is the assembled pipeline.
type Agent struct {
	cfg     Config
	log     *slog.Logger
	live    *liveConfig
	first   *config.Config
	src     *source.Source
	routes  *routes.Manager
	bk      *bond.NetlinkKernel
	pm      *pathmon.Monitor
	fpObjs  *fastpath.Objects // nil: the fast path's programs did not load
	obs     observers
	closers []func()
}

// New loads the config and the event source's programs and opens the
// kernel handles the actors need. Nothing reacts to the links before Run.
func New(cfg Config) (*Agent, error) {
	a := &Agent{cfg: cfg, log: cfg.Log, obs: newObservers(cfg.Metrics)}
	if err := a.open(); err != nil {
		a.close()
		return nil, err
	}
	return a, nil
}

// open does New's work; on error, close undoes what it opened.
func (a *Agent) open() (err error) {
	cfg := a.cfg
	if a.first = cfg.First; a.first == nil {
		if a.first, err = cfg.Load(); err != nil {
			return err
		}
	}
	a.live = newLiveConfig(a.first)
	scfg := cfg.Source
	scfg.Interfaces = a.first.Monitored(cfg.Source.Interfaces)
	scfg.Observer, scfg.Heartbeat = a.obs.source, cfg.Hooks.Heartbeat
	// Before the source: the carrier programs write the fast path's maps.
	if a.fpObjs = LoadFastPath(&scfg, a.log); a.fpObjs != nil {
		a.onClose(func() { _ = a.fpObjs.Close() })
	}
	if a.src, err = source.Open(scfg, a.log); err != nil {
		return err
	}
	a.onClose(func() { _ = a.src.Close() })
	if cfg.Telemetry != nil {
		// No scrape may read the maps the source's Close closes.
		a.onClose(cfg.Telemetry.Close)
	}
	if cfg.Hooks.Opened != nil {
		// "" when the bpffs was not usable: then nothing is pinned.
		if err = cfg.Hooks.Opened(a.src, a.src.PinDir()); err != nil {
			return err
		}
	}
	if a.routes, err = routes.New(routes.Config{StateDir: cfg.StateDir, Log: a.log}, routes.NewKernel()); err != nil {
		return err
	}
	a.onClose(func() {
		if err := a.routes.Close(); err != nil {
			a.log.Warn("closing the route record", "err", err)
		}
	})
	if a.bk, err = bond.NewKernel(); err != nil {
		return err
	}
	a.onClose(a.bk.Close)
	if a.pm = openPaths(a.first, a.src, a.log); a.pm != nil {
		cfg.Metrics.SetPaths(a.pm.Replies)
		a.onClose(func() {
			if err := a.pm.Close(); err != nil {
				a.log.Warn("closing the path monitor", "err", err)
			}
		})
	}
	return nil
}

// onClose stacks f to run on close, last first.
func (a *Agent) onClose(f func()) { a.closers = append(a.closers, f) }

func (a *Agent) close() {
	for i := len(a.closers) - 1; i >= 0; i-- {
		a.closers[i]()
	}
	a.closers = nil
}

var errNoAgent = errors.New("agent: Run without New")

// Run runs the pipeline until ctx ends, then stops it in order: the event
// source first, then the reloads, the actors, the quit-time scripts, and
// last the kernel handles.
func (a *Agent) Run(ctx context.Context) error {
	if a == nil || a.src == nil {
		return errNoAgent
	}
	defer a.close()
	if err := a.routes.Start(ctx); err != nil {
		return err
	}
	// Routes withdrawn by an earlier run come back now if their link has
	// carrier again; links still down keep them withdrawn until it returns.
	if err := a.routes.Reconcile(nil); err != nil {
		a.log.Error("restoring routes withdrawn by an earlier run", "err", err)
	}
	p, err := a.build(ctx)
	if err != nil {
		return err
	}
	return p.run(ctx)
}
