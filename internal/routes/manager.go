// Package routes withdraws the routes and nexthop objects that go through a
// link when it loses carrier, and restores exactly those when carrier comes
// back. The kernel leaves such routes in place (only marking them linkdown),
// so without this traffic keeps being sent into a dead link; worse, it
// flushes nexthop objects on carrier loss and never puts them back.
//
// What counts: unicast routes of every table but local (255), IPv4 and
// IPv6, static and connected (proto kernel) ones. IPv6 link-local routes
// (fe80::/10) are left alone: link-local traffic is scoped to the link
// anyway, so withdrawing them steers nothing, and the kernel would not
// re-add them.
//
// Identity: the kernel tells routes apart by table, destination, TOS (IPv4),
// source prefix (IPv6) and metric, but holds several routes under one such
// key (IPv4 `ip route append`, IPv6 device or nexthop-object routes beside a
// multipath one). The cache keeps each key's routes in the kernel's order,
// and a withdrawn route remembers where it stood among them, so that it
// comes back in its place whatever order links fail and return in.
//
// What was withdrawn is written to a state file before anything is deleted,
// so a restarted daemon still restores it.
package routes

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultStateDir is where the state file lives unless Config says otherwise.
const DefaultStateDir = "/run/linkbeat"

type Config struct {
	StateDir string
	Log      *slog.Logger
}

// Result tells what one LinkDown or LinkUp did. Counts are of routes and
// nexthop objects (a partially withdrawn multipath route counts once).
type Result struct {
	Withdrawn, Restored, Skipped int
	Duration                     time.Duration
	// NoCarrier: LinkUp found the link without carrier and restored nothing.
	NoCarrier bool
}

type Manager struct {
	cfg   Config
	k     Kernel
	log   *slog.Logger
	cache *cache

	mu sync.Mutex // guards st
	st *state
}

// New loads the state left by a previous run.
func New(cfg Config, k Kernel) (*Manager, error) {
	if cfg.StateDir == "" {
		cfg.StateDir = DefaultStateDir
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	st, err := loadState(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	return &Manager{cfg: cfg, k: k, log: cfg.Log, cache: newCache(), st: st}, nil
}

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

// eligible: routes linkbeat manages at all.
func eligible(r *Route) bool {
	if r.Table == unix.RT_TABLE_LOCAL || r.Type != unix.RTN_UNICAST {
		return false // kernel-managed local/broadcast/multicast/anycast
	}
	if r.Family == unix.AF_INET6 && r.Dst.Addr().IsLinkLocalUnicast() {
		return false
	}
	return true
}

// plan decides what a carrier loss on ifindex withdraws.
func plan(ifindex int, routes [][]*Route, nhs map[uint32]*Nexthop, flushed []*Route) ([]*routeEntry, []*nexthopEntry) {
	var nents []*nexthopEntry
	dead := map[uint32]bool{} // nexthop objects that go entirely
	for _, n := range nhs {
		if len(n.Group) == 0 && n.Ifindex == ifindex && !n.FDB && !n.Blackhole {
			dead[n.ID] = true
			nents = append(nents, &nexthopEntry{Nexthop: n})
		}
	}
	for _, n := range nhs {
		if len(n.Group) == 0 {
			continue
		}
		var removed []GroupMember
		for _, mb := range n.Group {
			if dead[mb.ID] {
				removed = append(removed, mb)
			}
		}
		switch {
		case len(removed) == 0:
		case len(removed) == len(n.Group):
			dead[n.ID] = true
			nents = append(nents, &nexthopEntry{Nexthop: n, Merge: true})
		default:
			nents = append(nents, &nexthopEntry{Nexthop: n, Removed: removed, Merge: true})
		}
	}
	var rents []*routeEntry
	for _, rs := range withFlushed(routes, flushed) {
		var peers []*Route
		if len(rs) > 1 {
			peers = rs
		}
		for _, r := range rs {
			if e := planRoute(ifindex, r, dead); e != nil {
				e.Peers = peers
				rents = append(rents, e)
			}
		}
	}
	// Map order is random: keep the state file and the kernel calls stable.
	slices.SortFunc(nents, func(a, b *nexthopEntry) int { return cmp.Compare(a.Nexthop.ID, b.Nexthop.ID) })
	keys := make(map[*routeEntry]routeKey, len(rents))
	for _, e := range rents {
		keys[e] = e.Route.key()
	}
	slices.SortStableFunc(rents, func(a, b *routeEntry) int { return compareKeys(keys[a], keys[b]) })
	return rents, nents
}

// planRoute is what a carrier loss on ifindex takes of one kernel route,
// nil if nothing; dead are the nexthop objects that go entirely.
func planRoute(ifindex int, r *Route, dead map[uint32]bool) *routeEntry {
	if !eligible(r) {
		return nil
	}
	if r.NHID != 0 {
		if dead[r.NHID] {
			return &routeEntry{Route: r}
		}
		return nil
	}
	var removed []Hop
	for _, h := range r.Hops {
		if h.Ifindex == ifindex {
			removed = append(removed, h)
		}
	}
	switch {
	case len(removed) == 0:
		return nil
	case len(removed) == len(r.Hops):
		return &routeEntry{Route: r, Merge: len(r.Hops) > 1}
	}
	return &routeEntry{Route: r, Removed: removed, Merge: true}
}

// withFlushed adds the routes the kernel already flushed to the routes of
// their key (after them: the kernel no longer says where they were).
func withFlushed(routes [][]*Route, flushed []*Route) [][]*Route {
	if len(flushed) == 0 {
		return routes
	}
	at := map[routeKey]int{}
	for i, rs := range routes {
		if len(rs) > 0 {
			at[rs[0].key()] = i
		}
	}
	out := slices.Clone(routes)
	for _, r := range flushed {
		i, ok := at[r.key()]
		switch {
		case !ok:
			at[r.key()] = len(out)
			out = append(out, []*Route{r})
		case aliasIndex(out[i], r) < 0:
			out[i] = append(slices.Clone(out[i]), r)
		}
	}
	return out
}

// connected: a route with no gateway and no nexthop object. Restored first,
// because gateways and nexthop objects are validated against them.
func (e *routeEntry) connected() bool {
	if e.Route.NHID != 0 {
		return false
	}
	for _, h := range e.Route.Hops {
		if h.Gateway.IsValid() {
			return false
		}
	}
	return true
}

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
		if err := m.st.save(m.cfg.StateDir); err != nil {
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
	if err := m.st.save(m.cfg.StateDir); err != nil {
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
		batch, batched = batch[:0], batched[:0]
	}
	for _, e := range rents {
		r := e.Route
		c := RouteChange{Route: r, Delete: true}
		if len(e.Removed) > 0 {
			want := r.withHops(slices.DeleteFunc(slices.Clone(r.Hops), func(h Hop) bool { return hasHop(e.Removed, h) }))
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
	}
	flush()
	return errs
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

// rank orders route operations: partial first, then routes via gateways or
// nexthop objects, connected routes last (they are what gateways need).
func rank(e *routeEntry, partial bool) int {
	switch {
	case partial:
		return 0
	case !e.connected():
		return 1
	}
	return 2
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
	return m.st.save(m.cfg.StateDir)
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
		if err := m.st.save(m.cfg.StateDir); err != nil {
			m.log.Error("saving withdrawn routes under a new link name", "link", ifname, "err", err)
		}
	}
}

// LinkUp restores what LinkDown withdrew from this link, if it has carrier.
func (m *Manager) LinkUp(ifindex int, ifname string) (Result, error) {
	start := time.Now()
	m.cache.forgetFlushed(ifindex)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.renamed(ifindex, ifname)
	res, err := m.restore(linkID(ifname, ifindex), false)
	res.Duration = time.Since(start)
	return res, err
}

// Release puts a link's withdrawn routes back whatever its carrier: the
// link is no longer monitored, and an unmonitored link keeps its routes as
// the kernel would. Nothing withdrawn may outlive linkbeat's interest in it.
func (m *Manager) Release(ifindex int, ifname string) (Result, error) {
	start := time.Now()
	m.cache.forgetFlushed(ifindex)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.renamed(ifindex, ifname)
	res, err := m.restore(linkID(ifname, ifindex), true)
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
type restoreRun struct {
	m       *Manager
	id      string
	carrier bool
	ix      *index
	res     Result
	errs    []error
	done    entrySet // entries restored or no longer to restore
	batch   []RouteChange
	batched []*routeEntry
	pending map[routeKey]bool // keys with an addition in the batch
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
func (r *restoreRun) routes(entries []*routeEntry, connected bool) {
	for _, e := range entries {
		if e.connected() != connected || r.done.routes[e] {
			continue
		}
		if r.waits(e) {
			r.res.NoCarrier = true
			r.res.Skipped++
			continue
		}
		k := e.Route.key()
		if len(e.Removed) == 0 && !r.pending[k] && (e.Route.NHID == 0 || r.m.cache.nexthop(e.Route.NHID) != nil) &&
			len(r.m.cache.aliases(k)) == 0 {
			r.batch, r.batched = append(r.batch, RouteChange{Route: e.Route, Op: OpCreate}), append(r.batched, e)
			r.pending[k] = true
			continue
		}
		r.flush()
		o, err := r.m.restoreRoute(e, r.id, r.ix)
		r.done.routes[e] = r.count(o, err)
	}
	r.flush()
}

func (r *restoreRun) flush() {
	for i, err := range r.m.k.ApplyRoutes(r.batch) {
		e := r.batched[i]
		o := restored
		switch {
		case isExist(err):
			o = skipped // re-added by someone we have not heard of yet
		case err != nil:
			o, err = failed, fmt.Errorf("add route %s: %w", e.Route, err)
		default:
			r.m.cache.setAliases(e.Route.key(), []*Route{e.Route})
		}
		r.done.routes[e] = r.count(o, err)
	}
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
	run := &restoreRun{m: m, id: id, carrier: li.Carrier, ix: m.index(), done: newEntrySet(), pending: map[routeKey]bool{}}
	// Connected routes, then nexthop objects (members before groups), then
	// the rest: each step is validated by the kernel against the previous.
	run.routes(ls.Routes, true)
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
		o, err := m.restoreNexthop(e, id, run.ix)
		run.done.nexthops[e] = run.count(o, err)
	}
	run.routes(ls.Routes, false)
	if li.Carrier {
		n, err := m.restoreDependents(id, run.ix)
		run.res.Restored += n
		if err != nil {
			run.errs = append(run.errs, err)
		}
	}
	res, errs := run.res, run.errs

	run.done.removeFrom(ls)
	if ls.count() == 0 {
		delete(m.st.Links, id)
	}
	if err := m.st.save(m.cfg.StateDir); err != nil {
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
func (m *Manager) restoreDependents(id string, ix *index) (int, error) {
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

func (m *Manager) restoreRoute(e *routeEntry, id string, ix *index) (outcome, error) {
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
			if !e.Orphan && !ix.aliasElsewhere(r, id) {
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
	want := c.withHops(mergeHops(full.Hops, c.Hops, missing, c.Multipath))
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
	var out []Hop
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
	for _, h := range slices.Concat(cur, add) {
		if !hasHop(out, h) {
			out = append(out, h)
		}
	}
	return out
}

func (m *Manager) restoreNexthop(e *nexthopEntry, id string, ix *index) (outcome, error) {
	n := e.Nexthop
	cur := m.cache.nexthop(n.ID)
	if len(n.Group) == 0 {
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
		if len(e.Removed) > 0 && !e.Orphan && !ix.nexthopElsewhere(n.ID, id) {
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
		if err := m.st.save(m.cfg.StateDir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// WithdrawnLinks names, by ifindex, the links with something withdrawn.
func (m *Manager) WithdrawnLinks() map[int]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[int]string{}
	for _, ls := range m.st.Links {
		out[ls.Ifindex] = ls.Ifname
	}
	return out
}

// Withdrawn counts, per link name, routes and nexthop objects withdrawn now.
func (m *Manager) Withdrawn() map[string]int {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]int{}
	for _, ls := range m.st.Links {
		out[ls.Ifname] += ls.count()
	}
	return out
}
