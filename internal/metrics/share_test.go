package metrics

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// blockingHandler answers with its call number once release is closed.
type blockingHandler struct {
	calls   atomic.Int32
	release chan struct{}
}

func (h *blockingHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := h.calls.Add(1)
	<-h.release
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("X-Enc", r.Header.Get("Accept-Encoding"))
	w.WriteHeader(http.StatusTeapot)
	_, _ = io.WriteString(w, "call "+string(rune('0'+n)))
}

func get(h http.Handler, enc string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	req.Header.Set("Accept-Encoding", enc)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

// waitJoined waits until n requests share the running answer for enc.
func waitJoined(t *testing.T, s *sharedResponses, enc string, n int) {
	t.Helper()
	if !joinedBy(s, enc, n) {
		t.Fatalf("%d requests never joined the running answer", n)
	}
}

func joinedBy(s *sharedResponses, enc string, n int) bool {
	key := http.MethodGet + "\x00/metrics\x00\x00" + enc
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		s.mu.Lock()
		c := s.cur[key]
		joined := c != nil && c.joined == n
		s.mu.Unlock()
		if joined {
			return true
		}
	}
	return false
}

func TestShareResponsesJoinsTheRunningAnswer(t *testing.T) {
	h := &blockingHandler{release: make(chan struct{})}
	s := ShareResponses(h).(*sharedResponses)
	const n = 8
	var wg sync.WaitGroup
	got := make(chan *httptest.ResponseRecorder, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); got <- get(s, "gzip") }()
	}
	waitJoined(t, s, "gzip", n-1)
	// Another encoding is another answer: it must not join.
	other := make(chan *httptest.ResponseRecorder, 1)
	go func() { other <- get(s, "") }()
	for h.calls.Load() != 2 {
		time.Sleep(time.Millisecond)
	}
	close(h.release)
	wg.Wait()
	close(got)
	for w := range got {
		if w.Code != http.StatusTeapot || w.Body.String() != "call 1" || w.Header().Get("X-Enc") != "gzip" {
			t.Errorf("joined request got %d %q enc %q, want the first call's answer", w.Code, w.Body.String(), w.Header().Get("X-Enc"))
		}
	}
	if w := <-other; w.Body.String() != "call 2" || w.Header().Get("X-Enc") != "" {
		t.Errorf("request without gzip got %q enc %q, want its own answer", w.Body.String(), w.Header().Get("X-Enc"))
	}
	// Once answered, nothing is cached: the next request is answered anew.
	if w := get(s, "gzip"); w.Body.String() != "call 3" {
		t.Errorf("request after the shared answer got %q, want a fresh call", w.Body.String())
	}
}

type panicHandler struct{ release chan struct{} }

func (h panicHandler) ServeHTTP(http.ResponseWriter, *http.Request) {
	<-h.release
	panic(http.ErrAbortHandler)
}

func TestShareResponsesJoinersGetAnErrorWhenTheAnswerPanics(t *testing.T) {
	h := panicHandler{release: make(chan struct{})}
	s := ShareResponses(h).(*sharedResponses)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() { _ = recover() }()
		get(s, "")
	}()
	joined := make(chan *httptest.ResponseRecorder, 1)
	go func() {
		joinedBy(s, "", 0) // the panicking answer is running
		joined <- get(s, "")
	}()
	waitJoined(t, s, "", 1)
	close(h.release)
	<-done
	if w := <-joined; w.Code != http.StatusInternalServerError {
		t.Errorf("joiner of a panicked answer got HTTP %d, want 500", w.Code)
	}
}
