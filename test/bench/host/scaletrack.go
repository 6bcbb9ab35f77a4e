package main

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// routeTracker follows, from the kernel's route notices, how many of the
// scale scenario's routes (100/8 and 101/8) use one device, directly or as
// a nexthop of a multipath route, and when that count last changed. It
// needs no dump per check, so its times keep their precision at 150,000
// routes, where one dump takes longer than the floor's whole batch.
type routeTracker struct {
	ifindex int
	done    chan struct{}

	mu      sync.Mutex
	using   map[string]bool
	at      time.Time // arrival of the notice behind the latest change
	changed chan struct{}
	err     error
}

func trackRoutes(ns *namespace, ifindex int) (*routeTracker, error) {
	t := &routeTracker{ifindex: ifindex, done: make(chan struct{}), using: map[string]bool{}, changed: make(chan struct{})}
	ch := make(chan netlink.RouteUpdate, 65536)
	h := ns.h
	err := netlink.RouteSubscribeWithOptions(ch, t.done, netlink.RouteSubscribeOptions{Namespace: &h, ListExisting: true,
		ReceiveBufferSize: 512 << 20, ReceiveBufferForceSize: true, ErrorCallback: t.fail})
	if err != nil {
		return nil, fmt.Errorf("route subscription in %s: %w", ns.name, err)
	}
	go func() {
		for u := range ch {
			t.apply(u, time.Now())
		}
	}()
	return t, nil
}

func (t *routeTracker) close() { close(t.done) }

func (t *routeTracker) fail(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.err == nil {
		t.err = fmt.Errorf("route notices lost, the count is no longer exact: %w", err)
	}
}

func ours(dst *net.IPNet) bool {
	return dst != nil && (dst.IP.To4() != nil) && (dst.IP.To4()[0] == 100 || dst.IP.To4()[0] == 101)
}

func (t *routeTracker) uses(r netlink.Route) bool {
	if r.LinkIndex == t.ifindex {
		return true
	}
	for _, nh := range r.MultiPath {
		if nh.LinkIndex == t.ifindex {
			return true
		}
	}
	return false
}

func (t *routeTracker) apply(u netlink.RouteUpdate, at time.Time) {
	if !ours(u.Dst) {
		return
	}
	key := u.Dst.String()
	t.mu.Lock()
	defer t.mu.Unlock()
	was := t.using[key]
	now := u.Type == unix.RTM_NEWROUTE && t.uses(u.Route)
	if was == now {
		return
	}
	if now {
		t.using[key] = true
	} else {
		delete(t.using, key)
	}
	t.at = at
	close(t.changed)
	t.changed = make(chan struct{})
}

// wait returns when the count first satisfies cond, with the arrival of
// the notice that made it so (or now, if it already held).
func (t *routeTracker) wait(ctx context.Context, cond func(n int) bool, timeout time.Duration) (time.Time, error) {
	deadline := time.After(timeout)
	for {
		t.mu.Lock()
		n, at, ch, err := len(t.using), t.at, t.changed, t.err
		t.mu.Unlock()
		if err != nil {
			return time.Time{}, err
		}
		if cond(n) {
			return at, nil
		}
		select {
		case <-ch:
		case <-deadline:
			return time.Time{}, fmt.Errorf("%d routes still use ifindex %d: %w", n, t.ifindex, errTimeout)
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		}
	}
}
