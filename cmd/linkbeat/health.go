package main

import (
	"fmt"
	"net/http"
	"sync/atomic"
	"time"
)

// healthPath is the liveness endpoint, where Prometheus serves its own.
const healthPath = "/-/healthy"

// defaultHealthLimit applies without a systemd watchdog (Kubernetes): the
// unit's WatchdogSec, so that both supervisors give a stuck linkbeat as long.
const defaultHealthLimit = 30 * time.Second

// health is the liveness behind healthPath. Like the systemd watchdog ping
// (notify.go), it hears of each liveness tick the agent's actors answered
// (agent.Hooks.Alive), so a stuck loop and a stuck actor both stop the
// answers; the handler fails once none came for limit. Serving / or
// /metrics would say only that the web server runs.
type health struct {
	limit time.Duration
	now   func() time.Time
	// last is when the actors last answered (Unix ns); the
	// start counts as an answer.
	last atomic.Int64
}

// newHealth takes the systemd watchdog timeout (0: none) as the limit.
func newHealth(watchdog time.Duration, now func() time.Time) *health {
	h := &health{limit: watchdog, now: now}
	if h.limit <= 0 {
		h.limit = defaultHealthLimit
	}
	h.last.Store(now().UnixNano())
	return h
}

// heartbeat is the loop's beat interval: half the limit, as for systemd,
// so one late beat is not yet a failure.
func (h *health) heartbeat() time.Duration { return h.limit / 2 }

// answered records an answer to a liveness tick (agent.Hooks.Alive).
func (h *health) answered() { h.last.Store(h.now().UnixNano()) }

func (h *health) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	age := h.now().Sub(time.Unix(0, h.last.Load()))
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if age > h.limit {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "unhealthy: the event loop and the actors last answered %s ago (limit %s)\n", age.Round(time.Millisecond), h.limit)
		return
	}
	fmt.Fprintf(w, "healthy: the event loop and the actors answered %s ago\n", age.Round(time.Millisecond))
}
