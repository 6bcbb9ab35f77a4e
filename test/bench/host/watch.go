package main

import (
	"context"
	"fmt"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// notice is a netlink notification with the time it was read.
type notice struct {
	at   time.Time
	link *netlink.LinkUpdate
}

// watcher receives a namespace's RTNLGRP_IPV4_ROUTE and RTNLGRP_LINK
// notices and stamps each on arrival: the measurement waits on the
// kernel's own notices instead of polling the table.
type watcher struct {
	ns     *namespace
	routes chan time.Time
	links  chan notice
	done   chan struct{}
}

func watch(ns *namespace) (*watcher, error) {
	w := &watcher{ns: ns, routes: make(chan time.Time, 65536), links: make(chan notice, 65536), done: make(chan struct{})}
	rch := make(chan netlink.RouteUpdate, 65536)
	lch := make(chan netlink.LinkUpdate, 65536)
	h := ns.h
	errCB := func(error) {}
	if err := netlink.RouteSubscribeWithOptions(rch, w.done, netlink.RouteSubscribeOptions{Namespace: &h, ErrorCallback: errCB, ReceiveBufferSize: 8 << 20}); err != nil {
		return nil, fmt.Errorf("route subscription in %s: %w", ns.name, err)
	}
	if err := netlink.LinkSubscribeWithOptions(lch, w.done, netlink.LinkSubscribeOptions{Namespace: &h, ErrorCallback: errCB, ReceiveBufferSize: 8 << 20}); err != nil {
		close(w.done)
		return nil, fmt.Errorf("link subscription in %s: %w", ns.name, err)
	}
	go func() {
		for range rch {
			select {
			case w.routes <- time.Now():
			default:
			}
		}
	}()
	go func() {
		for u := range lch {
			select {
			case w.links <- notice{at: time.Now(), link: &u}:
			default:
			}
		}
	}()
	return w, nil
}

func (w *watcher) close() { close(w.done) }

// drain forgets notices that arrived before a trial.
func (w *watcher) drain() {
	for {
		select {
		case <-w.routes:
		case <-w.links:
		default:
			return
		}
	}
}

// trialTimes is what one cut produced.
type trialTimes struct {
	routesGone time.Time // the route notice after which no route used the dead link
	linkNotice time.Time // the kernel's RTM_NEWLINK without IFF_LOWER_UP for it
}

// waitGone waits until the main table has no route over ifindex, checking
// the table at every route notice and stamping the notice that made it
// true. It also notes the kernel's own link notice for ifindex.
func (w *watcher) waitGone(ctx context.Context, ifindex int, timeout time.Duration) (trialTimes, error) {
	var tt trialTimes
	deadline := time.After(timeout)
	for {
		select {
		case at := <-w.routes:
			if tt.routesGone.IsZero() {
				used, err := w.routeUses(ifindex)
				if err != nil {
					return tt, err
				}
				if !used {
					tt.routesGone = at
				}
			}
		case n := <-w.links:
			if tt.linkNotice.IsZero() && n.link.Attrs().Index == ifindex && !hasCarrier(n.link.Flags) {
				tt.linkNotice = n.at
			}
		case <-deadline:
			if tt.routesGone.IsZero() {
				return tt, fmt.Errorf("routes over ifindex %d still there after %v: %w", ifindex, timeout, errTimeout)
			}
			return tt, nil // no link notice seen: left zero
		case <-ctx.Done():
			return tt, ctx.Err()
		}
		if !tt.routesGone.IsZero() && !tt.linkNotice.IsZero() {
			return tt, nil
		}
	}
}

// routeUses says whether any main-table IPv4 route goes over ifindex,
// directly or as one nexthop of a multipath route.
func (w *watcher) routeUses(ifindex int) (bool, error) {
	rs, err := w.ns.nl.RouteListFiltered(unix.AF_INET, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return false, fmt.Errorf("list routes in %s: %w", w.ns.name, err)
	}
	for _, r := range rs {
		if r.LinkIndex == ifindex {
			return true, nil
		}
		for _, nh := range r.MultiPath {
			if nh.LinkIndex == ifindex {
				return true, nil
			}
		}
	}
	return false, nil
}
