package routes

import (
	"reflect"
	"testing"

	"golang.org/x/sys/unix"
)

// What is encoded for a restore must decode to the same route: a route
// that does not survive this would not be restored exactly.
func TestRouteCodecRoundTrip(t *testing.T) {
	mtu := appendAttr(nil, unix.RTAX_MTU, u32(1400))
	mp := route6("2001:db8:98::/64", hop(2, "2001:db8:1::2", 1), hop(3, "2001:db8:2::2", 3))
	mp.Hops[1].Flags = unix.RTNH_F_ONLINK
	single := route4("203.0.113.0/24", hop(2, "192.0.2.1", 1))
	single.Table, single.Priority, single.PrefSrc = 100, 50, ip("10.1.0.1")
	single.Flags, single.Hops[0].Flags = unix.RTNH_F_ONLINK, unix.RTNH_F_ONLINK
	single.Attrs = []Attr{{Type: 8, Data: mtu}}
	nh := route4("198.51.100.0/24")
	nh.NHID = 20
	src := route6("2001:db8:97::/64", hop(2, "", 1))
	src.Src = pfx("2001:db8:5::/48")
	def := route4("0.0.0.0/0", hop(2, "10.1.0.2", 1), hop(3, "10.2.0.2", 2))
	for _, r := range []*Route{mp, single, nh, src, def} {
		got, ok := decodeRoute(encodeRoute(r, false))
		if !ok {
			t.Fatalf("%s: not decoded", r)
		}
		if !reflect.DeepEqual(got, r) {
			t.Errorf("round trip changed the route\n got %#v\nwant %#v", got, r)
		}
	}
}

func TestNexthopCodecRoundTrip(t *testing.T) {
	for _, n := range []*Nexthop{
		{ID: 10, Family: unix.AF_INET, Protocol: unix.RTPROT_STATIC, Ifindex: 2, Gateway: ip("10.1.0.2"), Flags: unix.RTNH_F_ONLINK},
		{ID: 13, Family: unix.AF_INET6, Ifindex: 2, Gateway: ip("2001:db8:1::2")},
		{ID: 20, Group: []GroupMember{{10, 3}, {11, 300}}},
		{ID: 30, Family: unix.AF_INET, Blackhole: true},
	} {
		got, ok := decodeNexthop(encodeNexthop(n))
		if !ok || !reflect.DeepEqual(got, n) {
			t.Errorf("round trip changed the nexthop\n got %#v\nwant %#v", got, n)
		}
	}
}

// Lost notifications force a re-dump, which no longer shows the nexthop
// objects the kernel flushed at carrier loss: the cache must keep them.
func TestOverrunKeepsFlushedNexthops(t *testing.T) {
	nhs := []*Nexthop{{ID: 10, Family: unix.AF_INET, Ifindex: 2, Gateway: ip("10.1.0.2")}}
	r := route4("198.51.101.0/24")
	r.NHID = 10
	f, m, _ := setup(t, []*Route{r}, nhs)
	before := f.snapshot(t)
	f.mu.Lock()
	f.links[2] = LinkInfo{Name: "eth0"}
	f.flushNexthop(10)
	f.notify(Update{Kind: Overrun})
	f.put(route4("192.0.2.0/24", hop(3, "", 1)))
	f.mu.Unlock()
	eventually(t, "re-dump", func() bool { return m.cache.route(route4("192.0.2.0/24").key()) != nil })
	if res := mustDown(t, m, 2, "eth0"); res.Withdrawn != 2 {
		t.Fatalf("withdrew %d, want nexthop 10 and its route", res.Withdrawn)
	}
	f.setCarrier(2, true)
	if res := mustUp(t, m, 2, "eth0"); res.Restored != 2 {
		t.Fatalf("restored %d, want 2", res.Restored)
	}
	f.mu.Lock()
	f.drop(route4("192.0.2.0/24"))
	f.mu.Unlock()
	sameTable(t, f.snapshot(t), before)
}
