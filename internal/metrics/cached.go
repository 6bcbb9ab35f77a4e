package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// processMaxAge is how long one read of the process collector serves
// scrapes. It reads five procfs files a scrape, /proc/stat (for a start
// time that never changes) and the netns's /proc/net/netstat among them:
// more than half a gather's CPU. Process CPU, memory and file counts a
// second old are current enough for any scrape interval.
const processMaxAge = time.Second

// cachedCollector replays a collector's last metrics for maxAge. Const
// metrics are immutable, so sending them again is safe.
type cachedCollector struct {
	c      prometheus.Collector
	now    func() time.Time
	maxAge time.Duration

	mu  sync.Mutex
	at  time.Time
	out []prometheus.Metric
}

func (c *cachedCollector) Describe(ch chan<- *prometheus.Desc) { c.c.Describe(ch) }

func (c *cachedCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.out == nil || c.now().Sub(c.at) >= c.maxAge {
		c.out, c.at = c.collect(), c.now()
	}
	for _, m := range c.out {
		ch <- m
	}
}

func (c *cachedCollector) collect() []prometheus.Metric {
	ch := make(chan prometheus.Metric)
	out := []prometheus.Metric{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m := range ch {
			out = append(out, m)
		}
	}()
	c.c.Collect(ch)
	close(ch)
	<-done
	return out
}
