package routes

import (
	"sync"

	"golang.org/x/sys/unix"
)

// cache mirrors the kernel's routes and nexthop objects so that a carrier
// loss is handled without a dump. It also remembers what the kernel has
// already flushed by itself at carrier loss, which a fresh dump would miss.
type cache struct {
	mu       sync.Mutex
	routes   map[routeKey]*Route
	nexthops map[uint32]*Nexthop
	// flushed holds IPv6 routes using a nexthop object on a link that lost
	// carrier: the kernel deletes them with a notification (IPv4 ones go
	// silently and simply stay in the cache) before LinkDown runs.
	flushed map[int][]*Route
	// Indexes so that a carrier loss looks only at the routes it concerns,
	// even with a full Internet table in the cache.
	byLink map[int]map[routeKey]struct{}
	byNHID map[routeKey]struct{} // routes using a nexthop object
}

func newCache() *cache {
	c := &cache{flushed: map[int][]*Route{}}
	c.reset(0, 0)
	return c
}

func (c *cache) reset(nr, nn int) {
	c.routes = make(map[routeKey]*Route, nr)
	c.nexthops = make(map[uint32]*Nexthop, nn)
	c.byLink = map[int]map[routeKey]struct{}{}
	c.byNHID = map[routeKey]struct{}{}
}

// put and remove keep the indexes; c.mu must be held.
func (c *cache) put(r *Route) {
	k := r.key()
	if old := c.routes[k]; old != nil {
		c.remove(k)
	}
	c.routes[k] = r
	if r.NHID != 0 {
		c.byNHID[k] = struct{}{}
		return
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

func (c *cache) remove(k routeKey) {
	r := c.routes[k]
	if r == nil {
		return
	}
	delete(c.routes, k)
	delete(c.byNHID, k)
	for _, h := range r.Hops {
		if m := c.byLink[h.Ifindex]; m != nil {
			delete(m, k)
			if len(m) == 0 {
				delete(c.byLink, h.Ifindex)
			}
		}
	}
}

func (c *cache) fill(rs []*Route, ns []*Nexthop) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reset(len(rs), len(ns))
	for _, r := range rs {
		c.put(r)
	}
	for _, n := range ns {
		c.nexthops[n.ID] = n
	}
}

func (c *cache) route(k routeKey) *Route {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.routes[k]
}

func (c *cache) nexthop(id uint32) *Nexthop {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nexthops[id]
}

func (c *cache) setRoute(r *Route) {
	c.mu.Lock()
	c.put(r)
	c.mu.Unlock()
}

func (c *cache) delRoute(k routeKey) {
	c.mu.Lock()
	c.remove(k)
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

// snapshot returns the routes through ifindex, those using nexthop objects,
// all nexthop objects, and the routes the kernel flushed at carrier loss of
// ifindex. Entries are never mutated in place, so sharing them is safe.
func (c *cache) snapshot(ifindex int) ([]*Route, map[uint32]*Nexthop, []*Route) {
	c.mu.Lock()
	defer c.mu.Unlock()
	rs := make([]*Route, 0, len(c.byLink[ifindex])+len(c.byNHID))
	for k := range c.byLink[ifindex] {
		rs = append(rs, c.routes[k])
	}
	for k := range c.byNHID {
		rs = append(rs, c.routes[k])
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
		c.setRoute(u.Route)
	case RouteDeleted:
		r := u.Route
		k := r.key()
		if r.NHID != 0 {
			c.mu.Lock()
			links := nexthopLinks(c.nexthops, r.NHID)
			c.mu.Unlock()
			seen := map[int]bool{}
			for _, l := range links {
				if !seen[l] && !carrier(l) {
					c.mu.Lock()
					if cached := c.routes[k]; cached != nil {
						c.flushed[l] = append(c.flushed[l], cached)
					}
					c.mu.Unlock()
				}
				seen[l] = true
			}
			c.delRoute(k)
			return
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		cached := c.routes[k]
		if cached == nil {
			return
		}
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
				c.put(cached.withHops(left))
				return
			}
		}
		c.remove(k)
	case NexthopAdded:
		c.setNexthop(u.Nexthop)
	case NexthopDeleted:
		id := u.Nexthop.ID
		c.mu.Lock()
		defer c.mu.Unlock()
		delete(c.nexthops, id)
		// IPv4 routes using it vanish without a notification.
		for k := range c.byNHID {
			if r := c.routes[k]; r.NHID == id && r.Family == unix.AF_INET {
				c.remove(k)
			}
		}
	}
}
