// Package metrics is linkbeat's Prometheus exporter.
//
// Two kinds of metrics, kept apart so that a scrape never holds up the
// event path:
//
//   - Event-path metrics (carrier changes, reaction latency, route
//     withdrawals, script runs, resyncs, bond failovers) are client_golang
//     counters and histograms, updated with atomic operations. Their
//     children are cached in sync.Maps and created ahead, when a link is
//     first seen, so the event path takes no lock a scrape holds.
//   - Scrape-time metrics are read by node_exporter-style collectors
//     (collector.go) when Prometheus asks: the BPF counter map, a netlink
//     dump for bonds and bridges, and snapshots the event path publishes
//     through atomic pointers (withdrawn routes, the daemon's features).
//
// Parsing is kept apart from I/O: every collector turns plain values into
// metrics with a pure function, tested on fixtures.
package metrics

import (
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"

	"github.com/linkbeat/linkbeat/internal/actions"
	"github.com/linkbeat/linkbeat/internal/bond"
	"github.com/linkbeat/linkbeat/internal/buildinfo"
	"github.com/linkbeat/linkbeat/internal/carrier"
	"github.com/linkbeat/linkbeat/internal/monotime"
	"github.com/linkbeat/linkbeat/internal/pathmon"
	"github.com/linkbeat/linkbeat/internal/policy"
	"github.com/linkbeat/linkbeat/internal/registry"
	"github.com/linkbeat/linkbeat/internal/routes"
	"github.com/linkbeat/linkbeat/internal/script"
)

const namespace = "linkbeat"

// Buckets of the failover-duration histogram: 50µs to 1s.
var FailoverBuckets = []float64{50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3, 1}

// Buckets of the reaction-latency histogram: 10µs to 5s (a netlink-only
// host with linkwatch's one-second hold lands in the upper ones).
var ReactionBuckets = []float64{10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3, 1, 2.5, 5}

// ResyncReasons are the reasons the daemon resyncs for; each series exists
// from the start, at 0.
var ResyncReasons = []string{"start", "netlink_overflow", "counter_gap", "ringbuf_drop"}

// DaemonInfo is what the daemon found at start, published once it opened.
type DaemonInfo struct {
	CarrierSource string
	TCMechanism   string
	Tracepoints   bool
	// Counters is the BPF counter map, read at each scrape; nil when
	// traffic counting is off.
	Counters *ebpf.Map
	// Replaced are the pinned maps replaced at start (layout changed).
	Replaced map[string]string
	// Pinned are the names of the maps that are pinned.
	Pinned []string
}

// Metrics holds every linkbeat metric. Its methods are safe for concurrent
// use; the event-path ones never block.
type Metrics struct {
	reg    *prometheus.Registry
	gather *sharedGather

	carrierState   *gaugeCache
	carrierChanges *counterCache
	reaction       *histogramCache
	withdrawals    *counterCache
	restores       *counterCache
	scriptRuns     *counterCache
	scriptTimeouts *counterCache
	resyncs        *counterCache
	failovers      *counterCache
	failoverDur    *histogramCache
	declined       *counterCache
	fastFailovers  *counterCache
	fastFirst      *histogramCache
	fastPath       atomic.Pointer[FastPathInfo]
	ringDrops      atomic.Uint64
	reloads        *counterCache
	reloadOK       prometheus.Gauge
	reloadTime     prometheus.Gauge
	listenUp       *gaugeCache
	listenFailures *counterCache

	daemon    atomic.Pointer[DaemonInfo]
	withdrawn atomic.Pointer[map[string]int]
	paths     atomic.Pointer[func() ([]pathmon.Reply, error)]
}

// Options are the sources of the scrape-time collectors; zero values are
// the real ones (tests give fixtures).
type Options struct {
	// Dump lists the links (registry.Dump).
	Dump func() ([]registry.Link, error)
	// Now is the wall clock and Monotonic CLOCK_MONOTONIC, for turning BPF
	// timestamps into Unix times.
	Now       func() time.Time
	Monotonic func() time.Duration
	// Log gets collector failures (nil: discarded).
	Log *slog.Logger
}

// New builds the metrics and a registry holding them, with the Go runtime
// and process collectors.
func New(opts Options) *Metrics {
	if opts.Dump == nil {
		opts.Dump = registry.Dump
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Monotonic == nil {
		opts.Monotonic = monotime.Now
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.gather = &sharedGather{g: m.reg}
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Name: "goroutines",
		Help: "Goroutines as this scrape began. go_goroutines also counts the scrape's own collect workers, whose number varies with CPU load; this does not, so a leak shows as a step."},
		func() float64 { return float64(m.gather.before.Load()) }))
	m.registerEvents()
	m.registerBonds()
	m.registerReloads(opts.Now())
	m.registerWeb()
	m.reg.MustRegister(newExporter(m, opts))
	m.reg.MustRegister(collectors.NewGoCollector(), &cachedCollector{
		c: collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), now: opts.Now, maxAge: processMaxAge})
	// linkbeat_build_info as every Prometheus exporter has it; the version
	// label is the one the Makefile stamps into buildinfo, not common/version's.
	m.reg.MustRegister(versioncollector.NewCollector(namespace, versioncollector.WithExtraConstLabels(
		prometheus.Labels{"version": buildinfo.Version, "revision": buildinfo.Revision()})))
	return m
}

// counter registers a counter vector and hands out its children.
func (m *Metrics) counter(name, help string, labels ...string) *counterCache {
	v := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help}, labels)
	m.reg.MustRegister(v)
	return newCache(v, v.WithLabelValues, v.DeleteLabelValues)
}

// registerEvents registers what the event source and the actions report:
// carrier, routes, scripts, resyncs, reaction times.
func (m *Metrics) registerEvents() {
	m.carrierChanges = m.counter("interface_carrier_changes_total", "Carrier changes of a monitored interface, by direction (up, down).", "interface", "direction")
	m.withdrawals = m.counter("route_withdrawals_total", "Routes and nexthop objects withdrawn because the interface lost carrier.", "interface")
	m.restores = m.counter("route_restores_total", "Withdrawn routes and nexthop objects restored because the interface's carrier returned.", "interface")
	m.scriptRuns = m.counter("script_runs_total", "Action script runs, by interface, action (up, down) and result (success, failure, timeout, error).", "interface", "action", "result")
	m.scriptTimeouts = m.counter("script_timeouts_total", "Action script runs killed because they outlived their timeout.", "interface")
	m.resyncs = m.counter("resyncs_total", "Full netlink resyncs, by reason (start, netlink_overflow, counter_gap, ringbuf_drop).", "reason")
	gauge := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: "interface_carrier",
		Help: "Carrier of a monitored interface as linkbeat last saw it: 1 carrier, 0 none."}, []string{"interface"})
	m.reg.MustRegister(gauge)
	m.carrierState = newCache(gauge, gauge.WithLabelValues, gauge.DeleteLabelValues)
	reaction := prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "reaction_latency_seconds",
		Help:    "Time from the kernel's carrier event to linkbeat's route change being done, by carrier source.",
		Buckets: ReactionBuckets}, []string{"source"})
	m.reg.MustRegister(reaction)
	m.reaction = newCache(reaction, reaction.WithLabelValues, reaction.DeleteLabelValues)
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: namespace, Name: "ringbuf_drops_total",
		Help: "Carrier events the BPF ring buffer could not queue (each leads to a resync)."},
		func() float64 { return float64(m.ringDrops.Load()) }))
	for _, r := range ResyncReasons {
		m.resyncs.with(r)
	}
}

// registerBonds registers what the bond manager and the fast path report.
func (m *Metrics) registerBonds() {
	m.failovers = m.counter("bond_failovers_total", "Changes of a bond's active slave, by reason (carrier, path, primary, bond, no_active).", "bond", "reason")
	m.declined = m.counter("bond_failovers_declined_total", "Switches linkbeat wanted but left to the bond, by reason.", "bond", "reason")
	m.fastFailovers = m.counter("bond_fast_failovers_total", "Failovers the bond fast path redirected at least one frame for.", "bond")
	fastFirst := prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "bond_fast_failover_first_redirect_seconds",
		Help:    "Time from the driver's netif_carrier_off call to the fast path's first redirected frame (BPF timestamps).",
		Buckets: FailoverBuckets}, []string{"bond"})
	m.reg.MustRegister(fastFirst)
	m.fastFirst = newCache(fastFirst, fastFirst.WithLabelValues, fastFirst.DeleteLabelValues)
	failoverDur := prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "bond_failover_duration_seconds",
		Help:    "Time from the kernel's carrier event to a bond's switch of active slave being confirmed.",
		Buckets: FailoverBuckets}, []string{"bond"})
	m.reg.MustRegister(failoverDur)
	m.failoverDur = newCache(failoverDur, failoverDur.WithLabelValues, failoverDur.DeleteLabelValues)
}

// registerReloads registers the config reload metrics; the start counts
// as a load applied at now.
func (m *Metrics) registerReloads(now time.Time) {
	m.reloads = m.counter("config_reloads_total", "Config reloads (SIGHUP), by result (success, failure).", "result")
	m.reloads.with("success")
	m.reloads.with("failure")
	m.reloadOK = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: "config_last_reload_successful",
		Help: "1 if the last config reload was applied, 0 if it was refused and the previous config is still in force."})
	m.reloadTime = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: "config_last_reload_success_timestamp_seconds",
		Help: "Unix time of the last config load that was applied (the start counts)."})
	m.reloadOK.Set(1)
	m.reloadTime.Set(float64(now.UnixNano()) / 1e9)
	m.reg.MustRegister(m.reloadOK, m.reloadTime)
}

// registerWeb registers the exporter's own listener metrics.
func (m *Metrics) registerWeb() {
	m.listenFailures = m.counter("web_listen_failures_total", "Failed attempts to listen on a --web.listen-address (each is retried with backoff; failover runs on).", "address")
	up := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: "web_listen_up",
		Help: "Whether the exporter listens on a --web.listen-address: 1 yes, 0 no (binding it failed; retried). Seen only through an address that does listen."}, []string{"address"})
	m.reg.MustRegister(up)
	m.listenUp = newCache(up, up.WithLabelValues, up.DeleteLabelValues)
}

// Registry holds the metrics; the HTTP handler registers its own in it.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Gatherer is what the HTTP handler serves: the registry, with concurrent
// scrapes sharing one gather.
func (m *Metrics) Gatherer() prometheus.Gatherer { return m.gather }

// SetDaemon publishes what the daemon found at start.
func (m *Metrics) SetDaemon(info DaemonInfo) { m.daemon.Store(&info) }

// Carrier counts a carrier change (source.Observer).
func (m *Metrics) Carrier(ev carrier.Event) {
	dir, v := "down", 0.0
	if ev.Up {
		dir, v = "up", 1
	}
	m.carrierChanges.with(ev.Ifname, dir).Inc()
	m.carrierState.with(ev.Ifname).Set(v)
}

// Link records a monitored link's first sight, and creates its series
// ahead of its first event; a removed link's series go (source.Observer).
func (m *Metrics) Link(c registry.Change) {
	name := c.Link.Name
	if c.Kind == registry.Removed {
		m.carrierState.delete(name)
		for _, dir := range []string{"up", "down"} {
			m.carrierChanges.delete(name, dir)
		}
		return
	}
	v := 0.0
	if c.Link.Carrier {
		v = 1
	}
	m.carrierState.with(name).Set(v)
	for _, dir := range []string{"up", "down"} {
		m.carrierChanges.with(name, dir)
	}
	m.withdrawals.with(name)
	m.restores.with(name)
}

// ConfigReload records a reload's outcome: applied (ok) or refused.
func (m *Metrics) ConfigReload(ok bool, at time.Time) {
	if !ok {
		m.reloads.with("failure").Inc()
		m.reloadOK.Set(0)
		return
	}
	m.reloads.with("success").Inc()
	m.reloadOK.Set(1)
	m.reloadTime.Set(float64(at.UnixNano()) / 1e9)
}

// WebListen records the state of a --web.listen-address: listening or
// not; failed counts a failed attempt to listen.
func (m *Metrics) WebListen(address string, listening, failed bool) {
	v := 0.0
	if listening {
		v = 1
	}
	m.listenUp.with(address).Set(v)
	c := m.listenFailures.with(address)
	if failed {
		c.Inc()
	}
}

// Resync counts a full netlink resync (source.Observer).
func (m *Metrics) Resync(reason string) { m.resyncs.with(reason).Inc() }

// RingbufDrops takes the ring buffer's drop counter (source.Observer).
func (m *Metrics) RingbufDrops(total uint64) { m.ringDrops.Store(total) }

// Reaction records the time from the kernel event to the route change
// being done (actions.Observer). Decisions without a kernel event
// (a link's first sight) have no latency and are not recorded.
func (m *Metrics) Reaction(d policy.Decision, latency time.Duration) {
	if latency <= 0 || d.Event.Time == 0 {
		return
	}
	m.reaction.with(d.Event.Source.String()).Observe(latency.Seconds())
}

// ScriptResult counts an action script run (script.Runner's onResult).
func (m *Metrics) ScriptResult(r script.Result) {
	action := "down"
	if r.Job.Up {
		action = "up"
	}
	m.scriptRuns.with(r.Job.Ifname, action, r.Outcome).Inc()
	if r.Outcome == "timeout" {
		m.scriptTimeouts.with(r.Job.Ifname).Inc()
	}
}

// Failover counts a bond's change of active slave and its duration
// (bond.Observer).
func (m *Metrics) Failover(f bond.Failover) {
	m.failovers.with(f.Bond, f.Reason).Inc()
	if f.Duration > 0 {
		m.failoverDur.with(f.Bond).Observe(f.Duration.Seconds())
	}
}

// FastFailover counts a fast-path failover and the time to its first
// redirected frame.
func (m *Metrics) FastFailover(f bond.Failover) {
	m.fastFailovers.with(f.Bond).Inc()
	m.fastFirst.with(f.Bond).Observe(f.Duration.Seconds())
}

// Declined counts a switch left to the bond (bond.Observer).
func (m *Metrics) Declined(d bond.Declined) { m.declined.with(d.Bond, d.Reason).Inc() }

var _ bond.Observer = (*Metrics)(nil)

// SetWithdrawn publishes the routes withdrawn now, per interface. An
// interface that had some keeps its series, at 0. Callers take turns (the
// actions goroutine, and the start before it).
func (m *Metrics) SetWithdrawn(w map[string]int) {
	cur := make(map[string]int, len(w))
	if prev := m.withdrawn.Load(); prev != nil {
		for k := range *prev {
			cur[k] = 0
		}
	}
	for k, v := range w {
		cur[k] = v
	}
	m.withdrawn.Store(&cur)
}

// RouteChange counts what a route change did and follows the
// withdrawn-now snapshot (actions.Observer).
func (m *Metrics) RouteChange(op, ifname string, res routes.Result, withdrawn map[string]int) {
	switch op {
	case actions.OpDown:
		m.withdrawals.with(ifname).Add(float64(res.Withdrawn))
	case actions.OpUp, actions.OpRelease:
		m.restores.with(ifname).Add(float64(res.Restored))
	}
	m.SetWithdrawn(withdrawn)
}

var _ actions.Observer = (*Metrics)(nil)

// cache hands out a vector's children from a sync.Map, so that the event
// path reaches an existing child without the vector's lock, which a scrape
// holds while it collects.
type cache[T any] struct {
	vec prometheus.Collector
	get func(lvs ...string) T
	del func(lvs ...string) bool
	m   sync.Map
}

func newCache[T any](vec prometheus.Collector, get func(lvs ...string) T, del func(lvs ...string) bool) *cache[T] {
	return &cache[T]{vec: vec, get: get, del: del}
}

func (c *cache[T]) with(lvs ...string) T {
	key := strings.Join(lvs, "\xff")
	if v, ok := c.m.Load(key); ok {
		return v.(T)
	}
	v, _ := c.m.LoadOrStore(key, c.get(lvs...))
	return v.(T)
}

func (c *cache[T]) delete(lvs ...string) {
	c.m.Delete(strings.Join(lvs, "\xff"))
	c.del(lvs...)
}

type (
	counterCache   = cache[prometheus.Counter]
	gaugeCache     = cache[prometheus.Gauge]
	histogramCache = cache[prometheus.Observer]
)
