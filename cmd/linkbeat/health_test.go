package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/linkbeat/linkbeat/internal/actions"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func askHealth(t *testing.T, h *health) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, healthPath, nil))
	return rec.Code, rec.Body.String()
}

// The check passes while the action goroutine answers the loop's beats,
// and fails once it has not for longer than the limit.
func TestHealthFollowsTheActionQueue(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	h := newHealth(0, clk.now)
	if h.limit != defaultHealthLimit || h.heartbeat() != defaultHealthLimit/2 {
		t.Fatalf("without a watchdog: limit %s, beat %s; want %s and half", h.limit, h.heartbeat(), defaultHealthLimit)
	}
	if code, body := askHealth(t, h); code != http.StatusOK {
		t.Fatalf("at start: %d %s", code, body)
	}
	in := make(chan actions.Input, 1)
	beat := h.beat(in)
	answer := func() { (<-in).Barrier() }

	for range 5 { // a live loop and action goroutine: beats answered
		clk.t = clk.t.Add(h.heartbeat())
		beat(context.Background())
		answer()
		if code, body := askHealth(t, h); code != http.StatusOK {
			t.Fatalf("beats answered: %d %s", code, body)
		}
	}

	// The action goroutine stops answering: the queue fills, beats are
	// skipped, and the check fails past the limit, not before.
	beat(context.Background())
	clk.t = clk.t.Add(h.limit)
	beat(context.Background()) // queue full: skipped, must not block
	if code, body := askHealth(t, h); code != http.StatusOK {
		t.Fatalf("at the limit: %d %s", code, body)
	}
	clk.t = clk.t.Add(time.Millisecond)
	code, body := askHealth(t, h)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "limit 30s") {
		t.Fatalf("past the limit: %d %q, want 503 naming the limit", code, body)
	}
	// It answers again: healthy again.
	answer()
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

func TestHeartbeatsRunsEach(t *testing.T) {
	var got []int
	heartbeats(func(context.Context) { got = append(got, 1) }, nil, func(context.Context) { got = append(got, 2) })(context.Background())
	if len(got) != 2 || got[0] != 1 || got[1] != 2 {
		t.Fatalf("ran %v, want [1 2]", got)
	}
}
