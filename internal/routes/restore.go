package routes

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Restoring what was withdrawn, in its place, when carrier returns or
// the link is released.

// LinkUp restores what LinkDown withdrew from this link, if it has carrier.
func (m *Manager) LinkUp(ifindex int, ifname string) (Result, error) {
	return m.restoreLink(ifindex, ifname, false)
}

// Release puts a link's withdrawn routes back whatever its carrier: the
// link is no longer monitored, and an unmonitored link keeps its routes as
// the kernel would. Nothing withdrawn may outlive linkbeat's interest in it.
func (m *Manager) Release(ifindex int, ifname string) (Result, error) {
	return m.restoreLink(ifindex, ifname, true)
}

// restoreLink restores a link's record; force ignores its carrier.
func (m *Manager) restoreLink(ifindex int, ifname string, force bool) (Result, error) {
	start := time.Now()
	m.cache.forgetFlushed(ifindex)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.renamed(ifindex, ifname)
	res, err := m.restore(linkID(ifname, ifindex), force)
	res.Duration = time.Since(start)
	return res, err
}

type outcome int

const (
	restored outcome = iota
	skipped
	failed
	// waiting: not restored yet, for want of carrier; the entry stays.
	waiting
)

// restoreRun is one restore: its outcome so far, and the batch of route
// additions not sent yet.
//
// It holds as little as it can beside the table the cache refills to: a
// route's entry is dropped from the record (its slot set to nil) as soon
// as the route is back, the batch is bounded, and the index of the other
// links' records is built only if a restore step asks for it.
type restoreRun struct {
	m       *Manager
	id      string
	carrier bool
	ix      *index // nil until index() builds it
	res     Result
	errs    []error
	entries []*routeEntry // the link's record; nil where done with
	nhDone  map[*nexthopEntry]bool
	batch   []RouteChange
	batched []int             // the entries' places in entries
	pending map[routeKey]bool // keys with an addition in the batch
}

// index builds the index of the records on first use. Entries this run
// has restored are no longer in it: every question asked while restoring
// link r.id is about other links' records.
func (r *restoreRun) index() *index {
	if r.ix == nil {
		r.ix = r.m.index()
	}
	return r.ix
}

// waits: the kernel refuses nexthop objects on a link without carrier
// (and flushes them at carrier loss), so a released link's objects (see
// restore), and the routes using them, wait for its carrier (NoCarrier).
func (r *restoreRun) waits(e *routeEntry) bool {
	return !r.carrier && e.Route.NHID != 0
}

// count books an outcome; it says whether the entry is done with.
func (r *restoreRun) count(o outcome, err error) bool {
	switch o {
	case restored:
		r.res.Restored++
	case skipped:
		r.res.Skipped++
	case waiting:
		r.res.NoCarrier = true
		r.res.Skipped++
		return false
	default:
		r.errs = append(r.errs, err)
		return false
	}
	return true
}

// routes restores the connected routes, or the others. A whole route
// whose key has no route now is one addition: those go in batches.
func (r *restoreRun) routes(connected bool) {
	for i, e := range r.entries {
		if e == nil || e.connected() != connected {
			continue
		}
		if r.waits(e) {
			r.res.NoCarrier = true
			r.res.Skipped++
			continue
		}
		k := e.Route.key()
		if len(e.Removed) == 0 && !r.pending[k] && (e.Route.NHID == 0 || r.m.cache.nexthop(e.Route.NHID) != nil) &&
			!r.m.cache.has(k) {
			r.batch, r.batched = append(r.batch, RouteChange{Route: e.Route, Op: OpCreate}), append(r.batched, i)
			r.pending[k] = true
			if len(r.batch) >= applyBatch {
				r.flush()
			}
			continue
		}
		r.flush()
		o, err := r.m.restoreRoute(e, r.id, r.index)
		r.settle(i, r.count(o, err))
	}
	r.flush()
}

// settle drops entry i from the record once it is done with.
func (r *restoreRun) settle(i int, done bool) {
	if done {
		r.entries[i] = nil
	}
}

func (r *restoreRun) flush() {
	for j, err := range r.m.k.ApplyRoutes(r.batch) {
		i := r.batched[j]
		e := r.entries[i]
		o := restored
		switch {
		case isExist(err):
			o = skipped // re-added by someone we have not heard of yet
		case err != nil:
			o, err = failed, fmt.Errorf("add route %s: %w", e.Route, err)
		default:
			r.m.cache.setAliases(e.Route.key(), []*Route{e.Route})
		}
		r.settle(i, r.count(o, err))
	}
	clear(r.batch) // no route kept alive by the spare capacity
	r.batch, r.batched = r.batch[:0], r.batched[:0]
	clear(r.pending)
}

// restore puts a link's withdrawn routes back, onto the same-named link
// with carrier unless anyway; m.mu must be held.
func (m *Manager) restore(id string, anyway bool) (Result, error) {
	var res Result
	ls := m.st.Links[id]
	if ls == nil {
		return res, nil
	}
	li, err := m.k.Link(ls.Ifindex)
	if err != nil {
		return res, fmt.Errorf("restore routes of %s: %w", ls.Ifname, err)
	}
	// A released link may have been renamed out of the monitored set: the
	// caller vouches that the ifindex is still the same link.
	if li.Name != ls.Ifname && !anyway {
		return res, fmt.Errorf("restore routes of %s: ifindex %d is now %s", ls.Ifname, ls.Ifindex, li.Name)
	}
	if !li.Carrier && !anyway {
		// Down again since the caller decided: never restore onto it.
		res.NoCarrier = true
		res.Skipped = ls.count()
		return res, nil
	}
	defer tightGC(ls.count())()
	run := &restoreRun{m: m, id: id, carrier: li.Carrier, entries: ls.Routes,
		nhDone: map[*nexthopEntry]bool{}, pending: map[routeKey]bool{}}
	m.cache.reserveLink(ls.Ifindex, len(ls.Routes))
	defer m.cache.settleLink(ls.Ifindex)
	// Connected routes, then nexthop objects (members before groups), then
	// the rest: each step is validated by the kernel against the previous.
	run.routes(true)
	nhs := slices.Clone(ls.Nexthops)
	slices.SortStableFunc(nhs, func(a, b *nexthopEntry) int {
		return cmp.Compare(len(a.Nexthop.Group), len(b.Nexthop.Group))
	})
	for _, e := range nhs {
		if !run.carrier { // as waits
			run.res.NoCarrier = true
			run.res.Skipped++
			continue
		}
		o, err := m.restoreNexthop(e, id, run.index)
		run.nhDone[e] = run.count(o, err)
	}
	run.routes(false)
	if li.Carrier {
		n, err := m.restoreDependents(id, run.index)
		run.res.Restored += n
		if err != nil {
			run.errs = append(run.errs, err)
		}
	}
	res, errs := run.res, run.errs

	ls.Routes = slices.DeleteFunc(ls.Routes, func(e *routeEntry) bool { return e == nil })
	ls.Nexthops = slices.DeleteFunc(ls.Nexthops, func(e *nexthopEntry) bool { return run.nhDone[e] })
	if ls.count() == 0 {
		delete(m.st.Links, id)
	}
	if err := m.save(); err != nil {
		errs = append(errs, err)
	}
	m.log.Info("routes restored", "link", ls.Ifname, "ifindex", ls.Ifindex, "restored", res.Restored,
		"skipped", res.Skipped, "errors", len(errs))
	if err := errors.Join(errs...); err != nil {
		return res, fmt.Errorf("restore routes of %s: %w", ls.Ifname, err)
	}
	return res, nil
}

// restoreDependents puts back the routes other links withdrew because
// their nexthop object went entirely, when this link's restore brought
// the object back (a group with this link's members): they have a live
// path again. m.mu must be held.
func (m *Manager) restoreDependents(id string, ix func() *index) (int, error) {
	n := 0
	var errs []error
	for oid, ls := range m.st.Links {
		if oid == id {
			continue
		}
		done := map[*routeEntry]bool{}
		for _, e := range ls.Routes {
			if e.Route.NHID == 0 || m.cache.nexthop(e.Route.NHID) == nil {
				continue
			}
			switch o, err := m.restoreRoute(e, oid, ix); o {
			case restored:
				n++
				done[e] = true
			case skipped:
				done[e] = true
			case failed:
				errs = append(errs, err)
			}
		}
		if len(done) > 0 {
			ls.Routes = slices.DeleteFunc(ls.Routes, func(e *routeEntry) bool { return done[e] })
			if ls.count() == 0 {
				delete(m.st.Links, oid)
			}
		}
	}
	return n, errors.Join(errs...)
}

// ix is the index of the records, built on first call.
func (m *Manager) restoreRoute(e *routeEntry, id string, ix func() *index) (outcome, error) {
	r := e.Route
	if r.NHID != 0 && m.cache.nexthop(r.NHID) == nil {
		// Its nexthop object waits for carrier (refused, or withdrawn by
		// another link): so does the route.
		return waiting, nil
	}
	full := r
	if e.Orig != nil {
		full = e.Orig
	}
	cur := m.cache.aliases(r.key())
	i := aliasIndex(cur, full)
	if i < 0 {
		want := r
		if len(e.Removed) > 0 {
			// Only our hops are ours to bring back, and only if the rest
			// of the route went because of another dead link rather than
			// because someone deleted it.
			if !e.Orphan && !ix().aliasElsewhere(r, id) {
				return skipped, nil
			}
			want = r.withHops(e.Removed)
		}
		if foreign(cur, e.Peers) {
			return skipped, nil // someone else put a route at this key meanwhile
		}
		err := m.insertAt(want, cur, position(e.Peers, r, cur))
		if isExist(err) {
			return skipped, nil // re-added by someone we have not heard of yet
		}
		if err != nil {
			return failed, fmt.Errorf("add route %s: %w", want, err)
		}
		return restored, nil
	}
	c := cur[i]
	if !e.Merge || r.NHID != 0 || c.NHID != 0 {
		return skipped, nil // someone else re-added it meanwhile
	}
	removed := e.Removed
	if len(removed) == 0 {
		removed = r.Hops
	}
	var missing []Hop
	for _, h := range removed {
		if !hasHop(c.Hops, h) {
			missing = append(missing, h)
		}
	}
	if len(missing) == 0 {
		return skipped, nil
	}
	want := c.withOwnHops(mergeHops(full.Hops, c.Hops, missing, c.Multipath))
	if err := m.replaceAlias(c, want); err != nil {
		return failed, fmt.Errorf("put nexthops back into %s: %w", want, err)
	}
	return restored, nil
}

// foreign: a route of the key that was not there at withdrawal.
func foreign(cur, peers []*Route) bool {
	return slices.ContainsFunc(cur, func(c *Route) bool { return aliasIndex(peers, c) < 0 })
}

// position is where r goes among cur: before the first route that came
// after it in peers (the key's routes in order before withdrawal).
func position(peers []*Route, r *Route, cur []*Route) int {
	p := aliasIndex(peers, r)
	if p < 0 {
		return len(cur)
	}
	for i, c := range cur {
		if aliasIndex(peers, c) > p {
			return i
		}
	}
	return len(cur)
}

// mergeHops puts add back into cur, in orig's order (so weights and order
// come back exactly as they were); hops unknown to orig go last. A
// single-path cur has no weight (the kernel drops it), so orig's counts.
func mergeHops(orig, cur, add []Hop, curMultipath bool) []Hop {
	out := make([]Hop, 0, len(cur)+len(add)) // every hop comes from one of them
	for _, h := range orig {
		if i := slices.IndexFunc(cur, h.same); i >= 0 {
			if curMultipath {
				h = cur[i]
			}
			out = append(out, h)
		} else if hasHop(add, h) {
			out = append(out, h)
		}
	}
	for _, hs := range [][]Hop{cur, add} {
		for _, h := range hs {
			if !hasHop(out, h) {
				out = append(out, h)
			}
		}
	}
	return out
}

// restorePlainNexthop adds back a nexthop object that is not a group,
// unless cur, the cache's object of that id, says it is back already.
func (m *Manager) restorePlainNexthop(n, cur *Nexthop) (outcome, error) {
	if cur != nil {
		return skipped, nil
	}
	err := m.k.AddNexthop(n, OpCreate)
	switch {
	case isExist(err):
		return skipped, nil
	case isNoCarrier(err):
		return waiting, nil // lost carrier again since the caller looked
	case err != nil:
		return failed, fmt.Errorf("add %s: %w", n, err)
	}
	m.cache.setNexthop(n)
	return restored, nil
}

// restoreNexthop puts a withdrawn nexthop object back, or a group's
// withdrawn members back into it.
func (m *Manager) restoreNexthop(e *nexthopEntry, id string, ix func() *index) (outcome, error) {
	n := e.Nexthop
	cur := m.cache.nexthop(n.ID)
	if len(n.Group) == 0 {
		return m.restorePlainNexthop(n, cur)
	}
	orig := n.Group
	if e.Orig != nil {
		orig = e.Orig.Group
	}
	removed := e.Removed
	if len(removed) == 0 {
		removed = n.Group
	}
	// Members still withdrawn by another link cannot be referenced yet.
	var ours []GroupMember
	for _, mb := range removed {
		if m.cache.nexthop(mb.ID) != nil {
			ours = append(ours, mb)
		}
	}
	if cur == nil {
		if len(e.Removed) > 0 && !e.Orphan && !ix().nexthopElsewhere(n.ID, id) {
			return skipped, nil // the group was deleted meanwhile
		}
		if len(ours) == 0 {
			return waiting, nil // its members wait for carrier
		}
		want := n.withGroup(mergeMembers(orig, nil, ours))
		err := m.k.AddNexthop(want, OpCreate)
		if isExist(err) {
			return skipped, nil
		}
		if err != nil {
			return failed, fmt.Errorf("add %s: %w", want, err)
		}
		m.cache.setNexthop(want)
		if len(ours) < len(removed) {
			return waiting, nil
		}
		return restored, nil
	}
	if len(cur.Group) == 0 {
		return skipped, nil // the id is now a plain nexthop someone added
	}
	var missing []GroupMember
	for _, mb := range ours {
		if !hasMember(cur.Group, mb.ID) {
			missing = append(missing, mb)
		}
	}
	if len(missing) == 0 {
		if len(ours) < len(removed) {
			return waiting, nil // the rest of its members wait for carrier
		}
		return skipped, nil
	}
	want := cur.withGroup(mergeMembers(orig, cur.Group, missing))
	if err := m.k.AddNexthop(want, OpReplace); err != nil {
		return failed, fmt.Errorf("put members back into %s: %w", want, err)
	}
	m.cache.setNexthop(want)
	if len(ours) < len(removed) {
		return waiting, nil
	}
	return restored, nil
}

func mergeMembers(orig, cur, add []GroupMember) []GroupMember {
	var out []GroupMember
	for _, mb := range orig {
		if i := slices.IndexFunc(cur, func(c GroupMember) bool { return c.ID == mb.ID }); i >= 0 {
			out = append(out, cur[i])
		} else if hasMember(add, mb.ID) {
			out = append(out, mb)
		}
	}
	for _, mb := range slices.Concat(cur, add) {
		if !hasMember(out, mb.ID) {
			out = append(out, mb)
		}
	}
	return out
}
