package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/linkbeat/linkbeat/internal/agent"
	"github.com/linkbeat/linkbeat/internal/config"
	"github.com/linkbeat/linkbeat/internal/registry"
	"github.com/linkbeat/linkbeat/internal/source"
)

// actionFlags are `run`'s flags for what to do on a change.
type actionFlags struct {
	configFile     string
	script         string
	upDelayMS      int
	downDelayMS    int
	noScriptOnExit bool
	stateDir       string
	ops            opsFlags // web.go
}

func (a *actionFlags) register(cmd *kingpin.CmdClause) {
	registerConfigFile(cmd, "YAML config file (see docs/config.md).", &a.configFile) // configfile.go
	cmd.Flag("action-script", "ifplugd-compatible action script, run as SCRIPT IFACE up|down [EXTRA].").StringVar(&a.script)
	// -1, not a kingpin default, marks "not given" so that --help shows no sentinel.
	a.upDelayMS, a.downDelayMS = -1, -1
	cmd.Flag("up-delay", "Milliseconds a link must keep carrier before it is treated as up (ifplugd -u, in ms). Default: the config's up_delay.").
		PlaceHolder("MS").IntVar(&a.upDelayMS)
	cmd.Flag("down-delay", "Milliseconds a link must lack carrier before it is treated as down (ifplugd -d, in ms). Default: the config's down_delay.").
		PlaceHolder("MS").IntVar(&a.downDelayMS)
	cmd.Flag("no-script-on-exit", "Do not run the down script for up links when the daemon quits (ifplugd -q).").BoolVar(&a.noScriptOnExit)
	cmd.Flag("state-dir", "Directory for crash-safe state (withdrawn routes).").Default("/run/linkbeat").StringVar(&a.stateDir)
	a.ops.register(cmd)
}

// load merges the config file with the flags; flags win.
func (a *actionFlags) load() (*config.Config, error) {
	c := &config.Config{}
	if a.configFile != "" {
		var err error
		if c, err = config.Load(a.configFile); err != nil {
			return nil, err
		}
	}
	if a.script != "" {
		c.Defaults.Script = &a.script
	}
	for _, d := range []struct {
		ms   int
		dst  **config.Duration
		name string
	}{{a.upDelayMS, &c.Defaults.UpDelay, "--up-delay"}, {a.downDelayMS, &c.Defaults.DownDelay, "--down-delay"}} {
		if d.ms < -1 {
			return nil, fmt.Errorf("%s %d: want 0 or more milliseconds", d.name, d.ms)
		}
		if d.ms >= 0 {
			v := config.Duration(int64(d.ms) * 1e6)
			*d.dst = &v
		}
	}
	if a.noScriptOnExit {
		f := false
		c.ScriptOnExit = &f
	}
	return c, nil
}

// runActions is `run`: the agent (internal/agent) with this process's
// telemetry, health endpoint and systemd notifications around it.
func runActions(ctx context.Context, scfg source.Config, af *actionFlags, log *slog.Logger) error {
	hup, stopHangups := hangups()
	defer stopHangups()
	// A config that does not load stops `run` before it binds anything.
	first, err := af.load()
	if err != nil {
		return err
	}
	tel, err := newTelemetry(&af.ops, log)
	if err != nil {
		return err
	}
	defer tel.Close() // a no-op once the agent has closed it
	scfg.ReleaseOnExit = af.ops.releaseOnExit
	sd := newNotifier(log)                 // notify.go
	hl := newHealth(sd.watchdog, time.Now) // health.go
	tel.health = hl
	a, err := agent.New(agent.Config{Source: scfg, Load: af.load, First: first, ConfigFile: af.configFile, StateDir: af.stateDir,
		Reloads: hup, Metrics: tel.metrics, Telemetry: tel, Log: log, Hooks: agent.Hooks{
			Opened: func(src *source.Source, pinDir string) error {
				return tel.started(src, pinDir, af.stateDir, sd.exporterChanged)
			},
			Ready:     sd.ready(),
			Alive:     func() { hl.answered(); sd.ping() },
			Heartbeat: hl.heartbeat(),
			Stopping:  sd.stopping,
			Reloading: sd.reloading,
			Reloaded:  sd.reloaded,
		}})
	if err != nil {
		return err
	}
	return a.Run(ctx)
}

// hangups catches SIGHUP from the start of `run`, so that a reload asked
// for while the programs load is not the default action (exit) but waits.
func hangups() (<-chan os.Signal, func()) {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGHUP)
	return c, func() { signal.Stop(c) }
}

// check is ifplugd -w's answer as an exit status: 2 carrier, 3 none.
func check(iface string, w io.Writer) error {
	dump, err := registry.Dump()
	if err != nil {
		return err
	}
	for _, l := range dump {
		if l.Name == iface {
			state, code := "no carrier", 3
			if l.Carrier {
				state, code = "carrier", 2
			}
			fmt.Fprintf(w, "%s: %s\n", iface, state)
			os.Exit(code)
		}
	}
	return errors.New("no interface " + iface)
}
