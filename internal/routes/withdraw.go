package routes

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"time"

	"golang.org/x/sys/unix"
)

// Withdrawing a link's routes and nexthop objects at carrier loss, and
// placing a route among the others of its key.

// LinkDown withdraws what goes through ifindex, persisting it first.
func (m *Manager) LinkDown(ifindex int, ifname string) (Result, error) {
	start := time.Now()
	var res Result
	routes, nhs, flushed := m.cache.snapshot(ifindex)
	rents, nents := plan(ifindex, routes, nhs, flushed)
	if len(rents)+len(nents) == 0 {
		res.Duration = time.Since(start)
		return res, nil
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	defer tightGC(len(rents) + len(nents))()
	m.renamed(ifindex, ifname)
	id := linkID(ifname, ifindex)
	ls, err := m.record(id, ifname, ifindex, rents, nents)
	if err != nil {
		res.Duration = time.Since(start)
		return res, fmt.Errorf("withdraw routes of %s: %w", ifname, err)
	}

	drop := newEntrySet() // entries that turned out not to be withdrawn
	errs := m.withdrawRoutes(rents, drop, &res)
	errs = append(errs, m.withdrawNexthops(nents, drop, &res)...)
	if drop.len() > 0 {
		drop.removeFrom(ls)
		if ls.count() == 0 {
			delete(m.st.Links, id)
		}
		if err := m.save(); err != nil {
			errs = append(errs, err)
		}
	}
	res.Duration = time.Since(start)
	m.log.Info("routes withdrawn", "link", ifname, "ifindex", ifindex, "withdrawn", res.Withdrawn,
		"skipped", res.Skipped, "errors", len(errs), "duration", res.Duration)
	if err := errors.Join(errs...); err != nil {
		return res, fmt.Errorf("withdraw routes of %s: %w", ifname, err)
	}
	return res, nil
}

// record adds what is about to be withdrawn to the link's record and
// saves it; m.mu must be held. Without a saved record, deleting could
// lose routes for good, so an error leaves the state as it was.
func (m *Manager) record(id, ifname string, ifindex int, rents []*routeEntry, nents []*nexthopEntry) (*linkState, error) {
	prev := m.st.Links[id]
	ls := &linkState{Ifname: ifname, Ifindex: ifindex, Since: time.Now().UTC()}
	if prev != nil {
		c := *prev
		c.Routes, c.Nexthops = slices.Clone(prev.Routes), slices.Clone(prev.Nexthops)
		ls = &c
	}
	ix := m.index()
	for _, e := range rents {
		// A route already cut down by another link is part of a multipath
		// set: restoring it must merge, not skip.
		if !e.Merge && ix.aliasElsewhere(e.Route, id) {
			e.Merge = true
		}
		// The fullest version of the route any record holds: the order
		// and weights to merge back into, and what identifies the route
		// when only other links' hops are left of it.
		e.Orig = ix.origElsewhere(e.Route, id)
		e.Peers = ix.peersElsewhere(e, id)
	}
	for _, e := range nents {
		if len(e.Nexthop.Group) > 0 {
			e.Orig = ix.groupOrigElsewhere(e.Nexthop, id)
		}
	}
	ls.Routes, ls.Nexthops = supersede(ls.Routes, rents), supersedeNH(ls.Nexthops, nents)
	m.st.Links[id] = ls
	if err := m.saveLink(id, ls); err != nil {
		if prev == nil {
			delete(m.st.Links, id)
		} else {
			m.st.Links[id] = prev
		}
		return nil, err
	}
	return ls, nil
}

func (m *Manager) withdrawRoutes(rents []*routeEntry, drop entrySet, res *Result) []error {
	var errs []error
	// Multipath routes first: moving traffic off the dead hop matters most.
	slices.SortStableFunc(rents, func(a, b *routeEntry) int {
		return cmp.Compare(rank(a, len(a.Removed) > 0), rank(b, len(b.Removed) > 0))
	})
	// Changes that are one message each go in batches, in order; one that
	// moves routes of a key around flushes the batch and runs alone.
	var batch []RouteChange
	var batched []*routeEntry
	flush := func() {
		for i, err := range m.k.ApplyRoutes(batch) {
			if err := m.withdrawn(batched[i], batch[i], err, drop, res); err != nil {
				errs = append(errs, err)
			}
		}
		clear(batch) // no route kept alive by the spare capacity
		batch, batched = batch[:0], batched[:0]
	}
	for _, e := range rents {
		r := e.Route
		c := RouteChange{Route: r, Delete: true}
		if len(e.Removed) > 0 {
			want := r.withOwnHops(liveHops(r.Hops, e.Removed))
			c = RouteChange{Route: want, Op: OpReplace}
			if !m.replaceIsOne(r) {
				flush()
				if err := m.withdrawn(e, c, m.replaceAlias(r, want), drop, res); err != nil {
					errs = append(errs, err)
				}
				continue
			}
		}
		batch, batched = append(batch, c), append(batched, e)
		if len(batch) >= applyBatch {
			flush()
		}
	}
	flush()
	return errs
}

// liveHops is hops without removed, in a slice of its own size: the
// cache keeps it for as long as the route is cut down.
func liveHops(hops, removed []Hop) []Hop {
	out := make([]Hop, 0, max(len(hops)-len(removed), 0))
	for _, h := range hops {
		if !hasHop(removed, h) {
			out = append(out, h)
		}
	}
	return out
}

// withdrawn books the outcome of one withdrawal change.
func (m *Manager) withdrawn(e *routeEntry, c RouteChange, err error, drop entrySet, res *Result) error {
	r := e.Route
	if !c.Delete {
		switch {
		case err == nil:
			m.cache.setRoute(c.Route)
			res.Withdrawn++
		case isGone(err):
			drop.routes[e] = true
			res.Skipped++
		default:
			return fmt.Errorf("remove dead nexthops from %s: %w", r, err)
		}
		return nil
	}
	switch {
	case err == nil:
		m.cache.delRoute(r)
		res.Withdrawn++
	case isGone(err) && r.NHID != 0:
		// The kernel flushed it with its nexthop object at carrier loss.
		m.cache.delRoute(r)
		res.Withdrawn++
	case isGone(err):
		// Stale cache: someone else removed it; not ours to restore.
		m.cache.delRoute(r)
		drop.routes[e] = true
		res.Skipped++
	default:
		return fmt.Errorf("delete route %s: %w", r, err)
	}
	return nil
}

func (m *Manager) withdrawNexthops(nents []*nexthopEntry, drop entrySet, res *Result) []error {
	var errs []error
	// Groups before their members; members are gone already anyway: the
	// kernel flushes nexthop objects of a link that loses carrier.
	slices.SortStableFunc(nents, func(a, b *nexthopEntry) int {
		return cmp.Compare(len(b.Nexthop.Group), len(a.Nexthop.Group))
	})
	for _, e := range nents {
		n := e.Nexthop
		if len(e.Removed) > 0 {
			var live []GroupMember
			for _, mb := range n.Group {
				if !hasMember(e.Removed, mb.ID) {
					live = append(live, mb)
				}
			}
			want := n.withGroup(live)
			err := m.k.AddNexthop(want, OpReplace)
			switch {
			case err == nil:
				m.cache.setNexthop(want)
				res.Withdrawn++
			case isGone(err):
				drop.nexthops[e] = true
				res.Skipped++
			default:
				errs = append(errs, fmt.Errorf("remove dead members from %s: %w", n, err))
			}
			continue
		}
		err := m.k.DeleteNexthop(n.ID)
		if err == nil || isGone(err) {
			m.cache.delNexthop(n.ID)
			res.Withdrawn++
		} else {
			errs = append(errs, fmt.Errorf("delete %s: %w", n, err))
		}
	}
	return errs
}

// replaceIsOne: replacing the kernel route old is one OpReplace. IPv4
// replaces the first route of a key, IPv6 the one of the same kind
// (multipath-capable or not), which is old.
func (m *Manager) replaceIsOne(old *Route) bool {
	if old.Family == unix.AF_INET6 {
		return true
	}
	cur := m.cache.aliases(old.key())
	i := aliasIndex(cur, old)
	return i == 0 || (i < 0 && len(cur) <= 1)
}

// replaceAlias puts want in the place of the kernel route old.
func (m *Manager) replaceAlias(old, want *Route) error {
	if m.replaceIsOne(old) {
		if err := m.k.AddRoute(want, OpReplace); err != nil {
			return err
		}
		m.cache.setRoute(want)
		return nil
	}
	cur := m.cache.aliases(old.key())
	i := aliasIndex(cur, old)
	if i < 0 {
		i = len(cur)
	} else {
		if err := m.k.DeleteRoute(old); err != nil {
			return err
		}
		cur = slices.Delete(cur, i, i+1)
		m.cache.setAliases(old.key(), cur)
	}
	return m.insertAt(want, cur, i)
}

// insertAt adds r as route i of its key, cur being the others in the
// kernel's order. The kernel only prepends (IPv4) or appends, so the
// routes after i are deleted and appended again behind r: they are
// alternatives of a key that r precedes, so traffic does not use them.
func (m *Manager) insertAt(r *Route, cur []*Route, i int) error {
	i = min(max(i, 0), len(cur))
	var err error
	switch {
	case len(cur) == 0:
		err = m.k.AddRoute(r, OpCreate)
	case i == len(cur):
		err = m.k.AddRoute(r, OpAppend)
	case i == 0 && r.Family == unix.AF_INET:
		err = m.k.AddRoute(r, OpPrepend)
	default:
		err = m.moveBehind(r, cur, i)
	}
	if err != nil {
		return err
	}
	m.cache.setAliases(r.key(), slices.Insert(slices.Clone(cur), i, r))
	return nil
}

func (m *Manager) moveBehind(r *Route, cur []*Route, i int) error {
	for _, t := range cur[i:] {
		if err := m.k.DeleteRoute(t); err != nil && !isGone(err) {
			return fmt.Errorf("make room for %s: delete %s: %w", r, t, err)
		}
	}
	m.cache.setAliases(r.key(), cur[:i])
	if err := m.k.AddRoute(r, OpAppend); err != nil {
		return err
	}
	var errs []error
	for _, t := range cur[i:] {
		if err := m.k.AddRoute(t, OpAppend); err != nil && !isExist(err) {
			errs = append(errs, fmt.Errorf("put %s back behind %s: %w", t, r, err))
		}
	}
	return errors.Join(errs...)
}
