package routes

import (
	"slices"
	"sync"

	"golang.org/x/sys/unix"
)

// cache mirrors the kernel's routes and nexthop objects so that a carrier
// loss is handled without a dump. It also remembers what the kernel has
// already flushed by itself at carrier loss, which a fresh dump would miss.
type cache struct {
	mu sync.Mutex
	// routes holds, per kernel key, the kernel's routes of that key in
	// the kernel's order: usually one, several after `ip route append`.
	routes   map[routeKey][]*Route
	nexthops map[uint32]*Nexthop
	// flushed holds IPv6 routes using a nexthop object on a link that lost
	// carrier: the kernel deletes them with a notification (IPv4 ones go
	// silently and simply stay in the cache) before LinkDown runs.
	flushed map[int][]*Route
	// Indexes so that a carrier loss looks only at the routes it concerns,
	// even with a full Internet table in the cache.
	byLink map[int]map[routeKey]struct{}
	byNHID map[routeKey]struct{} // keys with a route using a nexthop object
}

func newCache() *cache {
	c := &cache{flushed: map[int][]*Route{}}
	c.reset(0, 0)
	return c
}

func (c *cache) reset(nr, nn int) {
	c.routes = make(map[routeKey][]*Route, nr)
	c.nexthops = make(map[uint32]*Nexthop, nn)
	c.byLink = map[int]map[routeKey]struct{}{}
	c.byNHID = map[routeKey]struct{}{}
}

// setKey makes rs the routes of k, keeping the indexes; c.mu must be held.
func (c *cache) setKey(k routeKey, rs []*Route) {
	c.unindex(k)
	if len(rs) == 0 {
		return
	}
	c.routes[k] = rs
	c.index(k, rs)
}

// index adds k, whose routes are rs, to the indexes; c.mu must be held.
func (c *cache) index(k routeKey, rs []*Route) {
	for _, r := range rs {
		if r.NHID != 0 {
			c.byNHID[k] = struct{}{}
			continue
		}
		for _, h := range r.Hops {
			if h.Ifindex == 0 {
				continue
			}
			m := c.byLink[h.Ifindex]
			if m == nil {
				m = map[routeKey]struct{}{}
				c.byLink[h.Ifindex] = m
			}
			m[k] = struct{}{}
		}
	}
}

// reserveLink sizes the index of a link that has none for n routes: a
// restore refills it, and growing it a doubling at a time was most of
// what a restore allocated. settleLink drops it if it stayed empty.
func (c *cache) reserveLink(ifindex, n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byLink[ifindex] == nil && n > 0 {
		c.byLink[ifindex] = make(map[routeKey]struct{}, n)
	}
}

func (c *cache) settleLink(ifindex int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if m, ok := c.byLink[ifindex]; ok && len(m) == 0 {
		delete(c.byLink, ifindex)
	}
}

func (c *cache) unindex(k routeKey) {
	rs := c.routes[k]
	delete(c.routes, k)
	delete(c.byNHID, k)
	for _, r := range rs {
		for _, h := range r.Hops {
			if m := c.byLink[h.Ifindex]; m != nil {
				delete(m, k)
				if len(m) == 0 {
					delete(c.byLink, h.Ifindex)
				}
			}
		}
	}
}

// put records r where the notice's flags say it went; c.mu must be held.
func (c *cache) put(r *Route, flags uint16) {
	k := r.key()
	rs := slices.Clone(c.routes[k])
	switch i := aliasIndex(rs, r); {
	case i >= 0:
		rs[i] = r
	case flags&unix.NLM_F_REPLACE != 0 && len(rs) > 0:
		rs[0] = r
	case flags&(unix.NLM_F_APPEND|unix.NLM_F_EXCL) == 0 && flags&unix.NLM_F_CREATE != 0 && r.Family == unix.AF_INET:
		rs = slices.Insert(rs, 0, r) // `ip route prepend`
	default:
		rs = append(rs, r)
	}
	c.setKey(k, rs)
}

// drop removes the route r names; c.mu must be held.
func (c *cache) drop(r *Route) {
	k := r.key()
	rs := c.routes[k]
	if i := aliasIndex(rs, r); i >= 0 {
		c.setKey(k, slices.Delete(slices.Clone(rs), i, i+1))
	}
}

func (c *cache) fill(rs []*Route, ns []*Nexthop) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reset(len(rs), len(ns))
	// Straight into the cache's map, then indexed into maps sized once: a
	// map to group the dump by key, and the indexes' growth, were garbage
	// the size of the cache's.
	perLink := map[int]int{}
	for _, r := range rs {
		k := r.key()
		c.routes[k] = append(c.routes[k], r) // dump order is the kernel's
		if r.NHID == 0 {
			for _, h := range r.Hops {
				perLink[h.Ifindex]++
			}
		}
	}
	for ifindex, n := range perLink {
		if ifindex != 0 {
			c.byLink[ifindex] = make(map[routeKey]struct{}, n)
		}
	}
	for k, l := range c.routes {
		c.index(k, l)
	}
	for _, n := range ns {
		c.nexthops[n.ID] = n
	}
}

// route is the first route of k, nil if there is none.
func (c *cache) route(k routeKey) *Route {
	c.mu.Lock()
	defer c.mu.Unlock()
	if rs := c.routes[k]; len(rs) > 0 {
		return rs[0]
	}
	return nil
}

// has: k has a route.
func (c *cache) has(k routeKey) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.routes[k]) > 0
}

// aliases is every route of k, in the kernel's order.
func (c *cache) aliases(k routeKey) []*Route {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.routes[k])
}

func (c *cache) nexthop(id uint32) *Nexthop {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nexthops[id]
}

// setRoute records r in place of the route it is, or after the others.
func (c *cache) setRoute(r *Route) {
	c.mu.Lock()
	c.put(r, 0)
	c.mu.Unlock()
}

// setAliases records what linkbeat just made the routes of k.
func (c *cache) setAliases(k routeKey, rs []*Route) {
	c.mu.Lock()
	c.setKey(k, slices.Clone(rs))
	c.mu.Unlock()
}

func (c *cache) delRoute(r *Route) {
	c.mu.Lock()
	c.drop(r)
	c.mu.Unlock()
}

func (c *cache) setNexthop(n *Nexthop) {
	c.mu.Lock()
	c.nexthops[n.ID] = n
	c.mu.Unlock()
}

func (c *cache) delNexthop(id uint32) {
	c.mu.Lock()
	delete(c.nexthops, id)
	c.mu.Unlock()
}

// snapshot returns, per key, the routes of the keys through ifindex or
// using nexthop objects; all nexthop objects; and the routes the kernel
// flushed at carrier loss of ifindex. Entries are never mutated in place,
// so sharing them is safe.
func (c *cache) snapshot(ifindex int) ([][]*Route, map[uint32]*Nexthop, []*Route) {
	c.mu.Lock()
	defer c.mu.Unlock()
	rs := make([][]*Route, 0, len(c.byLink[ifindex])+len(c.byNHID))
	for k := range c.byLink[ifindex] {
		rs = append(rs, c.routes[k])
	}
	for k := range c.byNHID {
		if _, dup := c.byLink[ifindex][k]; !dup {
			rs = append(rs, c.routes[k])
		}
	}
	ns := make(map[uint32]*Nexthop, len(c.nexthops))
	for id, n := range c.nexthops {
		ns[id] = n
	}
	fl := c.flushed[ifindex]
	delete(c.flushed, ifindex)
	return rs, ns, fl
}

func (c *cache) forgetFlushed(ifindex int) {
	c.mu.Lock()
	delete(c.flushed, ifindex)
	c.mu.Unlock()
}

// nexthopLinks returns the links a nexthop object (or group) sends through.
func nexthopLinks(ns map[uint32]*Nexthop, id uint32) []int {
	n := ns[id]
	if n == nil {
		return nil
	}
	if len(n.Group) == 0 {
		if n.Ifindex == 0 {
			return nil
		}
		return []int{n.Ifindex}
	}
	var out []int
	for _, m := range n.Group {
		if mn := ns[m.ID]; mn != nil && mn.Ifindex != 0 {
			out = append(out, mn.Ifindex)
		}
	}
	return out
}

// apply folds one notification into the cache. carrier is asked only for
// deletions of routes using nexthop objects, off the hot path.
func (c *cache) apply(u Update, carrier func(ifindex int) bool) {
	switch u.Kind {
	case RouteAdded:
		// IPv4 and IPv6 both notify the full route (all hops) on add,
		// append and replace.
		c.mu.Lock()
		c.put(u.Route, u.Flags)
		c.mu.Unlock()
	case RouteDeleted:
		c.routeDeleted(u.Route, carrier)
	case NexthopAdded:
		c.setNexthop(u.Nexthop)
	case NexthopDeleted:
		id := u.Nexthop.ID
		c.mu.Lock()
		defer c.mu.Unlock()
		delete(c.nexthops, id)
		// IPv4 routes using it vanish without a notification.
		for k := range c.byNHID {
			rs := c.routes[k]
			left := slices.DeleteFunc(slices.Clone(rs), func(r *Route) bool { return r.NHID == id && r.Family == unix.AF_INET })
			if len(left) != len(rs) {
				c.setKey(k, left)
			}
		}
	}
}

func (c *cache) routeDeleted(r *Route, carrier func(ifindex int) bool) {
	k := r.key()
	if r.NHID != 0 {
		c.mu.Lock()
		links := nexthopLinks(c.nexthops, r.NHID)
		c.mu.Unlock()
		seen := map[int]bool{}
		for _, l := range links {
			if !seen[l] && !carrier(l) {
				c.mu.Lock()
				if i := aliasIndex(c.routes[k], r); i >= 0 {
					c.flushed[l] = append(c.flushed[l], c.routes[k][i])
				}
				c.mu.Unlock()
			}
			seen[l] = true
		}
		c.delRoute(r)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	rs := c.routes[k]
	i := aliasIndex(rs, r)
	if i < 0 {
		return
	}
	cached := rs[i]
	// IPv6 deletes one sibling of a multipath route at a time and
	// notifies just that hop.
	if r.Family == unix.AF_INET6 && len(cached.Hops) > len(r.Hops) && len(r.Hops) > 0 {
		var left []Hop
		for _, h := range cached.Hops {
			if !hasHop(r.Hops, h) {
				left = append(left, h)
			}
		}
		if len(left) > 0 && len(left) < len(cached.Hops) {
			rs = slices.Clone(rs)
			rs[i] = cached.withOwnHops(left)
			c.setKey(k, rs)
			return
		}
	}
	c.setKey(k, slices.Delete(slices.Clone(rs), i, i+1))
}
