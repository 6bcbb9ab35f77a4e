package metrics

import (
	"bytes"
	"net/http"
	"slices"
	"sync"
)

// ShareResponses lets scrapes that arrive while an identical one is being
// answered share its encoded (and compressed) body instead of each
// encoding and compressing the gather again. Gathers are shared already
// (sharedGather), but a burst of scrapers (50 at once in the benchmark)
// still cost one encode and one gzip each, about a millisecond of CPU
// apiece taken from the event loop. Requests are alike when method, path,
// Accept and Accept-Encoding are: those decide promhttp's answer. A scrape
// that joins gets values read at most one scrape's duration before it
// arrived, as with sharedGather; nothing is served from a cache once the
// shared answer is done, so a scrape after an event always sees it.
func ShareResponses(h http.Handler) http.Handler {
	return &sharedResponses{h: h, cur: map[string]*responseCall{}}
}

type sharedResponses struct {
	h   http.Handler
	mu  sync.Mutex
	cur map[string]*responseCall
}

type responseCall struct {
	done   chan struct{}
	header http.Header // read-only once done
	code   int
	body   []byte

	joined int // requests sharing it (guarded by sharedResponses.mu)
}

func (s *sharedResponses) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	key := r.Method + "\x00" + r.URL.Path + "\x00" + r.Header.Get("Accept") + "\x00" + r.Header.Get("Accept-Encoding")
	s.mu.Lock()
	if c := s.cur[key]; c != nil {
		c.joined++
		s.mu.Unlock()
		<-c.done
		c.write(w)
		return
	}
	c := &responseCall{done: make(chan struct{})}
	s.cur[key] = c
	s.mu.Unlock()

	s.answer(c, key, r)
	c.write(w)
}

// answer runs the handler for c and releases its joiners, even if the
// handler panics (net/http recovers it for this request).
func (s *sharedResponses) answer(c *responseCall, key string, r *http.Request) {
	rec := &recorder{header: http.Header{}, code: http.StatusOK}
	finished := false
	defer func() {
		if !finished {
			rec = &recorder{header: http.Header{}, code: http.StatusInternalServerError}
		}
		c.header, c.code, c.body = rec.header, rec.code, rec.buf.Bytes()
		s.mu.Lock()
		delete(s.cur, key)
		s.mu.Unlock()
		close(c.done)
	}()
	s.h.ServeHTTP(rec, r)
	finished = true
}

func (c *responseCall) write(w http.ResponseWriter) {
	h := w.Header()
	for k, v := range c.header {
		h[k] = slices.Clone(v)
	}
	w.WriteHeader(c.code)
	_, _ = w.Write(c.body) // the client went away: nothing to do
}

// recorder keeps what a handler wrote.
type recorder struct {
	header http.Header
	code   int
	wrote  bool
	buf    bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(code int) {
	if !r.wrote {
		r.code, r.wrote = code, true
	}
}

func (r *recorder) Write(p []byte) (int, error) {
	r.wrote = true
	return r.buf.Write(p)
}
