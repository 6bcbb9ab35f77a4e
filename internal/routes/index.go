package routes

import "slices"

// index finds, by route key or nexthop id, what every link's record holds,
// so that withdrawing or restoring n routes looks up each in O(1) instead
// of scanning every withdrawn route. It is built once per event, in time
// linear in what is withdrawn, and read while the records of other links
// do not change.
type index struct {
	routes map[routeKey][]placedRoute
	nhs    map[uint32][]placedNexthop
}

type placedRoute struct {
	id string // linkID of the record
	e  *routeEntry
}

type placedNexthop struct {
	id string
	e  *nexthopEntry
}

// index builds the index of m.st; m.mu must be held.
func (m *Manager) index() *index {
	ix := &index{routes: map[routeKey][]placedRoute{}, nhs: map[uint32][]placedNexthop{}}
	for id, ls := range m.st.Links {
		for _, e := range ls.Routes {
			if e == nil {
				continue // restored by the restore under way
			}
			k := e.Route.key()
			ix.routes[k] = append(ix.routes[k], placedRoute{id, e})
		}
		for _, e := range ls.Nexthops {
			ix.nhs[e.Nexthop.ID] = append(ix.nhs[e.Nexthop.ID], placedNexthop{id, e})
		}
	}
	return ix
}

// holds: the entry is (a part of, or all that was left of) kernel route r.
func (e *routeEntry) holds(r *Route) bool {
	return sameAlias(e.Route, r) || (e.Orig != nil && sameAlias(e.Orig, r))
}

// aliasElsewhere: another link's record also holds kernel route r.
func (ix *index) aliasElsewhere(r *Route, except string) bool {
	return slices.ContainsFunc(ix.routes[r.key()], func(p placedRoute) bool { return p.id != except && p.e.holds(r) })
}

// peersElsewhere is the fullest list of e's key's routes in the kernel's
// order that any record holds, when it has every route e's list has.
func (ix *index) peersElsewhere(e *routeEntry, except string) []*Route {
	best := e.Peers
	have := e.Peers
	if len(have) == 0 {
		have = []*Route{e.Route}
	}
	for _, p := range ix.routes[e.Route.key()] {
		o := p.e
		if p.id == except || len(o.Peers) <= len(best) {
			continue
		}
		if !slices.ContainsFunc(have, func(r *Route) bool { return aliasIndex(o.Peers, r) < 0 }) {
			best = o.Peers
		}
	}
	return best
}

// origElsewhere is the fullest pre-withdrawal version of r that another
// link's record holds (a partial withdrawal's route, or an Orig handed
// on), with every hop r has now; nil when there is none.
func (ix *index) origElsewhere(r *Route, except string) *Route {
	var best *Route
	for _, p := range ix.routes[r.key()] {
		if p.id == except {
			continue
		}
		e := p.e
		for _, o := range []*Route{e.Orig, e.Route} {
			if o == nil || (o == e.Route && len(e.Removed) == 0) || len(o.Hops) <= len(r.Hops) {
				continue
			}
			if !slices.ContainsFunc(r.Hops, func(h Hop) bool { return !hasHop(o.Hops, h) }) &&
				(best == nil || len(o.Hops) > len(best.Hops)) {
				best = o
			}
		}
	}
	if best == nil {
		return nil
	}
	return best.clone()
}

// groupOrigElsewhere is the fullest pre-withdrawal version of group n
// that another link's record holds, with every member n has now.
func (ix *index) groupOrigElsewhere(n *Nexthop, except string) *Nexthop {
	var best *Nexthop
	for _, p := range ix.nhs[n.ID] {
		if p.id == except {
			continue
		}
		for _, o := range []*Nexthop{p.e.Orig, p.e.Nexthop} {
			if o == nil || len(o.Group) <= len(n.Group) {
				continue
			}
			if !slices.ContainsFunc(n.Group, func(mb GroupMember) bool { return !hasMember(o.Group, mb.ID) }) &&
				(best == nil || len(o.Group) > len(best.Group)) {
				best = o
			}
		}
	}
	if best == nil {
		return nil
	}
	return best.clone()
}

func (ix *index) nexthopElsewhere(id uint32, except string) bool {
	return slices.ContainsFunc(ix.nhs[id], func(p placedNexthop) bool { return p.id != except })
}

// supersede adds the new entries to a link's record in place of the ones
// for the same kernel routes, in one pass.
func supersede(old, add []*routeEntry) []*routeEntry {
	if len(old) > 0 {
		byKey := make(map[routeKey][]*routeEntry, len(add))
		for _, e := range add {
			byKey[e.Route.key()] = append(byKey[e.Route.key()], e)
		}
		old = slices.DeleteFunc(slices.Clone(old), func(o *routeEntry) bool {
			return slices.ContainsFunc(byKey[o.Route.key()], func(e *routeEntry) bool { return sameAlias(o.Route, e.Route) })
		})
	}
	return append(old, add...)
}

func supersedeNH(old, add []*nexthopEntry) []*nexthopEntry {
	if len(old) > 0 {
		ids := make(map[uint32]bool, len(add))
		for _, e := range add {
			ids[e.Nexthop.ID] = true
		}
		old = slices.DeleteFunc(slices.Clone(old), func(o *nexthopEntry) bool { return ids[o.Nexthop.ID] })
	}
	return append(old, add...)
}
