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
// rules, recording every call.
type fakeKernel struct {
	mu       sync.Mutex
	routes   map[routeKey]*Route
	nexthops map[uint32]*Nexthop
	links    map[int]LinkInfo
	ch       chan Update
	calls    []string
	// fail, if set, can make an operation fail ("add", "replace", "del",
	// "addnh", "replacenh", "delnh").
	fail func(op string, what fmt.Stringer) error
}

func newFake() *fakeKernel {
	return &fakeKernel{routes: map[routeKey]*Route{}, nexthops: map[uint32]*Nexthop{}, links: map[int]LinkInfo{}}
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
	for _, r := range f.routes {
		out = append(out, r.clone())
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

func (f *fakeKernel) AddRoute(r *Route, op Op) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	name := map[Op]string{OpCreate: "add", OpReplace: "replace"}[op]
	if err := f.hook(name, r); err != nil {
		return err
	}
	_, exists := f.routes[r.key()]
	if op == OpCreate && exists {
		return unix.EEXIST
	}
	if op == OpReplace && !exists {
		return unix.ENOENT
	}
	if r.NHID != 0 && f.nexthops[r.NHID] == nil {
		return unix.EINVAL
	}
	c := r.clone()
	if len(c.Hops) == 1 {
		// Like the kernel: a single-path route has no weight.
		c.Hops[0].Weight, c.Multipath = 1, false
	}
	f.routes[r.key()] = c
	return nil
}

func (f *fakeKernel) DeleteRoute(r *Route) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.hook("del", r); err != nil {
		return err
	}
	if f.routes[r.key()] == nil {
		return unix.ESRCH
	}
	delete(f.routes, r.key())
	return nil
}

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
	for k, r := range f.routes {
		if r.NHID == id {
			delete(f.routes, k)
		}
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
	for _, r := range f.routes {
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, "route "+string(b))
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

func (f *fakeKernel) has(k routeKey) *Route {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.routes[k]
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
		f.routes[r.key()] = r.clone()
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
