package routes

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fakeKernel is an in-memory routing table with the kernel's key and EEXIST
// rules, recording every call. Its key (kernelKey) and its rules for
// routes of one key are written from the kernel's fib code, not taken from
// the code under test: a bug in Route.key() or in how the manager orders
// routes of a key must fail the tests.
type fakeKernel struct {
	mu       sync.Mutex
	routes   map[kkey][]*Route // per key, in the kernel's order
	nexthops map[uint32]*Nexthop
	links    map[int]LinkInfo
	ch       chan Update
	calls    []string
	// fail, if set, can make an operation fail ("add", "replace", "del",
	// "addnh", "replacenh", "delnh").
	fail func(op string, what fmt.Stringer) error
}

// kkey is what the kernel compares to tell routes apart. IPv4
// (fib_table_insert, fib_find_alias): table, destination prefix, TOS and
// priority; there is no source prefix. IPv6 (fib6_add_rt2node): table,
// destination and source prefixes and metric, where metric 0 means 1024
// (IP6_RT_PRIO_USER); TOS plays no part.
type kkey struct {
	family   uint8
	table    uint32
	dst, src string
	tos      uint8
	metric   uint32
}

func kernelKey(r *Route) kkey {
	k := kkey{family: r.Family, table: r.Table, dst: r.Dst.Masked().String(), metric: r.Priority}
	if r.Family == unix.AF_INET {
		k.tos = r.TOS
		return k
	}
	if r.Src.IsValid() && r.Src.Bits() > 0 {
		k.src = r.Src.Masked().String()
	}
	if k.metric == 0 {
		k.metric = 1024
	}
	return k
}

func newFake() *fakeKernel {
	return &fakeKernel{routes: map[kkey][]*Route{}, nexthops: map[uint32]*Nexthop{}, links: map[int]LinkInfo{}}
}

func (f *fakeKernel) hook(op string, what fmt.Stringer) error {
	f.calls = append(f.calls, op+" "+what.String())
	if f.fail != nil {
		return f.fail(op, what)
	}
	return nil
}

func (f *fakeKernel) Routes() ([]*Route, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*Route
	for _, rs := range f.routes {
		for _, r := range rs {
			out = append(out, r.clone())
		}
	}
	return out, nil
}

func (f *fakeKernel) Nexthops() ([]*Nexthop, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*Nexthop
	for _, n := range f.nexthops {
		out = append(out, n.clone())
	}
	return out, nil
}

// stored is r as the kernel keeps it: a single hop has no weight and is
// not multipath.
func stored(r *Route) *Route {
	c := r.clone()
	if len(c.Hops) == 1 {
		c.Hops[0].Weight, c.Multipath = 1, false
	}
	return c
}

// ecmp6: an IPv6 route the kernel joins with others of its key into one
// multipath route (rt6_qualify_for_ecmp: a gateway, no nexthop object).
func ecmp6(r *Route) bool {
	return r.Family == unix.AF_INET6 && r.NHID == 0 && len(r.Hops) > 0 && r.Hops[0].Gateway.IsValid()
}

func sameFakeHops(a, b *Route) bool {
	return a.Type == b.Type && a.NHID == b.NHID &&
		slices.EqualFunc(a.Hops, b.Hops, func(x, y Hop) bool { return x.Ifindex == y.Ifindex && x.Gateway == y.Gateway })
}

func (f *fakeKernel) AddRoute(r *Route, op Op) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	name := map[Op]string{OpCreate: "add", OpReplace: "replace", OpAppend: "append", OpPrepend: "prepend"}[op]
	if err := f.hook(name, r); err != nil {
		return err
	}
	if r.NHID != 0 && f.nexthops[r.NHID] == nil {
		return unix.EINVAL
	}
	k := kernelKey(r)
	rs := slices.Clone(f.routes[k])
	switch op {
	case OpCreate:
		if len(rs) > 0 {
			return unix.EEXIST
		}
		rs = []*Route{stored(r)}
	case OpReplace:
		i := 0
		if r.Family == unix.AF_INET6 {
			i = slices.IndexFunc(rs, func(o *Route) bool { return ecmp6(o) == ecmp6(r) })
		}
		if i < 0 || len(rs) == 0 {
			return unix.ENOENT
		}
		rs[i] = stored(r)
	default:
		var err error
		if rs, err = fakeInsert(rs, r, op); err != nil {
			return err
		}
	}
	f.routes[k] = rs
	return nil
}

// fakeInsert adds r to a key's routes as `ip route append/prepend` would.
func fakeInsert(rs []*Route, r *Route, op Op) ([]*Route, error) {
	if slices.ContainsFunc(rs, func(o *Route) bool { return sameFakeHops(o, r) }) {
		return nil, unix.EEXIST
	}
	if ecmp6(r) {
		if i := slices.IndexFunc(rs, ecmp6); i >= 0 {
			// IPv6 makes it a sibling of the multipath route there.
			for _, h := range r.Hops {
				if hasHop(rs[i].Hops, h) {
					return nil, unix.EEXIST
				}
			}
			rs[i] = rs[i].withHops(append(slices.Clone(rs[i].Hops), r.Hops...))
			rs[i].Multipath = true
			return rs, nil
		}
	}
	if op == OpPrepend && r.Family == unix.AF_INET {
		return slices.Insert(rs, 0, stored(r)), nil
	}
	return append(rs, stored(r)), nil
}

func (f *fakeKernel) DeleteRoute(r *Route) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.hook("del", r); err != nil {
		return err
	}
	if r.NHID != 0 && f.nexthops[r.NHID] == nil {
		return unix.ESRCH // the kernel's EINVAL, as DeleteRoute reports it
	}
	k := kernelKey(r)
	rs := slices.Clone(f.routes[k])
	if r.Family == unix.AF_INET6 && r.NHID == 0 && len(r.Hops) > 0 && r.Hops[0].Gateway.IsValid() {
		// IPv6 deletes the hops named, each from the route holding it.
		for _, h := range r.Hops {
			i := slices.IndexFunc(rs, func(o *Route) bool { return o.NHID == 0 && hasHop(o.Hops, h) })
			if i < 0 {
				return unix.ESRCH
			}
			left := slices.DeleteFunc(slices.Clone(rs[i].Hops), h.same)
			if len(left) == 0 {
				rs = slices.Delete(rs, i, i+1)
			} else {
				rs[i] = stored(rs[i].withHops(left))
			}
		}
	} else {
		i := slices.IndexFunc(rs, func(o *Route) bool {
			if r.NHID != 0 || o.NHID != 0 {
				return r.NHID == o.NHID
			}
			return len(r.Hops) == 0 || sameFakeHops(o, r)
		})
		if i < 0 {
			return unix.ESRCH
		}
		rs = slices.Delete(rs, i, i+1)
	}
	f.setKey(k, rs)
	return nil
}

func (f *fakeKernel) ApplyRoutes(changes []RouteChange) []error {
	errs := make([]error, len(changes))
	for i, c := range changes {
		if c.Delete {
			errs[i] = f.DeleteRoute(c.Route)
		} else {
			errs[i] = f.AddRoute(c.Route, c.Op)
		}
	}
	return errs
}

func (f *fakeKernel) setKey(k kkey, rs []*Route) {
	if len(rs) == 0 {
		delete(f.routes, k)
		return
	}
	f.routes[k] = rs
}

// put appends r to its key's routes behind the manager's back.
func (f *fakeKernel) put(r *Route) {
	k := kernelKey(r)
	f.routes[k] = append(f.routes[k], stored(r))
}

// set makes r the only route of its key behind the manager's back.
func (f *fakeKernel) set(r *Route) { f.routes[kernelKey(r)] = []*Route{stored(r)} }

// drop deletes every route of r's key behind the manager's back.
func (f *fakeKernel) drop(r *Route) { delete(f.routes, kernelKey(r)) }

func (f *fakeKernel) AddNexthop(n *Nexthop, op Op) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	name := map[Op]string{OpCreate: "addnh", OpReplace: "replacenh"}[op]
	if err := f.hook(name, n); err != nil {
		return err
	}
	_, exists := f.nexthops[n.ID]
	if op == OpCreate && exists {
		return unix.EEXIST
	}
	if op == OpReplace && !exists {
		return unix.ENOENT
	}
	for _, m := range n.Group {
		if f.nexthops[m.ID] == nil {
			return unix.EINVAL
		}
	}
	f.nexthops[n.ID] = n.clone()
	return nil
}

type nhID uint32

func (i nhID) String() string { return fmt.Sprintf("nexthop %d", uint32(i)) }

func (f *fakeKernel) DeleteNexthop(id uint32) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.hook("delnh", nhID(id)); err != nil {
		return err
	}
	if f.nexthops[id] == nil {
		return unix.ENOENT
	}
	f.flushNexthop(id)
	return nil
}

// flushNexthop removes a nexthop as the kernel does: out of groups, and
// with the routes using it. f.mu must be held.
func (f *fakeKernel) flushNexthop(id uint32) {
	delete(f.nexthops, id)
	for k, rs := range f.routes {
		f.setKey(k, slices.DeleteFunc(slices.Clone(rs), func(r *Route) bool { return r.NHID == id }))
	}
	for gid, g := range f.nexthops {
		if len(g.Group) > 0 && hasMember(g.Group, id) {
			left := slices.DeleteFunc(slices.Clone(g.Group), func(m GroupMember) bool { return m.ID == id })
			if len(left) == 0 {
				f.flushNexthop(gid)
			} else {
				f.nexthops[gid] = g.withGroup(left)
			}
		}
	}
}

func (f *fakeKernel) Subscribe(ctx context.Context) (<-chan Update, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ch = make(chan Update, 1000)
	ch := f.ch
	go func() { <-ctx.Done(); f.mu.Lock(); close(ch); f.ch = nil; f.mu.Unlock() }()
	return ch, nil
}

func (f *fakeKernel) Link(ifindex int) (LinkInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	li, ok := f.links[ifindex]
	if !ok {
		return li, ErrNoLink
	}
	return li, nil
}

// notify sends a notification as if the kernel had; f.mu must be held.
func (f *fakeKernel) notify(u Update) {
	if f.ch != nil {
		f.ch <- u
	}
}

func (f *fakeKernel) setCarrier(ifindex int, up bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	li := f.links[ifindex]
	li.Carrier = up
	f.links[ifindex] = li
}

// snapshot is the fake's whole table as sorted JSON lines, for comparing.
func (f *fakeKernel) snapshot(t *testing.T) []string {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, rs := range f.routes {
		for i, r := range rs {
			b, err := json.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			// The position among routes of the key is part of the state.
			out = append(out, fmt.Sprintf("route %s/%s #%d %s", r.Dst, r.Src, i, b))
		}
	}
	for _, n := range f.nexthops {
		b, err := json.Marshal(n)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, "nexthop "+string(b))
	}
	slices.Sort(out)
	return out
}

// has is the first route of r's key, nil if there is none.
func (f *fakeKernel) has(r *Route) *Route {
	f.mu.Lock()
	defer f.mu.Unlock()
	if rs := f.routes[kernelKey(r)]; len(rs) > 0 {
		return rs[0]
	}
	return nil
}

func (f *fakeKernel) callCount(prefix string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		if len(c) >= len(prefix) && c[:len(prefix)] == prefix {
			n++
		}
	}
	return n
}

// ---- builders ----

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func ip(s string) netip.Addr    { return netip.MustParseAddr(s) }

func route4(dst string, hops ...Hop) *Route {
	r := &Route{Family: unix.AF_INET, Dst: pfx(dst), Table: unix.RT_TABLE_MAIN, Protocol: unix.RTPROT_STATIC,
		Scope: unix.RT_SCOPE_UNIVERSE, Type: unix.RTN_UNICAST, Hops: hops, Multipath: len(hops) > 1}
	return r
}

func route6(dst string, hops ...Hop) *Route {
	r := route4(dst, hops...)
	r.Family = unix.AF_INET6
	r.Priority = 1024
	return r
}

func connected4(dst string, dev int, src string) *Route {
	r := route4(dst, Hop{Ifindex: dev, Weight: 1})
	r.Protocol, r.Scope, r.PrefSrc = unix.RTPROT_KERNEL, unix.RT_SCOPE_LINK, ip(src)
	return r
}

func hop(dev int, gw string, w int) Hop {
	h := Hop{Ifindex: dev, Weight: w}
	if gw != "" {
		h.Gateway = ip(gw)
	}
	return h
}

// setup builds a fake with links 2 (eth0) and 3 (eth1) up, the given
// routes and nexthops, and a started Manager on a temp state dir.
func setup(t *testing.T, routes []*Route, nhs []*Nexthop) (*fakeKernel, *Manager, string) {
	t.Helper()
	f := newFake()
	f.links[2] = LinkInfo{Name: "eth0", Carrier: true}
	f.links[3] = LinkInfo{Name: "eth1", Carrier: true}
	for _, r := range routes {
		f.put(r)
	}
	for _, n := range nhs {
		f.nexthops[n.ID] = n.clone()
	}
	dir := t.TempDir()
	return f, start(t, f, dir), dir
}

func start(t *testing.T, f *fakeKernel, dir string) *Manager {
	t.Helper()
	m, err := New(Config{StateDir: dir}, f)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return m
}

// eventually waits for the cache (fed asynchronously) to satisfy cond.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
