package metrics

import (
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	dto "github.com/prometheus/client_model/go"
)

// slowGatherer blocks each gather until release is closed and counts them.
type slowGatherer struct {
	calls   atomic.Int32
	started chan struct{}
	release chan struct{}
}

func (g *slowGatherer) Gather() ([]*dto.MetricFamily, error) {
	if g.calls.Add(1) == 1 {
		close(g.started)
	}
	<-g.release
	name := "x"
	return []*dto.MetricFamily{{Name: &name}}, errors.New("partial")
}

func TestSharedGatherJoinsTheRunningGather(t *testing.T) {
	g := &slowGatherer{started: make(chan struct{}), release: make(chan struct{})}
	s := &sharedGather{g: g}
	var wg sync.WaitGroup
	results := make(chan string, 10)
	gather := func() {
		defer wg.Done()
		mfs, err := s.Gather()
		if err == nil || len(mfs) != 1 {
			results <- "bad"
			return
		}
		results <- mfs[0].GetName()
	}
	wg.Add(1)
	go gather()
	<-g.started
	for range 9 {
		wg.Add(1)
		go gather()
	}
	// The nine joiners must be waiting on the running gather before it
	// ends; wait until they are queued on its done channel.
	for s.waiters() < 9 {
		runtime.Gosched()
	}
	close(g.release)
	wg.Wait()
	close(results)
	for r := range results {
		if r != "x" {
			t.Fatalf("a scrape got %q, want the shared result and its error", r)
		}
	}
	if n := g.calls.Load(); n != 1 {
		t.Fatalf("10 concurrent scrapes ran %d gathers, want 1", n)
	}
	// The next scrape after the shared one ends gathers afresh.
	g.release = make(chan struct{})
	close(g.release)
	s.Gather()
	if n := g.calls.Load(); n != 2 {
		t.Fatalf("a later scrape reused an old gather: %d gathers, want 2", n)
	}
}

func (s *sharedGather) waiters() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur == nil {
		return 0
	}
	return s.cur.joined
}
