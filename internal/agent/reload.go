package agent

import (
	"context"
	"log/slog"
	"os"
	"slices"
	"sync/atomic"
	"time"

	"github.com/linkbeat/linkbeat/internal/config"
	"github.com/linkbeat/linkbeat/internal/source"
)

// liveConfig is the config in force. A reload swaps it whole, so every
// reader sees one config, never half of two.
type liveConfig struct{ p atomic.Pointer[config.Config] }

func newLiveConfig(c *config.Config) *liveConfig {
	l := &liveConfig{}
	l.p.Store(c)
	return l
}

func (l *liveConfig) get() *config.Config { return l.p.Load() }

// forBond is the live config's ForBond, for the bond manager and the path
// monitor, which ask at each decision.
func (l *liveConfig) forBond(name string) config.BondSettings { return l.get().ForBond(name) }

// reloader applies a new config without stopping anything: the source's
// programs stay attached, events keep flowing, and only what changed is
// touched.
type reloader struct {
	load       func() (*config.Config, error)
	file       string   // for the log line
	flagIfaces []string // --interfaces, which the config's own list joins
	live       *liveConfig
	// apply hands the reload to the event source (source.Reload).
	apply func(ctx context.Context, r source.Reload) error
	// pathsOn says whether the path monitor was opened at start.
	pathsOn bool
	// observe records the outcome (metrics.ConfigReload).
	observe func(ok bool, at time.Time)
	// reloading and reloaded, if set, bracket each reload (systemd).
	reloading, reloaded func()
	log                 *slog.Logger
}

// run reloads on each SIGHUP until ctx ends.
func (r *reloader) run(ctx context.Context, hup <-chan os.Signal) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			if r.reloading != nil {
				r.reloading()
			}
			r.reload(ctx)
			if r.reloaded != nil {
				r.reloaded()
			}
		}
	}
}

// reload re-reads the config file and the flags. A config that does not
// load is refused whole, and the running one stays in force.
func (r *reloader) reload(ctx context.Context) bool {
	next, err := r.load()
	if err != nil {
		r.log.Error("config reload refused: the running config stays in force", "err", err)
		r.observe(false, time.Now())
		return false
	}
	prev := r.live.get()
	if wantsPaths(next) && !r.pathsOn {
		r.log.Warn("config reload: path health was off at start (no bond had arp_targets or ns_targets); restart linkbeat to turn it on. The rest of the config is applied.")
	}
	r.live.p.Store(next)
	// One route to the actors: the source releases the links that left
	// the set, then passes the reload on behind them (Handler.Reload),
	// which re-applies the route policy to links that are down now and
	// has the path monitor take the bonds' settings again; delays,
	// dampening and scripts apply from the next event.
	rl := source.Reload{Notify: true}
	if was, now := prev.Monitored(r.flagIfaces), next.Monitored(r.flagIfaces); !slices.Equal(was, now) {
		rl.Interfaces, rl.SetInterfaces = now, true
	}
	if err := r.apply(ctx, rl); err != nil {
		// Only shutdown gets here.
		r.log.Warn("config reload interrupted", "err", err)
		return false
	}
	r.observe(true, time.Now())
	r.log.Info("config reloaded", "file", r.file)
	return true
}
