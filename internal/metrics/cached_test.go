package metrics

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// countingCollector sends one gauge: how many times it was collected.
type countingCollector struct {
	desc  *prometheus.Desc
	calls atomic.Int32
}

func (c *countingCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *countingCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(c.calls.Add(1)))
}

func TestCachedCollectorReplaysForMaxAge(t *testing.T) {
	now := time.Unix(1000, 0)
	inner := &countingCollector{desc: prometheus.NewDesc("x", "x", nil, nil)}
	c := &cachedCollector{c: inner, now: func() time.Time { return now }, maxAge: time.Second}
	for i, tc := range []struct {
		advance time.Duration
		want    float64
	}{{0, 1}, {500 * time.Millisecond, 1}, {499 * time.Millisecond, 1}, {time.Millisecond, 2}, {10 * time.Second, 3}} {
		now = now.Add(tc.advance)
		if got := testutil.ToFloat64(c); got != tc.want {
			t.Errorf("step %d (+%v): collected value %v, want %v", i, tc.advance, got, tc.want)
		}
	}
}
