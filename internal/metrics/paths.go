package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/linkbeat/linkbeat/internal/pathmon"
	"github.com/linkbeat/linkbeat/internal/registry"
)

// pathDescs are the path monitor's per-slave, per-target counters.
type pathDescs struct {
	replies, lastReply *prometheus.Desc
}

func newPathDescs() *pathDescs {
	labels := []string{"bond", "slave", "target", "probe"}
	return &pathDescs{
		replies: prometheus.NewDesc(namespace+"_path_replies_total",
			"Answers to linkbeat's path probes through a bond slave, by target and probe (arp: ARP replies, ns: neighbour advertisements), counted on the slave's TC ingress.", labels, nil),
		lastReply: prometheus.NewDesc(namespace+"_path_last_reply_timestamp_seconds",
			"Unix time of the latest answer to linkbeat's path probes through a bond slave, by target and probe.", labels, nil),
	}
}

// SetPaths publishes the path monitor's counter reader; without it (no
// bond has arp_targets or ns_targets) the paths collector has no data.
func (m *Metrics) SetPaths(read func() ([]pathmon.Reply, error)) { m.paths.Store(&read) }

// pathsCollector reads the path monitor's counters.
type pathsCollector struct {
	d    *pathDescs
	m    *Metrics
	dump func() ([]registry.Link, error)
	now  func() time.Time
	mono func() time.Duration
}

func (c *pathsCollector) Update(ch chan<- prometheus.Metric) error {
	read := c.m.paths.Load()
	if read == nil {
		return errNoData
	}
	replies, err := (*read)()
	if err != nil {
		return err
	}
	links, err := c.dump()
	if err != nil {
		return err
	}
	for _, m := range pathMetrics(c.d, replies, links, c.now(), c.mono()) {
		ch <- m
	}
	return nil
}

// pathMetrics names each counter's slave and bond from the dump; a slave
// that is gone, or in no bond now, is left out.
func pathMetrics(d *pathDescs, replies []pathmon.Reply, links []registry.Link, now time.Time, mono time.Duration) []prometheus.Metric {
	byIndex := make(map[int]registry.Link, len(links))
	for _, l := range links {
		byIndex[l.Index] = l
	}
	var out []prometheus.Metric
	for _, r := range replies {
		s, ok := byIndex[r.Ifindex]
		if !ok {
			continue
		}
		b, ok := byIndex[s.MasterIndex]
		if !ok || s.MasterIndex == 0 {
			continue
		}
		labels := []string{b.Name, s.Name, r.Target.String(), r.Kind}
		out = append(out, prometheus.MustNewConstMetric(d.replies, prometheus.CounterValue, float64(r.Replies), labels...))
		if r.LastNs != 0 && time.Duration(r.LastNs) <= mono {
			at := now.Add(-(mono - time.Duration(r.LastNs)))
			out = append(out, prometheus.MustNewConstMetric(d.lastReply, prometheus.GaugeValue, float64(at.UnixNano())/1e9, labels...))
		}
	}
	return out
}
