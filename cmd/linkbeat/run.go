package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/linkbeat/linkbeat/internal/actions"
	"github.com/linkbeat/linkbeat/internal/bond"
	"github.com/linkbeat/linkbeat/internal/carrier"
	"github.com/linkbeat/linkbeat/internal/config"
	"github.com/linkbeat/linkbeat/internal/daemon"
	"github.com/linkbeat/linkbeat/internal/fastpath"
	"github.com/linkbeat/linkbeat/internal/metrics"
	"github.com/linkbeat/linkbeat/internal/monotime"
	"github.com/linkbeat/linkbeat/internal/pathmon"
	"github.com/linkbeat/linkbeat/internal/registry"
	"github.com/linkbeat/linkbeat/internal/routes"
	"github.com/linkbeat/linkbeat/internal/script"
	"github.com/linkbeat/linkbeat/internal/traffic"
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

func runActions(ctx context.Context, dcfg daemon.Config, af *actionFlags, log *slog.Logger) error {
	hup, stopHangups := hangups()
	defer stopHangups()
	first, err := af.load()
	if err != nil {
		return err
	}
	cfg := newLiveConfig(first)
	flagIfaces := dcfg.Interfaces
	dcfg.Interfaces = first.Monitored(flagIfaces)
	tel, err := newTelemetry(&af.ops, log)
	if err != nil {
		return err
	}
	defer tel.Close()
	dcfg.Observer, dcfg.ReleaseOnExit = tel.metrics, af.ops.releaseOnExit
	sd := newNotifier(log)                 // notify.go
	hl := newHealth(sd.watchdog, time.Now) // health.go
	dcfg.Heartbeat = hl.heartbeat()
	tel.health = hl
	fpObjs := loadFastPath(&dcfg, log)
	if fpObjs != nil {
		defer fpObjs.Close()
	}
	d, err := daemon.Open(dcfg, log)
	if err != nil {
		return err
	}
	defer d.Close()
	defer tel.Close() // no scrape may read the maps d.Close closes
	// "" when the bpffs was not usable: then nothing is pinned.
	dcfg.PinDir = d.PinDir()
	if err := tel.started(d, dcfg, af.stateDir, sd.exporterChanged); err != nil {
		return err
	}

	rm, err := routes.New(routes.Config{StateDir: af.stateDir, Log: log}, routes.NewKernel())
	if err != nil {
		return err
	}
	if err := rm.Start(ctx); err != nil {
		return err
	}
	// Routes withdrawn by an earlier run come back now if their link has
	// carrier again; links still down keep them withdrawn until it returns.
	if err := rm.Reconcile(nil); err != nil {
		log.Error("restoring routes withdrawn by an earlier run", "err", err)
	}

	// Scripts outlive ctx's cancellation only for the quit-time run.
	scripts := script.NewRunner(context.WithoutCancel(ctx), log, tel.metrics.ScriptResult)
	act := actions.New(log, cfg.get, tel.metrics.Routes(rm), scripts, monotime.Now)
	act.Done = tel.metrics.Reaction

	bk, err := bond.NewKernel()
	if err != nil {
		return err
	}
	defer bk.Close()
	pm := openPaths(first, dcfg, d, log)
	if pm != nil {
		tel.metrics.SetPaths(pm.Replies)
	}
	bopts := bond.Options{Kernel: bk, Log: log, Observer: tel.metrics, Settings: cfg.forBond,
		StateDir: af.stateDir, Now: func() int64 { return int64(monotime.Now()) }, Paths: pm != nil}
	var bonds *bond.Manager
	fp := startFastPath(fpObjs, d, dcfg, af.stateDir, tel, func(f bond.Failover) { bonds.FastFailover(f) }, log)
	if fp != nil {
		bopts.FastPath = fp
	}
	bonds = bond.NewManager(bopts)
	bctx, stopBonds := context.WithCancel(ctx)
	defer stopBonds()
	paths := startPaths(bctx, pm, cfg, bonds, log)
	defer paths.close()

	in := make(chan actions.Input, 4096)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); act.Run(ctx, in) }()
	go func() { defer wg.Done(); bonds.Run(bctx) }()
	if fp != nil {
		// Its exit clears every redirect before the programs go, and
		// then the pins go: the next start makes fresh maps.
		wg.Add(1)
		go func() {
			defer wg.Done()
			fp.Run(bctx)
			if dcfg.PinDir != "" {
				if err := fpObjs.Unpin(dcfg.PinDir); err != nil {
					log.Warn("removing the fast path's pins", "err", err)
				}
			}
		}()
	}
	links := newLinkNames()
	enqueue := func(x actions.Input) {
		select {
		case in <- x:
		default:
			// Never block the event loop; a full queue means the actors
			// are stuck, and the resync on the next change repairs it.
			log.Error("action queue full: event dropped", "ifname", x.Event.Ifname)
		}
	}
	releaseUnmonitored(rm, dcfg, enqueue, log)
	// send is for the event loop's goroutine, which owns links.
	send := func(x actions.Input) {
		x.Bond, x.Slave = links.bondOf(x.Event.Ifindex)
		enqueue(x)
	}
	rctx, stopReloads := context.WithCancel(ctx)
	rl := &reloader{af: af, flagIfaces: flagIfaces, live: cfg, setInterfaces: d.SetInterfaces, send: enqueue,
		refreshPaths: paths.refresh, pathsOn: pm != nil, observe: tel.metrics.ConfigReload, log: log,
		reloading: sd.reloading, reloaded: sd.reloaded}
	reloadsDone := make(chan struct{})
	go func() { defer close(reloadsDone); rl.run(rctx, hup) }()
	live := map[int]string{}
	err = d.Run(ctx, daemon.Handler{
		// Bonds first: their switch is the one a millisecond matters to.
		Carrier: func(_ context.Context, ev carrier.Event) {
			if fp != nil {
				fp.Carrier(ev)
			}
			bonds.Carrier(ev)
			send(actions.Input{Event: ev})
		},
		Ready:     sd.ready(in, d.Features(), func() int { return len(live) }),
		Heartbeat: heartbeats(sd.ping(in), hl.beat(in)),
		Update: func(_ context.Context, c registry.Change) {
			if c.Kind == registry.Updated && c.Link.Carrier && !c.Old.Carrier {
				enqueue(actions.Input{Event: carrier.Event{Ifindex: c.Link.Index, Ifname: c.Link.Name, Up: true}, CarrierBack: true})
			}
			links.update(c)
			bonds.Link(c)
			paths.link(c)
		},
		Link: func(_ context.Context, c registry.Change) {
			ev := carrier.Event{Ifindex: c.Link.Index, Ifname: c.Link.Name, Up: c.Link.Carrier, Source: carrier.SourceNetlink}
			if c.Released {
				// A rename moves its record to the new name (routes.renamed).
				delete(live, c.Link.Index)
				send(actions.Input{Event: ev, Released: true})
				return
			}
			if c.Kind == registry.Removed {
				delete(live, c.Link.Index)
				send(actions.Input{Event: ev, Removed: true})
				return
			}
			live[c.Link.Index] = c.Link.Name
			send(actions.Input{Event: ev, Initial: true})
		},
	})
	sd.stopping()
	// Run also returns on a start-up error, with ctx still live: closing
	// the queue and cancelling the bonds is what stops them then.
	stopReloads()
	<-reloadsDone // it sends to in
	close(in)
	stopBonds()
	wg.Wait()
	if cfg.get().RunScriptOnExit() {
		for idx, name := range live {
			s := cfg.get().For(name)
			if up, known := act.Effective(idx); s.Script != "" && known && up {
				scripts.Run(script.Job{Path: s.Script, Extra: s.ScriptExtra, Timeout: s.ScriptTimeout, Capabilities: s.ScriptCaps, Ifname: name, Up: false,
					Env: script.Env(idx, "exit", 0, "", "")}, "up")
			}
		}
	}
	scripts.Wait()
	return err
}

// releaseUnmonitored hands back what an earlier run withdrew from links
// this run does not monitor (a reload or a rename took them out of the
// set): nothing else would ever restore it.
func releaseUnmonitored(rm *routes.Manager, dcfg daemon.Config, enqueue func(actions.Input), log *slog.Logger) {
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
		if _, ok := held[l.Index]; ok && !daemon.Monitors(dcfg, l, names[l.MasterIndex]) {
			enqueue(actions.Input{Event: carrier.Event{Ifindex: l.Index, Ifname: l.Name, Up: l.Carrier}, Released: true})
		}
	}
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

// linkNames remembers, from the daemon's link updates, which bond each
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
	in     chan registry.Change
	done   chan struct{}
	cancel context.CancelFunc
	log    *slog.Logger
}

// openPaths opens the ARP path monitor when a bond has targets to probe.
func openPaths(cfg *config.Config, dcfg daemon.Config, d *daemon.Daemon, log *slog.Logger) *pathmon.Monitor {
	if !wantsPaths(cfg) {
		return nil
	}
	mon, err := pathmon.Open(pathmon.Options{PinDir: dcfg.PinDir, Mechanism: traffic.Mechanism(d.Features().TCMechanism), Log: log})
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
	p.mon, p.in, p.done = mon, make(chan registry.Change, 1024), make(chan struct{})
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
			case c := <-p.in:
				if err := p.sync.Link(c); err != nil {
					log.Warn("path monitor", "ifname", c.Link.Name, "err", err)
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
	case p.in <- c:
	default:
		p.log.Error("path monitor queue full: link change dropped", "ifname", c.Link.Name)
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

func (p *paths) close() {
	if p.mon == nil {
		return
	}
	p.cancel()
	<-p.done
	if err := p.mon.Close(); err != nil {
		p.log.Warn("closing the path monitor", "err", err)
	}
}

// loadFastPath loads the bond fast path's maps and programs and hands the
// maps to the carrier programs (dcfg); on failure it records why, for
// features, and returns nil.
func loadFastPath(dcfg *daemon.Config, log *slog.Logger) *fastpath.Objects {
	o, err := fastpath.Load(nil)
	if err != nil {
		dcfg.FastPathErr = err
		log.Error("bond fast path off: its programs do not load", "err", err)
		return nil
	}
	dcfg.FastPath = o.Shared()
	return o
}

// startFastPath makes the fast path's manager when the daemon found it can
// run (features); nil otherwise.
func startFastPath(o *fastpath.Objects, d *daemon.Daemon, dcfg daemon.Config, stateDir string, tel *telemetry, record func(bond.Failover), log *slog.Logger) *fastpath.Manager {
	if o == nil || d.Features().FastPath == "off" {
		return nil
	}
	if dcfg.PinDir != "" {
		if err := o.Pin(dcfg.PinDir); err != nil {
			log.Warn("fast path maps not pinned: bpftool and status cannot read them", "err", err)
		}
	}
	fp := fastpath.New(fastpath.Options{Objects: o, Mechanism: traffic.Mechanism(d.Features().TCMechanism), Log: log, StateDir: stateDir,
		Now: monotime.NowNS,
		Record: func(f bond.Failover) {
			record(f)
			tel.metrics.FastFailover(f)
		}})
	tel.metrics.SetFastPath(metrics.FastPathInfo{Stats: o.FpSlaveStats, Redirects: o.FpRedirects, Status: fp.Status})
	return fp
}
