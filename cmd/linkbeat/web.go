package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/exporter-toolkit/web"

	"github.com/linkbeat/linkbeat/internal/buildinfo"
	"github.com/linkbeat/linkbeat/internal/metrics"
	"github.com/linkbeat/linkbeat/internal/probe"
	"github.com/linkbeat/linkbeat/internal/source"
	"github.com/linkbeat/linkbeat/internal/status"
	"github.com/linkbeat/linkbeat/internal/traffic"
)

// defaultListenAddress is loopback only: the metrics say which links are
// down and what was withdrawn, which is not for the whole network unless
// the operator says so. Port 9089: Prometheus' registry of default exporter
// ports (its wiki's "Default port allocations") has allocated every port of
// 9100-9999, and 9090-9094 are Prometheus, the Pushgateway and the
// Alertmanager; 9089 is neither, and IANA has no service on it.
const defaultListenAddress = "127.0.0.1:9089"

// opsFlags are `run`'s flags for the exporter and the pins.
type opsFlags struct {
	listen        []string
	webConfig     string
	telemetryPath string
	releaseOnExit bool
	failOnBind    bool
}

func (o *opsFlags) register(cmd *kingpin.CmdClause) {
	cmd.Flag("web.listen-address", "Address to serve metrics on; repeat for several. Default: loopback only.").
		Default(defaultListenAddress).StringsVar(&o.listen)
	cmd.Flag("web.config.file", "exporter-toolkit web config file: TLS and basic auth (https://github.com/prometheus/exporter-toolkit/blob/master/docs/web-configuration.md).").
		StringVar(&o.webConfig)
	cmd.Flag("web.telemetry-path", "Path to serve metrics under.").Default("/metrics").StringVar(&o.telemetryPath)
	cmd.Flag("web.fail-on-bind-error", "Exit at start when a --web.listen-address cannot be bound; by default linkbeat runs on without it and retries the bind (1s to 30s apart).").
		BoolVar(&o.failOnBind)
	cmd.Flag("release-on-exit", "Detach the TC and tracepoint programs when the daemon exits cleanly; by default they stay attached and count on until the next run.").
		BoolVar(&o.releaseOnExit)
}

// exporterChecks are `features`' rows for a running daemon's metrics
// listeners, from what it recorded in stateDir: none without one.
func exporterChecks(stateDir string, log *slog.Logger) []probe.Check {
	src, err := status.ReadSources(stateDir)
	if err == nil && (src == nil || !linkbeatRunning(src.PID)) {
		return nil
	}
	var e *status.Exporter
	if err == nil {
		e, err = status.ReadExporter(stateDir)
	}
	if err != nil {
		log.Warn("cannot read the running daemon's exporter state", "state_dir", stateDir, "err", err)
		return []probe.Check{{Name: "exporter", Detail: "unknown: " + err.Error()}}
	}
	if e == nil || e.PID != src.PID {
		return nil // a daemon from before exporter.json
	}
	out := make([]probe.Check, 0, len(e.Listeners))
	for _, l := range e.Listeners {
		out = append(out, probe.Check{Name: "exporter", OK: l.Listening, Detail: l.Describe()})
	}
	return out
}

// telemetry is `run`'s exporter: the metrics and their web servers, one
// a listen address, each kept listening by its own goroutine.
type telemetry struct {
	log     *slog.Logger
	flags   *opsFlags
	metrics *metrics.Metrics
	book    *listenBook
	// first are the listeners bound at start, by address; nil where the
	// bind failed. The serve loops take them over.
	first []net.Listener

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	// servers are the ones serving now; closing refuses new ones.
	servers map[*http.Server]struct{}
	closing bool
	handler http.Handler
	health  http.Handler // health.go: set before started
	closed  sync.Once
}

// newTelemetry checks the web config and binds the listen addresses. A bad
// config stops `run` before it touches anything; so does an address that
// cannot be bound, with --web.fail-on-bind-error only.
func newTelemetry(o *opsFlags, log *slog.Logger) (*telemetry, error) {
	if o.telemetryPath == "" || o.telemetryPath[0] != '/' {
		return nil, fmt.Errorf("--web.telemetry-path %q: want a path starting with /", o.telemetryPath)
	}
	if o.webConfig != "" {
		if err := web.Validate(o.webConfig); err != nil {
			return nil, fmt.Errorf("--web.config.file %s: %w", o.webConfig, err)
		}
	}
	m := metrics.New(metrics.Options{Log: log})
	log = log.With("component", "web")
	t := &telemetry{log: log, flags: o, metrics: m, book: newListenBook(o.listen, m, log), servers: map[*http.Server]struct{}{}}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	var err error
	if t.first, err = listenAll(o.listen, t.book, o.failOnBind); err != nil {
		t.cancel()
		return nil, err
	}
	return t, nil
}

// started publishes what the daemon found, records it in the state
// directory for `linkbeat status`, and starts serving. notify hears of
// each change of the listeners (systemd's STATUS=).
func (t *telemetry) started(d *source.Source, pinDir, stateDir string, notify func([]status.Listener)) error {
	f := d.Features()
	info := metrics.DaemonInfo{CarrierSource: f.CarrierSource.String(), TCMechanism: f.TCMechanism, Tracepoints: f.Tracepoints,
		Counters: d.TrafficMap(), Replaced: d.ReplacedMaps()}
	if pinDir != "" && info.Counters != nil {
		info.Pinned = []string{traffic.MapCounters, traffic.MapLinkState}
	}
	t.metrics.SetDaemon(info)
	err := status.WriteSources(stateDir, status.Sources{PID: os.Getpid(), Started: time.Now(), Version: buildinfo.Version,
		CarrierSource: info.CarrierSource, TCMechanism: info.TCMechanism, Tracepoints: info.Tracepoints, BpffsDir: pinDir,
		ReplacedMaps: info.Replaced})
	if err != nil {
		// status then shows an older run's sources: say so, but keep
		// failing over.
		t.log.Warn("cannot record the live sources for `linkbeat status`", "err", err)
	}
	t.book.started(stateDir, notify)
	t.serve()
	return nil
}

func (t *telemetry) serve() {
	mux := http.NewServeMux()
	reg := t.metrics.Registry()
	// Inside the instrumentation, so that every request is counted.
	mux.Handle(t.flags.telemetryPath, promhttp.InstrumentMetricHandler(reg, metrics.ShareResponses(promhttp.HandlerFor(t.metrics.Gatherer(), promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(t.log.Handler(), slog.LevelError), Registry: reg, ErrorHandling: promhttp.ContinueOnError,
	}))))
	if t.health != nil {
		mux.Handle(healthPath, t.health)
	}
	if t.flags.telemetryPath != "/" {
		landing, err := web.NewLandingPage(web.LandingConfig{Name: "linkbeat", Description: "eBPF-accelerated link monitor",
			Version: buildinfo.Version, Links: []web.LandingLinks{{Address: t.flags.telemetryPath, Text: "Metrics"}}})
		if err == nil {
			mux.Handle("/", landing)
		}
	}
	t.handler = mux
	first := t.first
	t.first = nil
	for i, addr := range t.flags.listen {
		t.wg.Add(1)
		go t.keep(i, addr, first[i])
	}
}

// keep serves address i for the daemon's life: it binds it again, with
// backoff, whenever it is not bound (l nil) or its server stopped.
func (t *telemetry) keep(i int, addr string, l net.Listener) {
	defer t.wg.Done()
	wait := listenRetryMin
	if l == nil {
		// The bind at start failed: retry when that failure said.
		if !t.sleep(t.book.untilRetry(i)) {
			return
		}
		wait = nextRetry(wait)
	}
	for {
		if l == nil {
			var err error
			if l, err = net.Listen("tcp", addr); err != nil {
				t.book.failed(i, err, wait)
				if !t.sleep(wait) {
					return
				}
				wait = nextRetry(wait)
				continue
			}
			t.book.listening(i)
		}
		began := time.Now()
		err := t.serveOn(l)
		l = nil
		if t.ctx.Err() != nil {
			return
		}
		if time.Since(began) >= listenRetryMax {
			wait = listenRetryMin // it served a while: not a failing loop
		}
		t.book.failed(i, fmt.Errorf("metrics server on %s stopped: %w", addr, err), wait)
		if !t.sleep(wait) {
			return
		}
		wait = nextRetry(wait)
	}
}

// sleep waits d, or less if Close comes; false then.
func (t *telemetry) sleep(d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-t.ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

// serveOn serves l until Close or a failure. Each listener gets its own
// http.Server: web.Serve wraps the server's handler for the web config.
func (t *telemetry) serveOn(l net.Listener) error {
	defer l.Close()
	srv := &http.Server{Handler: t.handler, ReadHeaderTimeout: 10 * time.Second}
	t.mu.Lock()
	if t.closing {
		t.mu.Unlock()
		return http.ErrServerClosed
	}
	t.servers[srv] = struct{}{}
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		delete(t.servers, srv)
		t.mu.Unlock()
	}()
	sd := false
	flags := &web.FlagConfig{WebListenAddresses: &t.flags.listen, WebSystemdSocket: &sd, WebConfigFile: &t.flags.webConfig}
	return web.Serve(l, srv, flags, t.log)
}

// Close stops serving and retrying; listeners never served are closed.
// It may be called more than once.
func (t *telemetry) Close() { t.closed.Do(t.close) }

func (t *telemetry) close() {
	t.cancel()
	for _, l := range t.first {
		if l != nil {
			l.Close()
		}
	}
	t.mu.Lock()
	t.closing = true
	servers := make([]*http.Server, 0, len(t.servers))
	for srv := range t.servers {
		servers = append(servers, srv)
	}
	t.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, srv := range servers {
		if err := srv.Shutdown(ctx); err != nil {
			t.log.Warn("stopping the metrics server", "err", err)
		}
	}
	t.wg.Wait()
}
