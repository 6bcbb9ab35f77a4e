package routes

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
)

// Starting, following the kernel's changes, and reconciling the record
// with the kernel at start.

// Start subscribes to route and nexthop notifications, then fills the
// cache with one dump, and keeps it current until ctx ends.
func (m *Manager) Start(ctx context.Context) error {
	// Subscribe first so that nothing changing during the dump is missed.
	ch, err := m.k.Subscribe(ctx)
	if err != nil {
		return fmt.Errorf("subscribe to routes: %w", err)
	}
	rs, ns, err := m.dump()
	if err != nil {
		return err
	}
	m.cache.fill(rs, ns)
	go m.watch(ch)
	return nil
}

func (m *Manager) dump() ([]*Route, []*Nexthop, error) {
	rs, err := m.k.Routes()
	if err != nil {
		return nil, nil, fmt.Errorf("list routes: %w", err)
	}
	ns, err := m.k.Nexthops()
	if err != nil {
		return nil, nil, fmt.Errorf("list nexthops: %w", err)
	}
	return rs, ns, nil
}

func (m *Manager) watch(ch <-chan Update) {
	for u := range ch {
		if u.Kind == Overrun {
			m.log.Warn("route notifications lost, re-reading routes")
			if err := m.redump(); err != nil {
				m.log.Error("re-read routes", "err", err)
			}
			continue
		}
		m.cache.apply(u, m.hasCarrier)
	}
}

// redump refreshes the cache after lost notifications. Nexthop objects the
// kernel flushed at a carrier loss not yet handled by LinkDown are kept,
// with the routes using them: a dump can no longer show them.
func (m *Manager) redump() error {
	rs, ns, err := m.dump()
	if err != nil {
		return err
	}
	// Copy under the lock: LinkDown/LinkUp update the maps concurrently.
	m.cache.mu.Lock()
	old := maps.Clone(m.cache.nexthops)
	var oldRoutes []*Route
	for k := range m.cache.byNHID {
		oldRoutes = append(oldRoutes, m.cache.routes[k]...)
	}
	m.cache.mu.Unlock()
	have := map[uint32]bool{}
	for _, n := range ns {
		have[n.ID] = true
	}
	kept := map[uint32]bool{}
	for id, n := range old {
		if have[id] || len(n.Group) > 0 || n.Ifindex == 0 || m.hasCarrier(n.Ifindex) {
			continue
		}
		ns = append(ns, n)
		kept[id] = true
	}
	for _, r := range oldRoutes {
		if r.NHID != 0 && kept[r.NHID] {
			rs = append(rs, r)
		}
	}
	m.cache.fill(rs, ns)
	return nil
}

func (m *Manager) hasCarrier(ifindex int) bool {
	li, err := m.k.Link(ifindex)
	return err == nil && li.Carrier
}

// Forget drops what was withdrawn from a link that is gone (deleted, or
// moved to another netns): its routes went with it, and nothing may be
// restored onto a later link with its name or ifindex.
func (m *Manager) Forget(ifindex int) error {
	m.cache.forgetFlushed(ifindex)
	m.mu.Lock()
	defer m.mu.Unlock()
	forgot := false
	for id, ls := range m.st.Links {
		if ls.Ifindex == ifindex {
			m.log.Info("forgetting withdrawn routes of a link that is gone", "link", ls.Ifname, "ifindex", ifindex,
				"routes", len(ls.Routes), "nexthops", len(ls.Nexthops))
			delete(m.st.Links, id)
			m.orphan(ls)
			forgot = true
		}
	}
	if !forgot {
		return nil
	}
	return m.save()
}

// orphan marks the partial entries of other links that relied on gone's
// record to be restored: what gone took went with the link, but their own
// hops and members still come back. m.mu must be held.
func (m *Manager) orphan(gone *linkState) {
	routes := map[routeKey][]*routeEntry{}
	for _, g := range gone.Routes {
		routes[g.Route.key()] = append(routes[g.Route.key()], g)
	}
	nhs := map[uint32]bool{}
	for _, e := range gone.Nexthops {
		nhs[e.Nexthop.ID] = true
	}
	for _, ls := range m.st.Links {
		for _, e := range ls.Routes {
			if len(e.Removed) > 0 && slices.ContainsFunc(routes[e.Route.key()], func(g *routeEntry) bool { return g.holds(e.Route) }) {
				e.Orphan = true
			}
		}
		for _, e := range ls.Nexthops {
			if len(e.Removed) > 0 && nhs[e.Nexthop.ID] {
				e.Orphan = true
			}
		}
	}
}

// renamed files what was withdrawn from ifindex under an older name under
// its name now: a renamed link keeps its ifindex, and a gone one is
// forgotten, so the ifindex still means the same link. m.mu must be held.
func (m *Manager) renamed(ifindex int, ifname string) {
	id := linkID(ifname, ifindex)
	moved := false
	for old, ls := range m.st.Links {
		if ls.Ifindex != ifindex || old == id {
			continue
		}
		m.log.Info("withdrawn routes follow a renamed link", "old", ls.Ifname, "link", ifname, "ifindex", ifindex)
		if cur := m.st.Links[id]; cur != nil {
			cur.Routes = append(cur.Routes, ls.Routes...)
			cur.Nexthops = append(cur.Nexthops, ls.Nexthops...)
		} else {
			ls.Ifname = ifname
			m.st.Links[id] = ls
		}
		delete(m.st.Links, old)
		moved = true
	}
	if moved {
		// Under the old name, a restart would take them for a gone link's.
		if err := m.save(); err != nil {
			m.log.Error("saving withdrawn routes under a new link name", "link", ifname, "err", err)
		}
	}
}

// Reconcile runs at start: links that have carrier get their routes back,
// state of links that no longer exist (same ifindex and name) is dropped.
// carrier holds what the caller knows; other links are asked of the kernel.
func (m *Manager) Reconcile(carrier map[int]bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	ids := make([]string, 0, len(m.st.Links))
	for id := range m.st.Links {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var errs []error
	forgot := false
	for _, id := range ids {
		ls := m.st.Links[id]
		li, err := m.k.Link(ls.Ifindex)
		if errors.Is(err, ErrNoLink) || (err == nil && li.Name != ls.Ifname) {
			m.log.Warn("forgetting withdrawn routes of a link that is gone", "link", ls.Ifname,
				"ifindex", ls.Ifindex, "routes", len(ls.Routes), "nexthops", len(ls.Nexthops))
			delete(m.st.Links, id)
			forgot = true
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("reconcile %s: %w", ls.Ifname, err))
			continue
		}
		up, known := carrier[ls.Ifindex]
		if !known {
			up = li.Carrier
		}
		if !up {
			continue
		}
		m.cache.forgetFlushed(ls.Ifindex)
		if _, err := m.restore(id, false); err != nil {
			errs = append(errs, err)
		}
	}
	if forgot {
		if err := m.save(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
