package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/linkbeat/linkbeat/internal/metrics"
	"github.com/linkbeat/linkbeat/internal/status"
)

// The exporter is a side part of a failover daemon: an address it cannot
// listen on (loopback down, port taken) is retried with this backoff
// while failover runs on, unless --web.fail-on-bind-error.
const (
	listenRetryMin = time.Second
	listenRetryMax = 30 * time.Second
)

// nextRetry doubles the wait up to listenRetryMax.
func nextRetry(d time.Duration) time.Duration {
	return min(2*d, listenRetryMax)
}

// listenHint says what to do about a failed listen.
func listenHint(err error) string {
	switch {
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "the address is on no interface that is up: bring it up (loopback: ip link set lo up) or change --web.listen-address"
	case errors.Is(err, syscall.EADDRINUSE):
		return "another process holds the port: stop it (ss -ltnp) or change --web.listen-address"
	case errors.Is(err, syscall.EACCES):
		return "a port below 1024 needs CAP_NET_BIND_SERVICE: choose another --web.listen-address"
	}
	return "check --web.listen-address and --web.config.file"
}

// listenBook owns the exporter's listen state: the one record that the
// metrics, the state directory (for `status` and `features`) and systemd's
// STATUS= are told of, in that order, on each change.
type listenBook struct {
	log     *slog.Logger
	metrics *metrics.Metrics

	mu        sync.Mutex
	listeners []status.Listener
	// Set by started: until then nothing is written nor notified.
	dir        string
	notify     func([]status.Listener)
	warnedDisk bool
}

func newListenBook(addrs []string, m *metrics.Metrics, log *slog.Logger) *listenBook {
	b := &listenBook{log: log, metrics: m}
	now := time.Now()
	for _, a := range addrs {
		b.listeners = append(b.listeners, status.Listener{Address: a, Since: now})
	}
	return b
}

// failed records a failed listen (or a server that stopped) on address i,
// retried after wait. The first failure, and any new error, is an ERROR;
// the same error again is a WARN: with the backoff, at most one a
// listenRetryMax.
func (b *listenBook) failed(i int, err error, wait time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	l := &b.listeners[i]
	msg, hint := err.Error(), listenHint(err)
	level := slog.LevelWarn
	if l.Listening || l.Failures == 0 || l.Error != msg {
		level = slog.LevelError
	}
	if l.Listening || l.Failures == 0 {
		l.Since = time.Now()
	}
	next := time.Now().Add(wait)
	l.Listening, l.Error, l.Hint, l.NextTry = false, msg, hint, &next
	l.Failures++
	b.log.Log(context.Background(), level, "metrics exporter cannot listen: failover runs on without it; retrying",
		"address", l.Address, "err", err, "hint", hint, "failures", l.Failures, "retry_in", wait)
	b.metrics.WebListen(l.Address, false, true)
	b.publish()
}

// listening records that address i listens.
func (b *listenBook) listening(i int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	l := &b.listeners[i]
	if l.Failures > 0 {
		b.log.Info("metrics exporter listening after failed attempts", "address", l.Address, "failed_attempts", l.Failures)
	}
	l.Listening, l.Since, l.Error, l.Hint, l.NextTry = true, time.Now(), "", "", nil
	b.metrics.WebListen(l.Address, true, false)
	b.publish()
}

// untilRetry is how long until address i's next try is due (0 if it is).
func (b *listenBook) untilRetry(i int) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	if next := b.listeners[i].NextTry; next != nil {
		return max(time.Until(*next), 0)
	}
	return 0
}

// started gives the book where to record and whom to tell, and records
// what happened before.
func (b *listenBook) started(dir string, notify func([]status.Listener)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.dir, b.notify = dir, notify
	b.publish()
}

// publish runs with mu held, so that records go out in order.
func (b *listenBook) publish() {
	if b.dir == "" {
		return
	}
	snap := append([]status.Listener(nil), b.listeners...)
	err := status.WriteExporter(b.dir, status.Exporter{PID: os.Getpid(), Listeners: snap})
	if err != nil && !b.warnedDisk {
		b.warnedDisk = true
		b.log.Warn("cannot record the exporter's state for `linkbeat status`", "err", err)
	}
	if b.notify != nil {
		b.notify(snap)
	}
}

// listenAll binds every address once, at start. A failure is fatal with
// strict (--web.fail-on-bind-error); otherwise it is recorded, and its
// address left nil for the retry loop.
func listenAll(addrs []string, book *listenBook, strict bool) ([]net.Listener, error) {
	out := make([]net.Listener, len(addrs))
	for i, addr := range addrs {
		l, err := net.Listen("tcp", addr)
		if err == nil {
			out[i] = l
			book.listening(i)
			continue
		}
		if strict {
			for _, l := range out {
				if l != nil {
					l.Close()
				}
			}
			return nil, fmt.Errorf("listen for metrics on %s (--web.listen-address): %w; %s; not starting, as --web.fail-on-bind-error asks",
				addr, err, listenHint(err))
		}
		book.failed(i, err, listenRetryMin)
	}
	return out, nil
}
