package routes

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func mustDown(t *testing.T, m *Manager, ifindex int, name string) Result {
	t.Helper()
	res, err := m.LinkDown(ifindex, name)
	if err != nil {
		t.Fatalf("LinkDown(%s): %v", name, err)
	}
	return res
}

func mustUp(t *testing.T, m *Manager, ifindex int, name string) Result {
	t.Helper()
	res, err := m.LinkUp(ifindex, name)
	if err != nil {
		t.Fatalf("LinkUp(%s): %v", name, err)
	}
	return res
}

func sameTable(t *testing.T, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("table differs\n got:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func TestSinglePathWithdrawRestore(t *testing.T) {
	conn := connected4("10.1.0.0/24", 2, "10.1.0.1")
	static := route4("203.0.113.0/24", hop(2, "10.1.0.254", 1))
	static.Table, static.Priority, static.Flags = 100, 50, unix.RTNH_F_ONLINK
	static.Hops[0].Flags = unix.RTNH_F_ONLINK
	v6 := route6("2001:db8:1::/64", hop(2, "", 1))
	v6.Protocol = unix.RTPROT_KERNEL
	ll := route6("fe80::/64", hop(2, "", 1))
	local := route4("10.1.0.1/32", hop(2, "", 1))
	local.Table, local.Type = unix.RT_TABLE_LOCAL, unix.RTN_LOCAL
	other := route4("198.51.100.0/24", hop(3, "10.2.0.254", 1))
	f, m, dir := setup(t, []*Route{conn, static, v6, ll, local, other}, nil)
	before := f.snapshot(t)

	f.setCarrier(2, false)
	res := mustDown(t, m, 2, "eth0")
	if res.Withdrawn != 3 {
		t.Fatalf("withdrew %d, want 3 (connected, static, IPv6 connected)", res.Withdrawn)
	}
	for _, r := range []*Route{conn, static, v6} {
		if f.has(r) != nil {
			t.Errorf("%s still in the kernel", r)
		}
	}
	for _, r := range []*Route{ll, local, other} {
		if f.has(r) == nil {
			t.Errorf("%s was removed; it must not be touched", r)
		}
	}
	if got := m.Withdrawn()["eth0"]; got != 3 {
		t.Errorf("Withdrawn()[eth0] = %d, want 3", got)
	}
	if st, err := loadState(dir); err != nil || st.Links[linkID("eth0", 2)].count() != 3 {
		t.Fatalf("record after the withdrawal: %v, %v; want eth0's 3 routes", st, err)
	}

	f.setCarrier(2, true)
	res = mustUp(t, m, 2, "eth0")
	if res.Restored != 3 || res.Skipped != 0 {
		t.Fatalf("restore result %+v, want 3 restored", res)
	}
	sameTable(t, f.snapshot(t), before)
	// The gateway route needs the connected one: it must come back first.
	var adds []string
	for _, c := range f.calls {
		if strings.HasPrefix(c, "add ") {
			adds = append(adds, c)
		}
	}
	if len(adds) != 3 || !strings.Contains(adds[2], "203.0.113.0/24") {
		t.Errorf("restore order %q: connected routes before the gateway route", adds)
	}
	if len(m.Withdrawn()) != 0 {
		t.Errorf("still withdrawn after restore: %v", m.Withdrawn())
	}
}

func TestECMPOneDeadNexthop(t *testing.T) {
	def := route4("0.0.0.0/0", hop(2, "10.1.0.254", 1), hop(3, "10.2.0.254", 2))
	def6 := route6("::/0", hop(3, "2001:db8:2::1", 3), hop(2, "2001:db8:1::1", 1))
	f, m, _ := setup(t, []*Route{def, def6}, nil)
	before := f.snapshot(t)

	res := mustDown(t, m, 2, "eth0")
	if res.Withdrawn != 2 {
		t.Fatalf("withdrew %d, want 2", res.Withdrawn)
	}
	for _, r := range []*Route{def, def6} {
		got := f.has(r)
		if got == nil {
			t.Fatalf("%s removed entirely; the live nexthop must stay", r)
		}
		if len(got.Hops) != 1 || got.Hops[0].Ifindex != 3 {
			t.Fatalf("after withdraw %s, want only the eth1 nexthop", got)
		}
	}

	res = mustUp(t, m, 2, "eth0")
	if res.Restored != 2 {
		t.Fatalf("restored %d, want 2", res.Restored)
	}
	sameTable(t, f.snapshot(t), before)
}

func TestReAddedRouteNotDuplicated(t *testing.T) {
	a := route4("203.0.113.0/24", hop(2, "10.1.0.254", 1))
	b := route4("203.0.114.0/24", hop(2, "10.1.0.254", 1))
	def := route4("0.0.0.0/0", hop(2, "10.1.0.254", 1), hop(3, "10.2.0.254", 1))
	f, m, _ := setup(t, []*Route{a, b, def}, nil)
	mustDown(t, m, 2, "eth0")

	// Someone re-adds a differently (metric, gateway) and the cache hears of it.
	a2 := a.withHops([]Hop{hop(3, "10.2.0.1", 1)})
	a2.Protocol = unix.RTPROT_BOOT
	f.mu.Lock()
	f.set(a2)
	f.notify(Update{Kind: RouteAdded, Route: a2.clone()})
	// b comes back without the cache knowing yet: EEXIST must be "done".
	f.set(b)
	// And the dead hop is put back into the default route by hand.
	f.set(def)
	f.notify(Update{Kind: RouteAdded, Route: def.clone()})
	f.mu.Unlock()
	eventually(t, "cache to see the re-added routes", func() bool {
		r := m.cache.route(def.key())
		return m.cache.route(a.key()) != nil && r != nil && len(r.Hops) == 2
	})
	want := f.snapshot(t)
	replacesBefore := f.callCount("replace")

	res := mustUp(t, m, 2, "eth0")
	if res.Restored != 0 || res.Skipped != 3 {
		t.Fatalf("result %+v, want 0 restored 3 skipped", res)
	}
	sameTable(t, f.snapshot(t), want)
	if n := f.callCount("add 203.0.113.0/24"); n != 0 {
		t.Errorf("tried to add a route the cache knew was re-added (%d calls)", n)
	}
	if n := f.callCount("replace") - replacesBefore; n != 0 {
		t.Errorf("replaced %d routes that were already whole", n)
	}
	if len(m.Withdrawn()) != 0 {
		t.Errorf("state not cleared: %v", m.Withdrawn())
	}
}

func TestStatePersistedBeforeDelete(t *testing.T) {
	a := route4("203.0.113.0/24", hop(2, "10.1.0.254", 1))
	f, m, dir := setup(t, []*Route{a}, nil)
	var sawState bool
	f.fail = func(op string, what fmt.Stringer) error {
		if op != "del" {
			return nil
		}
		// What is about to be deleted must be on disk already.
		st, err := loadState(dir)
		if err != nil {
			t.Errorf("state at delete time: %v", err)
		} else if ls := st.Links[linkID("eth0", 2)]; ls != nil && len(ls.Routes) == 1 && ls.Routes[0].Route.key() == a.key() {
			sawState = true
		}
		return unix.EPERM
	}
	res, err := m.LinkDown(2, "eth0")
	if err == nil || !errors.Is(err, unix.EPERM) {
		t.Fatalf("LinkDown error %v, want the delete's EPERM", err)
	}
	if !sawState {
		t.Fatal("state file did not hold the route when it was deleted")
	}
	if res.Withdrawn != 0 {
		t.Errorf("counted %d withdrawn although the delete failed", res.Withdrawn)
	}
	st, err := loadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if ls := st.Links[linkID("eth0", 2)]; ls == nil || len(ls.Routes) != 1 {
		t.Fatalf("entry dropped after a failed delete: %+v", st.Links)
	}
	if f.has(a) == nil {
		t.Fatal("fake lost the route although delete failed")
	}
}

func TestRestartRestoresOnLinkUp(t *testing.T) {
	a := route4("203.0.113.0/24", hop(2, "10.1.0.254", 1))
	def := route4("0.0.0.0/0", hop(2, "10.1.0.254", 1), hop(3, "10.2.0.254", 2))
	f, m, dir := setup(t, []*Route{a, def}, nil)
	before := f.snapshot(t)
	f.setCarrier(2, false)
	mustDown(t, m, 2, "eth0")

	// Manager A is gone; B starts from the same state dir, link still down.
	b := start(t, f, dir)
	if got := b.Withdrawn()["eth0"]; got != 2 {
		t.Fatalf("restarted manager sees %d withdrawn, want 2", got)
	}
	if res := mustUp(t, b, 2, "eth0"); !res.NoCarrier || res.Restored != 0 {
		t.Fatalf("LinkUp without carrier restored: %+v", res)
	}
	f.setCarrier(2, true)
	if res := mustUp(t, b, 2, "eth0"); res.Restored != 2 {
		t.Fatalf("restored %d, want 2", res.Restored)
	}
	sameTable(t, f.snapshot(t), before)
	st, err := loadState(dir)
	if err != nil || len(st.Links) != 0 {
		t.Fatalf("state after restore: %+v %v", st.Links, err)
	}
}

func TestReconcile(t *testing.T) {
	a := route4("203.0.113.0/24", hop(2, "10.1.0.254", 1))
	b := route4("203.0.114.0/24", hop(3, "10.2.0.254", 1))
	c := route4("203.0.115.0/24", hop(4, "10.4.0.254", 1))
	d := route4("203.0.116.0/24", hop(5, "10.5.0.254", 1))
	f, m, dir := setup(t, []*Route{a, b, c, d}, nil)
	f.links[4] = LinkInfo{Name: "eth2", Carrier: true}
	f.links[5] = LinkInfo{Name: "eth3", Carrier: true}
	for i, name := range map[int]string{2: "eth0", 3: "eth1", 4: "eth2", 5: "eth3"} {
		mustDown(t, m, i, name)
	}
	// eth0 came back while we were away, eth1 is still down, eth2 was
	// deleted, eth3's ifindex now belongs to another link.
	f.setCarrier(3, false)
	delete(f.links, 4)
	f.links[5] = LinkInfo{Name: "veth9", Carrier: true}

	m2 := start(t, f, dir)
	if err := m2.Reconcile(map[int]bool{2: true, 3: false}); err != nil {
		t.Fatal(err)
	}
	if f.has(a) == nil {
		t.Error("eth0 is up: its route must be restored")
	}
	for _, r := range []*Route{b, c, d} {
		if f.has(r) != nil {
			t.Errorf("%s restored on a link that is down or gone", r)
		}
	}
	got := m2.Withdrawn()
	if len(got) != 1 || got["eth1"] != 1 {
		t.Fatalf("withdrawn after reconcile %v, want only eth1", got)
	}
	st, _ := loadState(dir)
	if len(st.Links) != 1 || st.Links[linkID("eth1", 3)] == nil {
		t.Fatalf("state file after reconcile: %v", st.Links)
	}
}

func TestNexthopObjects(t *testing.T) {
	nhs := []*Nexthop{
		{ID: 10, Family: unix.AF_INET, Protocol: unix.RTPROT_BOOT, Ifindex: 2, Gateway: ip("10.1.0.2")},
		{ID: 11, Family: unix.AF_INET, Protocol: unix.RTPROT_BOOT, Ifindex: 3, Gateway: ip("10.2.0.2")},
		{ID: 12, Family: unix.AF_INET, Protocol: unix.RTPROT_BOOT, Ifindex: 2, Gateway: ip("10.1.0.3")},
		{ID: 20, Protocol: unix.RTPROT_BOOT, Group: []GroupMember{{10, 1}, {11, 2}}},
		{ID: 21, Protocol: unix.RTPROT_BOOT, Group: []GroupMember{{12, 3}, {10, 1}}},
		{ID: 30, Family: unix.AF_INET6, Protocol: unix.RTPROT_BOOT, Ifindex: 2, Gateway: ip("2001:db8:1::2")},
	}
	r20 := route4("198.51.100.0/24")
	r20.NHID = 20
	r10 := route4("198.51.101.0/24")
	r10.NHID = 10
	r21 := route4("198.51.102.0/24")
	r21.NHID = 21
	r30 := route6("2001:db8:99::/64")
	r30.NHID = 30
	conn := connected4("10.1.0.0/24", 2, "10.1.0.1")
	f, m, _ := setup(t, []*Route{r20, r10, r21, r30, conn}, nhs)
	before := f.snapshot(t)

	// Carrier loss: the kernel flushes nexthop objects of the link by
	// itself, silently, except for the IPv6 route it notifies.
	f.mu.Lock()
	f.links[2] = LinkInfo{Name: "eth0", Carrier: false}
	for _, id := range []uint32{10, 12, 30} {
		f.flushNexthop(id)
	}
	f.notify(Update{Kind: RouteDeleted, Route: r30.clone()})
	f.mu.Unlock()
	eventually(t, "cache to see the IPv6 route flushed", func() bool { return m.cache.route(r30.key()) == nil })

	res := mustDown(t, m, 2, "eth0")
	// nexthops 10, 12, 30, group 21, members of 20; routes r10, r21, r30, conn
	if res.Withdrawn != 9 {
		t.Fatalf("withdrew %d, want 9", res.Withdrawn)
	}
	if f.has(r20) == nil {
		t.Fatal("route on a group with a live member must stay")
	}
	f.setCarrier(2, true)
	res = mustUp(t, m, 2, "eth0")
	if res.Restored != 9 {
		t.Fatalf("restored %d, want 9 (%+v)", res.Restored, res)
	}
	sameTable(t, f.snapshot(t), before)
}

func TestLinkUpWithoutCarrier(t *testing.T) {
	a := route4("203.0.113.0/24", hop(2, "10.1.0.254", 1))
	f, m, _ := setup(t, []*Route{a}, nil)
	mustDown(t, m, 2, "eth0")
	f.setCarrier(2, false) // went down again during the caller's up-delay
	res := mustUp(t, m, 2, "eth0")
	if !res.NoCarrier || res.Restored != 0 || f.has(a) != nil {
		t.Fatalf("restored onto a link without carrier: %+v", res)
	}
	if m.Withdrawn()["eth0"] != 1 {
		t.Fatal("state lost")
	}
}

func TestReleaseWithoutCarrier(t *testing.T) {
	a := route4("203.0.113.0/24", hop(2, "10.1.0.254", 1))
	f, m, _ := setup(t, []*Route{a}, nil)
	before := f.snapshot(t)
	mustDown(t, m, 2, "eth0")
	f.setCarrier(2, false)
	res, err := m.Release(2, "eth0")
	if err != nil || res.Restored != 1 || res.NoCarrier {
		t.Fatalf("Release: %+v, %v; want the route back though the link has no carrier", res, err)
	}
	sameTable(t, f.snapshot(t), before)
	if n := m.Withdrawn()["eth0"]; n != 0 {
		t.Fatalf("still %d withdrawn after Release", n)
	}
}

// TestECMPWeightsAfterBothHopsDied: the kernel drops a single-path
// remnant's weight, so the second link's record alone cannot say where its
// hop went, or with what weight; the first link's record can.
func TestECMPWeightsAfterBothHopsDied(t *testing.T) {
	def := route4("0.0.0.0/0", hop(2, "10.1.0.254", 1), hop(3, "10.2.0.254", 2))
	f, m, _ := setup(t, []*Route{def}, nil)
	before := f.snapshot(t)
	mustDown(t, m, 2, "eth0")
	// What the kernel's notice tells the cache: one hop, no weight.
	m.cache.setRoute(f.has(def).clone())
	mustDown(t, m, 3, "eth1")
	mustUp(t, m, 2, "eth0")
	m.cache.setRoute(f.has(def).clone())
	mustUp(t, m, 3, "eth1")
	sameTable(t, f.snapshot(t), before)
}

// TestECMPWeightsThroughFlaps: the original is handed from record to
// record, whatever order the two links flap in.
func TestECMPWeightsThroughFlaps(t *testing.T) {
	for _, seq := range []string{"1- 0- 1+ 1- 0+ 1+", "1- 0- 1+ 1- 1+ 0+", "0- 1- 0+ 0- 1+ 0+", "0- 1- 0+ 0- 0+ 1+", "0- 0+ 1- 0- 0+ 1+"} {
		t.Run(seq, func(t *testing.T) {
			def := route4("0.0.0.0/0", hop(2, "10.1.0.254", 1), hop(3, "10.2.0.254", 2))
			f, m, _ := setup(t, []*Route{def}, nil)
			before := f.snapshot(t)
			names := map[byte]string{'0': "eth0", '1': "eth1"}
			for _, step := range strings.Fields(seq) {
				idx := 2 + int(step[0]-'0')
				if step[1] == '-' {
					mustDown(t, m, idx, names[step[0]])
				} else {
					mustUp(t, m, idx, names[step[0]])
				}
				// What the kernel's notice tells the cache.
				if r := f.has(def); r != nil {
					m.cache.setRoute(r.clone())
				}
			}
			sameTable(t, f.snapshot(t), before)
		})
	}
}

func TestTwoDeadLinksOfOneECMPRoute(t *testing.T) {
	def := route4("0.0.0.0/0", hop(2, "10.1.0.254", 1), hop(3, "10.2.0.254", 2))
	f, m, _ := setup(t, []*Route{def}, nil)
	mustDown(t, m, 2, "eth0")
	mustDown(t, m, 3, "eth1")
	if f.has(def) != nil {
		t.Fatal("route with every nexthop dead still there")
	}
	mustUp(t, m, 2, "eth0")
	got := f.has(def)
	if got == nil || len(got.Hops) != 1 || got.Hops[0].Ifindex != 2 {
		t.Fatalf("after eth0 up: %v, want only the eth0 nexthop", got)
	}
	mustUp(t, m, 3, "eth1")
	got = f.has(def)
	if got == nil || len(got.Hops) != 2 {
		t.Fatalf("after both up: %v, want both nexthops", got)
	}
	for _, h := range def.Hops {
		if i := slices.IndexFunc(got.Hops, h.same); i < 0 || got.Hops[i].Weight != h.Weight {
			t.Fatalf("after both up: %v, want %v", got, def)
		}
	}
}

// Routes that differ only in metric, or only in table, are different
// kernel routes even with the same hop: each is withdrawn and comes back.
func TestKeyTellsMetricAndTableApart(t *testing.T) {
	low := route4("203.0.113.0/24", hop(2, "10.1.0.254", 1))
	low.Priority = 10
	high := route4("203.0.113.0/24", hop(2, "10.1.0.254", 1))
	high.Priority = 20
	other := route4("203.0.113.0/24", hop(2, "10.1.0.254", 1))
	other.Table = 100
	v6 := route6("2001:db8:5::/64", hop(2, "2001:db8:1::1", 1))
	v6src := route6("2001:db8:5::/64", hop(2, "2001:db8:1::1", 1))
	v6src.Src = pfx("2001:db8:9::/64")
	f, m, _ := setup(t, []*Route{low, high, other, v6, v6src}, nil)
	before := f.snapshot(t)
	f.setCarrier(2, false)
	if res := mustDown(t, m, 2, "eth0"); res.Withdrawn != 5 {
		t.Fatalf("withdrew %d, want 5: %v", res.Withdrawn, f.snapshot(t))
	}
	f.setCarrier(2, true)
	if res := mustUp(t, m, 2, "eth0"); res.Restored != 5 {
		t.Fatalf("restored %d, want 5", res.Restored)
	}
	if after := f.snapshot(t); !slices.Equal(after, before) {
		t.Fatalf("after restore:\n%v\nwant\n%v", after, before)
	}
}
