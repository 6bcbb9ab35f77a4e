package routes

import "slices"

// entrySet is a set of one link's withdrawn entries: those a withdrawal
// found gone already, or those a restore is done with.
type entrySet struct {
	routes   map[*routeEntry]bool
	nexthops map[*nexthopEntry]bool
}

func newEntrySet() entrySet {
	return entrySet{routes: map[*routeEntry]bool{}, nexthops: map[*nexthopEntry]bool{}}
}

func (s entrySet) len() int { return len(s.routes) + len(s.nexthops) }

// removeFrom drops the entries in the set from the link's record.
func (s entrySet) removeFrom(ls *linkState) {
	ls.Routes = slices.DeleteFunc(ls.Routes, func(e *routeEntry) bool { return s.routes[e] })
	ls.Nexthops = slices.DeleteFunc(ls.Nexthops, func(e *nexthopEntry) bool { return s.nexthops[e] })
}
