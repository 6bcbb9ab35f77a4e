package agent

import (
	"log/slog"

	"github.com/linkbeat/linkbeat/internal/bond"
	"github.com/linkbeat/linkbeat/internal/fastpath"
	"github.com/linkbeat/linkbeat/internal/metrics"
	"github.com/linkbeat/linkbeat/internal/monotime"
	"github.com/linkbeat/linkbeat/internal/source"
	"github.com/linkbeat/linkbeat/internal/traffic"
)

// LoadFastPath loads the bond fast path's maps and programs and hands the
// maps to the carrier programs (scfg); on failure it records why, for
// features, and returns nil.
func LoadFastPath(scfg *source.Config, log *slog.Logger) *fastpath.Objects {
	o, err := fastpath.Load(nil)
	if err != nil {
		scfg.FastPathErr = err
		log.Error("bond fast path off: its programs do not load", "err", err)
		return nil
	}
	scfg.FastPath = o.Shared()
	return o
}

// startFastPath makes the fast path's manager when the source found it can
// run (features); nil otherwise. record hears of each failover it makes;
// m reads its maps at scrape time.
func startFastPath(o *fastpath.Objects, src *source.Source, stateDir string, m *metrics.Metrics, record func(bond.Failover), log *slog.Logger) *fastpath.Manager {
	if o == nil || src.Features().FastPath == "off" {
		return nil
	}
	if pin := src.PinDir(); pin != "" {
		if err := o.Pin(pin); err != nil {
			log.Warn("fast path maps not pinned: bpftool and status cannot read them", "err", err)
		}
	}
	fp := fastpath.New(fastpath.Options{Objects: o, Mechanism: traffic.Mechanism(src.Features().TCMechanism), Log: log, StateDir: stateDir,
		Now: monotime.NowNS, Record: record})
	m.SetFastPath(metrics.FastPathInfo{Stats: o.FpSlaveStats, Redirects: o.FpRedirects, Status: fp.Status})
	return fp
}
