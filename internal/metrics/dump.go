package metrics

import (
	"sync"
	"time"

	"github.com/linkbeat/linkbeat/internal/registry"
)

// dumpMaxAge is how long one netlink link dump serves every collector of
// every scrape. A burst of scrapers (50 a second in the benchmark) then
// costs one dump instead of two per scrape, and the event loop keeps the
// CPU it needs; a bond's state read 250 ms late is still current for a
// Prometheus scrape interval.
const dumpMaxAge = 250 * time.Millisecond

// sharedDump hands out one link dump for dumpMaxAge. Callers that arrive
// while a dump runs wait for it rather than start their own. Errors are not
// kept: the next caller tries again.
type sharedDump struct {
	dump   func() ([]registry.Link, error)
	now    func() time.Time
	maxAge time.Duration

	mu    sync.Mutex
	at    time.Time
	links []registry.Link // read-only once handed out
}

func newSharedDump(dump func() ([]registry.Link, error), now func() time.Time) *sharedDump {
	return &sharedDump{dump: dump, now: now, maxAge: dumpMaxAge}
}

func (s *sharedDump) get() ([]registry.Link, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.links != nil && s.now().Sub(s.at) < s.maxAge {
		return s.links, nil
	}
	links, err := s.dump()
	if err != nil {
		return nil, err
	}
	if links == nil {
		links = []registry.Link{}
	}
	s.links, s.at = links, s.now()
	return links, nil
}
