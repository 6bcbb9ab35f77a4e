package metrics

import (
	"slices"

	"github.com/cilium/ebpf"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/linkbeat/linkbeat/internal/fastpath"
	"github.com/linkbeat/linkbeat/internal/registry"
)

// FastPathInfo is the bond fast path's state, read at each scrape.
type FastPathInfo struct {
	// Stats and Redirects are its counter and redirect maps.
	Stats, Redirects *ebpf.Map
	// Status gives each bond's fast path (live, or why not).
	Status func() []fastpath.BondStatus
}

// SetFastPath publishes the fast path once it runs.
func (m *Metrics) SetFastPath(info FastPathInfo) { m.fastPath.Store(&info) }

// fastPathCollector reads the fast path's maps and status at scrape time;
// slaves are named from the scrape's link dump.
type fastPathCollector struct {
	d    *descs
	m    *Metrics
	dump func() ([]registry.Link, error)
}

func (c *fastPathCollector) Update(ch chan<- prometheus.Metric) error {
	info := c.m.fastPath.Load()
	if info == nil {
		return errNoData
	}
	stats, err := fastpath.SlaveStats(info.Stats)
	if err != nil {
		return err
	}
	pending, err := fastpath.Redirects(info.Redirects)
	if err != nil {
		return err
	}
	links, err := c.dump()
	if err != nil {
		return err
	}
	for _, m := range fastPathMetrics(c.d, info.Status(), len(pending), stats, linkNames(links)) {
		ch <- m
	}
	return nil
}

// fastPathMetrics turns the fast path's status and counters into metrics.
// Counters of slaves that are gone (no name) are left out, as traffic's.
func fastPathMetrics(d *descs, status []fastpath.BondStatus, pending int, stats map[int]fastpath.Stats, names map[int]string) []prometheus.Metric {
	out := []prometheus.Metric{prometheus.MustNewConstMetric(d.fpPending, prometheus.GaugeValue, float64(pending))}
	for _, b := range status {
		v := 0.0
		if b.Live {
			v = 1
		}
		out = append(out, prometheus.MustNewConstMetric(d.fpLive, prometheus.GaugeValue, v, b.Name))
	}
	counter := func(desc *prometheus.Desc, v uint64, labels ...string) {
		out = append(out, prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(v), labels...))
	}
	for _, idx := range slices.Sorted(func(yield func(int) bool) {
		for i := range stats {
			if !yield(i) {
				return
			}
		}
	}) {
		name, ok := names[idx]
		if !ok {
			continue
		}
		s := stats[idx]
		counter(d.fpRedirected, s.TxRedirected, name, "tx")
		counter(d.fpRedirected, s.RxRedirected, name, "rx")
		counter(d.fpSkipped, s.TxSkipped, name)
		counter(d.fpTaken, s.TxTaken, name)
	}
	return out
}
