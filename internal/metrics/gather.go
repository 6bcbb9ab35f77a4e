package metrics

import (
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// sharedGather lets scrapes that arrive while a gather runs share its
// result instead of each running every collector again: a burst of
// concurrent scrapers costs one gather, so it cannot take the CPU the event
// loop needs. A scrape that joins a running gather gets values read at most
// one gather's duration before it arrived.
type sharedGather struct {
	g prometheus.Gatherer
	// before is runtime.NumGoroutine() as the latest gather began, ahead
	// of the registry's collect workers: go_goroutines counts those, and
	// how many it starts depends on how busy the CPUs are.
	before atomic.Int64

	mu  sync.Mutex
	cur *gatherCall
}

type gatherCall struct {
	done chan struct{}
	mfs  []*dto.MetricFamily // read-only once done: promhttp only encodes it
	err  error

	joined int // scrapes sharing it (guarded by sharedGather.mu)
}

func (s *sharedGather) Gather() ([]*dto.MetricFamily, error) {
	s.mu.Lock()
	if c := s.cur; c != nil {
		c.joined++
		s.mu.Unlock()
		<-c.done
		return c.mfs, c.err
	}
	c := &gatherCall{done: make(chan struct{})}
	s.cur = c
	s.mu.Unlock()

	s.before.Store(int64(runtime.NumGoroutine()))
	c.mfs, c.err = s.g.Gather()
	s.mu.Lock()
	s.cur = nil
	s.mu.Unlock()
	close(c.done)
	return c.mfs, c.err
}
