package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func askHealth(t *testing.T, h *health) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, healthPath, nil))
	return rec.Code, rec.Body.String()
}

// The check passes while the actors answer the liveness ticks
// (agent.Hooks.Alive), and fails once they have not for longer than the
// limit; internal/agent tests that a tick crosses the action queue.
func TestHealthFollowsTheAnswers(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	h := newHealth(0, clk.now)
	if h.limit != defaultHealthLimit || h.heartbeat() != defaultHealthLimit/2 {
		t.Fatalf("without a watchdog: limit %s, beat %s; want %s and half", h.limit, h.heartbeat(), defaultHealthLimit)
	}
	if code, body := askHealth(t, h); code != http.StatusOK {
		t.Fatalf("at start: %d %s", code, body)
	}
	for range 5 { // live actors: ticks answered
		clk.t = clk.t.Add(h.heartbeat())
		h.answered()
		if code, body := askHealth(t, h); code != http.StatusOK {
			t.Fatalf("ticks answered: %d %s", code, body)
		}
	}
	// The actors stop answering: the check fails past the limit, not
	// before.
	clk.t = clk.t.Add(h.limit)
	if code, body := askHealth(t, h); code != http.StatusOK {
		t.Fatalf("at the limit: %d %s", code, body)
	}
	clk.t = clk.t.Add(time.Millisecond)
	code, body := askHealth(t, h)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "limit 30s") {
		t.Fatalf("past the limit: %d %q, want 503 naming the limit", code, body)
	}
	// They answer again: healthy again.
	h.answered()
	if code, body := askHealth(t, h); code != http.StatusOK {
		t.Fatalf("answered again: %d %s", code, body)
	}
}

// A stuck event loop sends no beats at all: the check fails the same way.
func TestHealthFailsWithoutBeats(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	h := newHealth(20*time.Second, clk.now) // systemd's WATCHDOG_USEC sets the limit
	clk.t = clk.t.Add(21 * time.Second)
	if code, body := askHealth(t, h); code != http.StatusServiceUnavailable {
		t.Fatalf("no beat for 21s with a 20s limit: %d %s", code, body)
	}
}
