package main

import (
	"context"
	"errors"
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
	"github.com/linkbeat/linkbeat/internal/daemon"
	"github.com/linkbeat/linkbeat/internal/metrics"
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
}

func (o *opsFlags) register(cmd *kingpin.CmdClause) {
	cmd.Flag("web.listen-address", "Address to serve metrics on; repeat for several. Default: loopback only.").
		Default(defaultListenAddress).StringsVar(&o.listen)
	cmd.Flag("web.config.file", "exporter-toolkit web config file: TLS and basic auth (https://github.com/prometheus/exporter-toolkit/blob/master/docs/web-configuration.md).").
		StringVar(&o.webConfig)
	cmd.Flag("web.telemetry-path", "Path to serve metrics under.").Default("/metrics").StringVar(&o.telemetryPath)
	cmd.Flag("release-on-exit", "Detach the TC and tracepoint programs when the daemon exits cleanly; by default they stay attached and count on until the next run.").
		BoolVar(&o.releaseOnExit)
}

// telemetry is `run`'s exporter: the metrics and their web server.
type telemetry struct {
	log       *slog.Logger
	flags     *opsFlags
	metrics   *metrics.Metrics
	listeners []net.Listener
	srv       *http.Server
	done      chan error
	closed    sync.Once
}

// newTelemetry checks the web config and opens the listeners, so that a
// taken port or a bad config stops `run` before it touches anything.
func newTelemetry(o *opsFlags, log *slog.Logger) (*telemetry, error) {
	if o.telemetryPath == "" || o.telemetryPath[0] != '/' {
		return nil, fmt.Errorf("--web.telemetry-path %q: want a path starting with /", o.telemetryPath)
	}
	if o.webConfig != "" {
		if err := web.Validate(o.webConfig); err != nil {
			return nil, fmt.Errorf("--web.config.file %s: %w", o.webConfig, err)
		}
	}
	t := &telemetry{log: log.With("component", "web"), flags: o, metrics: metrics.New(metrics.Options{Log: log})}
	for _, addr := range o.listen {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.closeListeners()
			return nil, fmt.Errorf("listen for metrics on %s (--web.listen-address): %w", addr, err)
		}
		t.listeners = append(t.listeners, l)
	}
	return t, nil
}

func (t *telemetry) closeListeners() {
	for _, l := range t.listeners {
		l.Close()
	}
}

// started publishes what the daemon found, records it in the state
// directory for `linkbeat status`, and starts serving.
func (t *telemetry) started(d *daemon.Daemon, cfg daemon.Config, stateDir string) error {
	f := d.Features()
	info := metrics.DaemonInfo{CarrierSource: f.CarrierSource.String(), TCMechanism: f.TCMechanism, Tracepoints: f.Tracepoints,
		Counters: d.TrafficMap(), Replaced: d.ReplacedMaps()}
	if cfg.PinDir != "" && info.Counters != nil {
		info.Pinned = []string{traffic.MapCounters, traffic.MapLinkState}
	}
	t.metrics.SetDaemon(info)
	err := status.WriteSources(stateDir, status.Sources{PID: os.Getpid(), Started: time.Now(), Version: buildinfo.Version,
		CarrierSource: info.CarrierSource, TCMechanism: info.TCMechanism, Tracepoints: info.Tracepoints, BpffsDir: cfg.PinDir,
		ReplacedMaps: info.Replaced})
	if err != nil {
		// status then shows an older run's sources: say so, but keep
		// failing over.
		t.log.Warn("cannot record the live sources for `linkbeat status`", "err", err)
	}
	t.serve()
	return nil
}

func (t *telemetry) serve() {
	mux := http.NewServeMux()
	reg := t.metrics.Registry()
	mux.Handle(t.flags.telemetryPath, promhttp.InstrumentMetricHandler(reg, promhttp.HandlerFor(t.metrics.Gatherer(), promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(t.log.Handler(), slog.LevelError), Registry: reg, ErrorHandling: promhttp.ContinueOnError,
	})))
	if t.flags.telemetryPath != "/" {
		landing, err := web.NewLandingPage(web.LandingConfig{Name: "linkbeat", Description: "eBPF-accelerated link monitor",
			Version: buildinfo.Version, Links: []web.LandingLinks{{Address: t.flags.telemetryPath, Text: "Metrics"}}})
		if err == nil {
			mux.Handle("/", landing)
		}
	}
	t.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	sd := false
	flags := &web.FlagConfig{WebListenAddresses: &t.flags.listen, WebSystemdSocket: &sd, WebConfigFile: &t.flags.webConfig}
	t.done = make(chan error, 1)
	go func() { t.done <- web.ServeMultiple(t.listeners, t.srv, flags, t.log) }()
}

// Close stops serving; listeners never served are closed. It may be
// called more than once.
func (t *telemetry) Close() { t.closed.Do(t.close) }

func (t *telemetry) close() {
	if t.srv == nil {
		t.closeListeners()
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := t.srv.Shutdown(ctx); err != nil {
		t.log.Warn("stopping the metrics server", "err", err)
	}
	if err := <-t.done; err != nil && !errors.Is(err, http.ErrServerClosed) {
		t.log.Warn("metrics server", "err", err)
	}
}
