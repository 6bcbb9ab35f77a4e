// Package actions is where decisions become changes to the system: it runs
// the policy over the event stream and calls the actors (routes, scripts)
// in order, routes first, so the fast path never waits on a script.
package actions

import (
	"context"
	"log/slog"
	"time"

	"github.com/linkbeat/linkbeat/internal/carrier"
	"github.com/linkbeat/linkbeat/internal/config"
	"github.com/linkbeat/linkbeat/internal/policy"
	"github.com/linkbeat/linkbeat/internal/routes"
	"github.com/linkbeat/linkbeat/internal/script"
)

// Routes is the route actor (routes.Manager), as the actions need it.
type Routes interface {
	LinkDown(ifindex int, ifname string) (routes.Result, error)
	LinkUp(ifindex int, ifname string) (routes.Result, error)
	Release(ifindex int, ifname string) (routes.Result, error)
	Forget(ifindex int) error
	// Withdrawn counts the routes held withdrawn now, by interface.
	Withdrawn() map[string]int
	// Holds says whether the record holds something of the link.
	Holds(ifindex int) bool
}

// Route operations, as Observer.RouteChange names them.
const (
	OpDown    = "down"
	OpUp      = "up"
	OpRelease = "release"
	OpForget  = "forget"
)

// Observer hears what the actions carried out, for metrics. Its methods
// are called from the actions' goroutine and must not block.
type Observer interface {
	// RouteChange gets each call to the route actor (op: OpDown, OpUp,
	// OpRelease, OpForget), what it did, and what it holds withdrawn
	// after it, by interface.
	RouteChange(op, ifname string, res routes.Result, withdrawn map[string]int)
	// Reaction gets each decision carried out, with the time from the
	// kernel event to the end of its route change.
	Reaction(d policy.Decision, latency time.Duration)
}

// Scripts is the script actor.
type Scripts interface {
	Submit(script.Job)
}

// Kind says what an Input is.
type Kind uint8

const (
	// Carrier is a monitored link's carrier change, ordered by the
	// event source.
	Carrier Kind = iota
	// Initial is the carrier of a link seen for the first time, or
	// monitored again.
	Initial
	// Removed is a monitored link gone.
	Removed
	// Released is a link that still exists but is no longer monitored.
	Released
	// Reload is a config reload; it carries no event.
	Reload
	// Unmonitored is the carrier change of a link outside the monitored
	// set, ordered by the event source: a released link whose nexthop
	// objects had to wait for carrier gets them back.
	Unmonitored
	// Barrier carries only its Barrier function.
	Barrier
)

var kindNames = [...]string{"carrier", "initial", "removed", "released", "reload", "unmonitored", "barrier"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "unknown"
}

// Input is one thing the daemon tells the actions.
type Input struct {
	Kind  Kind
	Event carrier.Event
	// Bond and Slave name the bond an event's link belongs to (or is)
	// and the slave concerned, for the scripts' LINKBEAT_BOND and
	// LINKBEAT_SLAVE.
	Bond, Slave string
	// Barrier (Kind Barrier) is called once every input queued before it
	// has been carried out (systemd's READY and the liveness ticks, see
	// internal/agent).
	Barrier func()
}

// Actions owns the policy; one goroutine runs it.
type Actions struct {
	log     *slog.Logger
	cfg     func() *config.Config
	policy  *policy.Policy
	routes  Routes
	scripts Scripts
	now     func() time.Time
	mono    func() time.Duration
	obs     Observer
}

// New builds the actions. cfg is read at each decision, so a reload takes
// effect on the next event. routes, scripts or obs may be nil (off).
func New(log *slog.Logger, cfg func() *config.Config, routes Routes, scripts Scripts, monotonic func() time.Duration, obs Observer) *Actions {
	a := &Actions{log: log, cfg: cfg, routes: routes, scripts: scripts, now: time.Now, mono: monotonic, obs: obs}
	a.policy = policy.New(func(ifname string) policy.Rules { return cfg().For(ifname).Rules })
	return a
}

// Run consumes inputs until ctx ends or in is closed.
func (a *Actions) Run(ctx context.Context, in <-chan Input) {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case x, ok := <-in:
			if !ok {
				return
			}
			a.Handle(x)
		case <-timer.C:
			a.apply(a.policy.Tick(a.now()))
		}
		if next, ok := a.policy.NextDeadline(); ok {
			timer.Reset(max(time.Until(next), 0))
		}
	}
}

// Handle takes one input synchronously.
func (a *Actions) Handle(x Input) {
	switch x.Kind {
	case Barrier:
		x.Barrier()
		return
	case Reload:
		a.reapply()
		return
	case Carrier, Unmonitored:
		// A link whose routes wait for its carrier gets them back on the
		// carrier's return; the policy watches only monitored links.
		if x.Event.Up && a.waits(x) {
			a.release(x.Event.Ifindex, x.Event.Ifname, "carrier back")
		}
		if x.Kind == Unmonitored {
			return
		}
	}
	// The membership travels with the event to its decisions, delayed
	// ones too: the policy keeps it with the link's last event.
	m := policy.Membership{Bond: x.Bond, Slave: x.Slave}
	switch x.Kind {
	case Removed, Released:
		a.forget(x)
	case Initial:
		// Monitored again: the policy decides its routes from now on.
		a.apply(a.policy.Initial(x.Event, m))
	default:
		a.apply(a.policy.Event(x.Event, m, a.now()))
	}
}

// forget drops a link the actions no longer watch: a released one gets
// its routes back, a removed one took them with it.
// waits says whether a link's routes wait for its carrier: the record
// holds some (a release left nexthop objects the kernel refused without
// carrier), and no policy decides them: the link is not monitored, or its
// config keeps its routes (a reload released them). The record is the
// one owner of what is withdrawn; the actions keep no list of their own.
func (a *Actions) waits(x Input) bool {
	if a.routes == nil || (x.Kind == Carrier && a.cfg().For(x.Event.Ifname).WithdrawRoutes) {
		return false
	}
	return a.routes.Holds(x.Event.Ifindex)
}

func (a *Actions) forget(x Input) {
	a.policy.Forget(x.Event.Ifindex)
	if a.routes == nil {
		return
	}
	if x.Kind == Released {
		a.release(x.Event.Ifindex, x.Event.Ifname, "no longer monitored")
		return
	}
	// Gone: what it had withdrawn went with it.
	if _, err := a.route(OpForget, x.Event.Ifindex, x.Event.Ifname); err != nil {
		a.log.Error("forgetting the routes of a removed link", "ifname", x.Event.Ifname, "err", err)
	}
}

// reapply brings the links treated as down in line with a reloaded
// config: routes withdrawn where they now should be, back where the config
// now keeps them. Delays and dampening apply from the next event.
func (a *Actions) reapply() {
	if a.routes == nil {
		return
	}
	for _, ev := range a.policy.Down() {
		if a.cfg().For(ev.Ifname).WithdrawRoutes {
			res, err := a.route(OpDown, ev.Ifindex, ev.Ifname)
			if err != nil {
				a.log.Error("route change failed", "ifname", ev.Ifname, "state", "down", "reason", "reload", "err", err)
			} else if res.Withdrawn > 0 {
				a.log.Info("routes withdrawn after reload", "ifname", ev.Ifname, "routes", res.Withdrawn)
			}
			continue
		}
		a.release(ev.Ifindex, ev.Ifname, "config keeps its routes")
	}
}

// release puts back whatever is withdrawn for a link linkbeat no longer
// acts on, carrier or not.
func (a *Actions) release(ifindex int, ifname, why string) {
	res, err := a.route(OpRelease, ifindex, ifname)
	if err != nil {
		a.log.Error("cannot restore the routes of a released link", "ifname", ifname, "why", why, "err", err)
	}
	if res.NoCarrier {
		a.log.Info("nexthop objects of a released link wait for its carrier", "ifname", ifname, "waiting", res.Skipped)
	}
	if res.Restored > 0 {
		a.log.Info("routes restored", "ifname", ifname, "why", why, "routes", res.Restored)
	}
}

func (a *Actions) apply(ds []policy.Decision) {
	for _, d := range ds {
		a.carryOut(d)
	}
}

func (a *Actions) carryOut(d policy.Decision) {
	s := a.cfg().For(d.Ifname)
	// The link's attributes are added when a line is written, not with a
	// logger of its own made before the routes change.
	attrs := []any{"ifname", d.Ifname, "ifindex", d.Ifindex, "reason", d.Reason}
	log := func(level slog.Level, msg string, args ...any) {
		a.log.Log(context.Background(), level, msg, append(attrs, args...)...)
	}
	state := "down"
	if d.Up {
		state = "up"
	}
	n := 0
	// Up always restores (a no-op when nothing is withdrawn): routes
	// withdrawn under an older config must come back.
	if a.routes != nil && (s.WithdrawRoutes || d.Up) {
		op := OpDown
		if d.Up {
			op = OpUp
		}
		res, err := a.route(op, d.Ifindex, d.Ifname)
		n = res.Withdrawn + res.Restored
		if err != nil {
			log(slog.LevelError, "route change failed", "state", state, "err", err)
		}
		if res.NoCarrier {
			log(slog.LevelInfo, "carrier gone again: routes stay withdrawn")
		}
	}
	var latency time.Duration
	if d.Event.Time > 0 && a.mono != nil {
		latency = a.mono() - d.Event.Time
	}
	log(slog.LevelInfo, "link "+state, "routes", n, "source", d.Event.Source, "latency", latency)
	if a.obs != nil {
		a.obs.Reaction(d, latency)
	}
	if a.scripts != nil && s.Script != "" {
		a.scripts.Submit(script.Job{
			Path: s.Script, Extra: s.ScriptExtra, Timeout: s.ScriptTimeout, Capabilities: s.ScriptCaps, Ifname: d.Ifname, Up: d.Up,
			Env: script.Env(d.Ifindex, d.Event.Source.String(), int64(d.Event.Time), d.Bond, d.Slave),
		})
	}
}

// route calls the route actor and tells the observer what it did.
func (a *Actions) route(op string, ifindex int, ifname string) (routes.Result, error) {
	var (
		res routes.Result
		err error
	)
	switch op {
	case OpDown:
		res, err = a.routes.LinkDown(ifindex, ifname)
	case OpUp:
		res, err = a.routes.LinkUp(ifindex, ifname)
	case OpRelease:
		res, err = a.routes.Release(ifindex, ifname)
	case OpForget:
		err = a.routes.Forget(ifindex)
	}
	if a.obs != nil {
		a.obs.RouteChange(op, ifname, res, a.routes.Withdrawn())
	}
	return res, err
}

// Effective says how a link is treated now.
func (a *Actions) Effective(ifindex int) (up, known bool) { return a.policy.Effective(ifindex) }

// Up lists the last event of each link treated as up now, by ifindex:
// the monitored links whose quit-time script is due. Call it only once
// Run has returned (or from the goroutine that calls Handle).
func (a *Actions) Up() []carrier.Event { return a.policy.Up() }
