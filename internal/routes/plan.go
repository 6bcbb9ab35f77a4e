package routes

import (
	"cmp"
	"slices"

	"golang.org/x/sys/unix"
)

// What a link's carrier loss withdraws: the plan, from the cache alone.

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
	return sortByKey(rents), nents
}

// sortByKey sorts entries by their route's key, computing each key once.
// The keys go in a slice beside the entries, not a map: with a whole
// table withdrawn, a map of them was the withdrawal's largest allocation.
func sortByKey(rents []*routeEntry) []*routeEntry {
	type keyed struct {
		k routeKey
		e *routeEntry
	}
	ks := make([]keyed, len(rents))
	for i, e := range rents {
		ks[i] = keyed{e.Route.key(), e}
	}
	slices.SortStableFunc(ks, func(a, b keyed) int { return compareKeys(a.k, b.k) })
	for i := range ks {
		rents[i] = ks[i].e
	}
	return rents
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
