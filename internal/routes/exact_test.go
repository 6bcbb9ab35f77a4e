package routes

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

var linkNames = map[int]string{2: "eth0", 3: "eth1", 4: "eth2"}

// TestAppendTwins: `ip route append` twins of one key through two links.
// Each is withdrawn with its link alone, and comes back in its place
// whatever order the links fail and recover in.
func TestAppendTwins(t *testing.T) {
	for _, seq := range []string{"0- 0+", "1- 1+", "0- 1- 0+ 1+", "0- 1- 1+ 0+", "1- 0- 0+ 1+", "1- 0- 1+ 0+"} {
		t.Run(seq, func(t *testing.T) {
			t1 := route4("13.0.0.0/8", hop(2, "5.5.5.1", 1))
			t2 := route4("13.0.0.0/8", hop(3, "6.6.6.1", 1))
			f, m, _ := setup(t, []*Route{t1, t2}, nil)
			before := f.snapshot(t)
			for _, step := range strings.Fields(seq) {
				idx := 2 + int(step[0]-'0')
				if step[1] == '-' {
					f.setCarrier(idx, false)
					mustDown(t, m, idx, linkNames[idx])
					for _, r := range f.all(t1) {
						if r.Hops[0].Ifindex == idx {
							t.Fatalf("%s: %s still there while its link is down", seq, r)
						}
					}
				} else {
					f.setCarrier(idx, true)
					mustUp(t, m, idx, linkNames[idx])
				}
			}
			sameTable(t, f.snapshot(t), before)
		})
	}
}

// TestOnePrefixTwoMetrics: routes of one prefix at two metrics are two
// kernel keys; the one through the dead link goes, the other stays.
func TestOnePrefixTwoMetrics(t *testing.T) {
	a := route4("203.0.113.0/24", hop(2, "10.1.0.254", 1))
	a.Priority = 10
	b := route4("203.0.113.0/24", hop(3, "10.2.0.254", 1))
	b.Priority = 20
	a6 := route6("2001:db8:5::/64", hop(2, "2001:db8:1::1", 1))
	a6.Priority = 10
	b6 := route6("2001:db8:5::/64", hop(3, "2001:db8:2::1", 1))
	b6.Priority = 20
	f, m, _ := setup(t, []*Route{a, b, a6, b6}, nil)
	before := f.snapshot(t)
	f.setCarrier(2, false)
	if res := mustDown(t, m, 2, "eth0"); res.Withdrawn != 2 {
		t.Fatalf("withdrew %d, want the two metric-10 routes", res.Withdrawn)
	}
	for _, r := range []*Route{a, a6} {
		if f.has(r) != nil {
			t.Errorf("%s still there", r)
		}
	}
	for _, r := range []*Route{b, b6} {
		if got := f.has(r); got == nil || got.Hops[0].Ifindex != 3 {
			t.Errorf("%s gone or changed: %v", r, got)
		}
	}
	// Someone adds the prefix at a third metric: another key, so not a
	// re-added route of ours.
	c := route4("203.0.113.0/24", hop(3, "10.2.0.253", 1))
	c.Priority = 30
	f.mu.Lock()
	f.put(c)
	f.notify(Update{Kind: RouteAdded, Route: c.clone()})
	f.mu.Unlock()
	eventually(t, "cache to hear of the metric-30 route", func() bool { return m.cache.route(c.key()) != nil })
	f.setCarrier(2, true)
	if res := mustUp(t, m, 2, "eth0"); res.Restored != 2 {
		t.Fatalf("restored %d, want 2 (%+v)", res.Restored, res)
	}
	f.mu.Lock()
	f.drop(c)
	f.mu.Unlock()
	sameTable(t, f.snapshot(t), before)
}

// TestForgetKeepsOrphanedPartial: an IPv6 multipath route through A and
// B; B dies (its hop taken out), A dies (the rest goes), A is deleted. B's
// hop must come back when B does: A's record was the only other one.
func TestForgetKeepsOrphanedPartial(t *testing.T) {
	def := route6("::/0", hop(2, "2001:db8:1::1", 1), hop(3, "2001:db8:2::1", 3))
	f, m, _ := setup(t, []*Route{def}, nil)
	f.setCarrier(3, false)
	mustDown(t, m, 3, "eth1")
	m.cache.setRoute(f.has(def).clone()) // the kernel's notice
	f.setCarrier(2, false)
	mustDown(t, m, 2, "eth0")
	f.mu.Lock()
	delete(f.links, 2)
	f.mu.Unlock()
	if err := m.Forget(2); err != nil {
		t.Fatal(err)
	}
	f.setCarrier(3, true)
	if res := mustUp(t, m, 3, "eth1"); res.Restored != 1 {
		t.Fatalf("restored %d, want eth1's hop", res.Restored)
	}
	got := f.has(def)
	if got == nil || len(got.Hops) != 1 || got.Hops[0].Ifindex != 3 || got.Hops[0].Gateway != ip("2001:db8:2::1") {
		t.Fatalf("after eth1 up: %v, want ::/0 via eth1", got)
	}
	if len(m.Withdrawn()) != 0 {
		t.Fatalf("still withdrawn: %v", m.Withdrawn())
	}
}

// TestRefusedNexthopWaitsForCarrier: a restore that races the next
// carrier loss has its nexthop object refused (ENETDOWN). That is "no
// carrier", not an error; the record stays for the next LinkUp.
func TestRefusedNexthopWaitsForCarrier(t *testing.T) {
	nhs := []*Nexthop{{ID: 10, Family: unix.AF_INET, Ifindex: 2, Gateway: ip("10.1.0.2")}}
	r := route4("198.51.101.0/24")
	r.NHID = 10
	f, m, _ := setup(t, []*Route{r}, nhs)
	before := f.snapshot(t)
	f.mu.Lock()
	f.links[2] = LinkInfo{Name: "eth0"}
	f.flushNexthop(10)
	f.mu.Unlock()
	mustDown(t, m, 2, "eth0")
	f.setCarrier(2, true)
	f.fail = func(op string, _ fmt.Stringer) error {
		if op == "addnh" {
			return fmt.Errorf("add nexthop: %w", unix.ENETDOWN)
		}
		return nil
	}
	res, err := m.LinkUp(2, "eth0")
	if err != nil {
		t.Fatalf("LinkUp with the nexthop refused: %v, want no error", err)
	}
	if !res.NoCarrier || res.Restored != 0 || m.Withdrawn()["eth0"] != 2 {
		t.Fatalf("LinkUp with the nexthop refused: %+v, withdrawn %v; want NoCarrier and both kept", res, m.Withdrawn())
	}
	f.fail = nil
	if res := mustUp(t, m, 2, "eth0"); res.Restored != 2 {
		t.Fatalf("restored %d, want 2", res.Restored)
	}
	sameTable(t, f.snapshot(t), before)
}

// TestExactRestoreProperty: random route sets over three links (static,
// append twins, weighted IPv4 and IPv6 multipath, nexthop objects and
// weighted groups) and random failure orders, against the fake kernel.
// While a link is down nothing routes through it; once all are back the
// table is identical, order of twins and group members included. Between
// steps the daemon may die and restart from its record, journal unfolded.
// LINKBEAT_ROUTES_SEED replays a run.
func TestExactRestoreProperty(t *testing.T) {
	seed := rand.Uint64()
	if s := os.Getenv("LINKBEAT_ROUTES_SEED"); s != "" {
		if _, err := fmt.Sscan(s, &seed); err != nil {
			t.Fatalf("LINKBEAT_ROUTES_SEED=%q: %v", s, err)
		}
	}
	t.Logf("seed %d (replay with LINKBEAT_ROUTES_SEED=%d)", seed, seed)
	for trial := range 200 {
		rng := rand.New(rand.NewPCG(seed, uint64(trial)))
		rs, nhs := propRoutes(rng)
		f, m, dir := setup(t, rs, nhs)
		f.links[4] = LinkInfo{Name: "eth2", Carrier: true}
		before := f.snapshot(t)
		down := map[int]bool{}
		var order []string
		flip := func(idx int) {
			down[idx] = !down[idx]
			order = append(order, fmt.Sprintf("%s%s", linkNames[idx], map[bool]string{true: "-", false: "+"}[down[idx]]))
			if down[idx] {
				f.loseCarrier(t, m, idx)
				if _, err := m.LinkDown(idx, linkNames[idx]); err != nil {
					t.Fatalf("trial %d, %v: %v", trial, order, err)
				}
				return
			}
			f.setCarrier(idx, true)
			if _, err := m.LinkUp(idx, linkNames[idx]); err != nil {
				t.Fatalf("trial %d, %v: %v", trial, order, err)
			}
		}
		for range 3 + rng.IntN(8) {
			flip(2 + rng.IntN(3))
			if rng.IntN(3) == 0 {
				// The daemon dies (no Close: its journal is not folded)
				// and the next one starts from the same record.
				m = start(t, f, dir)
				order = append(order, "restart")
			}
			if r := f.through(down); r != "" {
				t.Fatalf("trial %d (seed %d), after %v: %s still routes through a dead link", trial, seed, order, r)
			}
			// Not only nothing dead: everything with a live path is there,
			// as it was, in its place.
			if got, want := f.snapshot(t), project(t, rs, nhs, down); !slicesEqual(got, want) {
				t.Fatalf("trial %d (seed %d), after %v the table is not the original less the dead links:%s",
					trial, seed, order, lineDiff(got, want))
			}
		}
		for _, i := range rng.Perm(3) {
			if down[2+i] {
				flip(2 + i)
			}
		}
		if got := f.snapshot(t); !slicesEqual(got, before) {
			t.Fatalf("trial %d (seed %d), after %v the table differs\n got:\n  %s\nwant:\n  %s", trial, seed, order,
				strings.Join(got, "\n  "), strings.Join(before, "\n  "))
		}
	}
}

func slicesEqual(a, b []string) bool { return strings.Join(a, "\n") == strings.Join(b, "\n") }

// propRoutes is a random route set over links 2, 3 and 4.
func propRoutes(rng *rand.Rand) ([]*Route, []*Nexthop) {
	links := func(min int) []int {
		l := rng.Perm(3)
		l = l[:min+rng.IntN(3-min+1)]
		for i := range l {
			l[i] += 2
		}
		return l
	}
	gw := func(l, h int) string { return fmt.Sprintf("10.%d.0.%d", l, h) }
	gw6 := func(l, h int) string { return fmt.Sprintf("2001:db8:%d::%d", l, h) }
	var rs []*Route
	for n := range 2 + rng.IntN(3) {
		r := route4(fmt.Sprintf("198.18.%d.0/24", n), hop(2+n%3, gw(2+n%3, 2), 1))
		r.Priority = uint32(rng.IntN(3) * 10)
		rs = append(rs, r)
	}
	for n := range 1 + rng.IntN(3) {
		for j, l := range links(2) {
			g := gw(l, 2+j)
			if n == 2 {
				g = ""
			}
			rs = append(rs, route4(fmt.Sprintf("198.19.%d.0/24", n), hop(l, g, 1)))
		}
	}
	for n := range 1 + rng.IntN(2) {
		var h4, h6 []Hop
		for _, l := range links(2) {
			w := 1 + rng.IntN(5)
			h4 = append(h4, hop(l, gw(l, 2), w))
			h6 = append(h6, hop(l, gw6(l, 2), w))
		}
		rs = append(rs, route4(fmt.Sprintf("198.20.%d.0/24", n), h4...), route6(fmt.Sprintf("2001:db8:e%d::/64", n), h6...))
	}
	for _, l := range links(2) {
		rs = append(rs, route6("2001:db8:c0::/64", hop(l, "", 1)))
	}
	var nhs []*Nexthop
	for l := 2; l <= 4; l++ {
		nhs = append(nhs, &Nexthop{ID: uint32(10 + l), Family: unix.AF_INET, Ifindex: l, Gateway: ip(gw(l, 2))},
			&Nexthop{ID: uint32(30 + l), Family: unix.AF_INET6, Ifindex: l, Gateway: ip(gw6(l, 2))})
	}
	for n := range 1 + rng.IntN(2) {
		var g, g6 []GroupMember
		for _, l := range links(2) {
			w := 1 + rng.IntN(4)
			g = append(g, GroupMember{uint32(10 + l), w})
			g6 = append(g6, GroupMember{uint32(30 + l), w})
		}
		nhs = append(nhs, &Nexthop{ID: uint32(20 + n), Group: g}, &Nexthop{ID: uint32(40 + n), Group: g6})
		r, r6 := route4(fmt.Sprintf("198.21.%d.0/24", n)), route6(fmt.Sprintf("2001:db8:d%d::/64", n))
		r.NHID, r6.NHID = uint32(20+n), uint32(40+n)
		rs = append(rs, r, r6)
	}
	l := 2 + rng.IntN(3)
	r, r6 := route4("198.22.0.0/24"), route6("2001:db8:b0::/64")
	r.NHID, r6.NHID = uint32(10+l), uint32(30+l)
	return append(rs, r, r6), nhs
}

// loseCarrier does what the kernel does at carrier loss of idx: flush its
// nexthop objects silently, and notify the IPv6 routes that go with them.
func (f *fakeKernel) loseCarrier(t *testing.T, m *Manager, idx int) {
	t.Helper()
	f.mu.Lock()
	li := f.links[idx]
	li.Carrier = false
	f.links[idx] = li
	var gone6 []*Route
	for id, n := range f.nexthops {
		if len(n.Group) == 0 && n.Ifindex == idx {
			before := f.allRoutes()
			f.flushNexthop(id)
			after := f.allRoutes()
			for _, r := range before {
				if r.Family == unix.AF_INET6 && r.NHID != 0 && !containsRoute(after, r) {
					gone6 = append(gone6, r)
				}
			}
		}
	}
	for _, r := range gone6 {
		f.notify(Update{Kind: RouteDeleted, Route: r.clone()})
	}
	f.mu.Unlock()
	for _, r := range gone6 {
		eventually(t, "cache to hear of "+r.String(), func() bool {
			return aliasIndex(m.cache.aliases(r.key()), r) < 0
		})
	}
}

func (f *fakeKernel) allRoutes() []*Route {
	var out []*Route
	for _, rs := range f.routes {
		out = append(out, rs...)
	}
	return out
}

func containsRoute(rs []*Route, r *Route) bool {
	for _, o := range rs {
		if o == r {
			return true
		}
	}
	return false
}

// through names a route or nexthop object that still uses a down link.
func (f *fakeKernel) through(down map[int]bool) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, rs := range f.routes {
		for _, r := range rs {
			for _, h := range r.Hops {
				if down[h.Ifindex] {
					return r.String()
				}
			}
		}
	}
	for _, n := range f.nexthops {
		if down[n.Ifindex] {
			return n.String()
		}
	}
	return ""
}

// all is every route of r's key, in order.
func (f *fakeKernel) all(r *Route) []*Route {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*Route(nil), f.routes[kernelKey(r)]...)
}

// project is the table the original routes and nexthops make with the
// down links taken out, as the kernel would hold it: what a correct
// withdrawal leaves at any moment.
func project(t *testing.T, rs []*Route, nhs []*Nexthop, down map[int]bool) []string {
	t.Helper()
	p := newFake()
	for _, n := range nhs {
		if len(n.Group) == 0 && !down[n.Ifindex] {
			p.nexthops[n.ID] = n.clone()
		}
	}
	for _, n := range nhs {
		var live []GroupMember
		for _, mb := range n.Group {
			if p.nexthops[mb.ID] != nil {
				live = append(live, mb)
			}
		}
		if len(live) > 0 {
			p.nexthops[n.ID] = n.withGroup(live)
		}
	}
	for _, r := range rs {
		if r.NHID != 0 {
			if p.nexthops[r.NHID] != nil {
				p.put(r)
			}
			continue
		}
		var live []Hop
		for _, h := range r.Hops {
			if !down[h.Ifindex] {
				live = append(live, h)
			}
		}
		if len(live) > 0 {
			p.put(r.withHops(live))
		}
	}
	return p.snapshot(t)
}

// lineDiff lists the lines only one side has (- want, + got).
func lineDiff(got, want []string) string {
	var b strings.Builder
	for _, l := range want {
		if !slices.Contains(got, l) {
			b.WriteString("\n  - " + l)
		}
	}
	for _, l := range got {
		if !slices.Contains(want, l) {
			b.WriteString("\n  + " + l)
		}
	}
	return b.String()
}

// TestRestoresStateOfPreviousRelease: a record written by the previous
// release (indented JSON, every field spelled out) is read by this one
// and restores exactly. testdata/state-v1.json was written by that
// release's LinkDown of eth0 over the routes below.
func TestRestoresStateOfPreviousRelease(t *testing.T) {
	conn := connected4("10.1.0.0/24", 2, "10.1.0.1")
	static := route4("203.0.113.0/24", hop(2, "10.1.0.254", 1))
	static.Priority = 50
	def := route4("0.0.0.0/0", hop(2, "10.1.0.254", 1), hop(3, "10.2.0.254", 2))
	def6 := route6("::/0", hop(3, "2001:db8:2::1", 3), hop(2, "2001:db8:1::1", 1))
	nhs := []*Nexthop{
		{ID: 10, Family: unix.AF_INET, Protocol: unix.RTPROT_BOOT, Ifindex: 2, Gateway: ip("10.1.0.2")},
		{ID: 11, Family: unix.AF_INET, Protocol: unix.RTPROT_BOOT, Ifindex: 3, Gateway: ip("10.2.0.2")},
		{ID: 20, Protocol: unix.RTPROT_BOOT, Group: []GroupMember{{10, 1}, {11, 2}}},
	}
	r10 := route4("198.51.101.0/24")
	r10.NHID = 10
	f := newFake()
	f.links[2] = LinkInfo{Name: "eth0", Carrier: true}
	f.links[3] = LinkInfo{Name: "eth1", Carrier: true}
	for _, r := range []*Route{conn, static, def, def6, r10} {
		f.put(r)
	}
	for _, n := range nhs {
		f.nexthops[n.ID] = n.clone()
	}
	before := f.snapshot(t)
	// The kernel as that LinkDown left it.
	f.drop(conn)
	f.drop(static)
	f.set(def.withHops(def.Hops[1:]))
	f.set(def6.withHops(def6.Hops[:1]))
	f.flushNexthop(10)

	old, err := os.ReadFile("testdata/state-v1.json")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(dir+"/"+stateFile, old, 0o600); err != nil {
		t.Fatal(err)
	}
	m := start(t, f, dir)
	if got := m.Withdrawn()["eth0"]; got != 7 {
		t.Fatalf("read %d withdrawn from the old record, want 7", got)
	}
	if res := mustUp(t, m, 2, "eth0"); res.Restored != 7 {
		t.Fatalf("restored %d, want 7 (%+v)", res.Restored, res)
	}
	sameTable(t, f.snapshot(t), before)
}
