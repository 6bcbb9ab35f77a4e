package metrics

import (
	"net"
	"strconv"

	"github.com/cilium/ebpf"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/linkbeat/linkbeat/internal/fastpath"
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

var (
	fpRedirectedDesc = prometheus.NewDesc(namespace+"_bond_fast_path_redirected_packets_total",
		"Frames the bond fast path redirected, by slave: tx, frames the bond gave this dead slave, sent out of the replacement; rx, frames this replacement received, handed to the bond.",
		[]string{"interface", "direction"}, nil)
	fpSkippedDesc = prometheus.NewDesc(namespace+"_bond_fast_path_skipped_packets_total",
		"Frames for a dead slave the fast path left alone: no replacement with carrier.", []string{"interface"}, nil)
	fpLiveDesc = prometheus.NewDesc(namespace+"_bond_fast_path_live",
		"1 if the bond fast path runs for the bond, 0 if it is off for it (linkbeat status says why).", []string{"bond"}, nil)
	fpPendingDesc = prometheus.NewDesc(namespace+"_bond_fast_path_pending",
		"Fast failovers in force now: the bond still hands frames to a dead slave, which leave through another.", nil, nil)
)

type fastPathCollector struct{ m *Metrics }

func (c *fastPathCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{fpRedirectedDesc, fpSkippedDesc, fpLiveDesc, fpPendingDesc} {
		ch <- d
	}
}

func (c *fastPathCollector) Collect(ch chan<- prometheus.Metric) {
	info := c.m.fastPath.Load()
	if info == nil {
		return
	}
	for _, b := range info.Status() {
		v := 0.0
		if b.Live {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(fpLiveDesc, prometheus.GaugeValue, v, b.Name)
	}
	if r, err := fastpath.Redirects(info.Redirects); err == nil {
		ch <- prometheus.MustNewConstMetric(fpPendingDesc, prometheus.GaugeValue, float64(len(r)))
	}
	stats, err := fastpath.SlaveStats(info.Stats)
	if err != nil {
		return
	}
	for idx, s := range stats {
		name := strconv.Itoa(idx)
		if ifc, err := net.InterfaceByIndex(idx); err == nil {
			name = ifc.Name
		}
		ch <- prometheus.MustNewConstMetric(fpRedirectedDesc, prometheus.CounterValue, float64(s.TxRedirected), name, "tx")
		ch <- prometheus.MustNewConstMetric(fpRedirectedDesc, prometheus.CounterValue, float64(s.RxRedirected), name, "rx")
		ch <- prometheus.MustNewConstMetric(fpSkippedDesc, prometheus.CounterValue, float64(s.TxSkipped), name)
	}
}
