package routes

import (
	"bytes"
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Attr is a netlink attribute linkbeat does not interpret (metrics, pref,
// encap, flow...): it is replayed verbatim so a restore is exact.
type Attr struct {
	Type uint16 `json:"type"`
	Data []byte `json:"data"`
}

// Hop is one nexthop of a route. A single-path route has exactly one.
type Hop struct {
	Ifindex int        `json:"ifindex"`
	Gateway netip.Addr `json:"gateway,omitzero"`
	Weight  int        `json:"weight,omitempty"` // 1..256, rtnh_hops+1
	Flags   uint8      `json:"flags,omitempty"`
	Attrs   []Attr     `json:"attrs,omitempty"`
}

func (h Hop) same(o Hop) bool { return h.Ifindex == o.Ifindex && h.Gateway == o.Gateway }

// Route is everything needed to re-create a kernel route exactly.
//
// The small fields are packed together (160 bytes, not 192): the cache
// holds one Route per kernel route.
type Route struct {
	Family    uint8        `json:"family"`
	TOS       uint8        `json:"tos,omitempty"`
	Protocol  uint8        `json:"protocol,omitempty"`
	Scope     uint8        `json:"scope,omitempty"`
	Table     uint32       `json:"table"`
	Dst       netip.Prefix `json:"dst"`
	Src       netip.Prefix `json:"src,omitzero"` // IPv6 source-specific routing (RTA_SRC)
	Type      uint8        `json:"type,omitempty"`
	Multipath bool         `json:"multipath,omitempty"` // hops came in RTA_MULTIPATH
	Flags     uint32       `json:"flags,omitempty"`     // rtm_flags as dumped
	Priority  uint32       `json:"priority,omitempty"`
	NHID      uint32       `json:"nhid,omitempty"` // route uses a nexthop object
	PrefSrc   netip.Addr   `json:"prefsrc,omitzero"`
	Hops      []Hop        `json:"hops,omitempty"` // resolved hops; not sent when NHID is set
	Attrs     []Attr       `json:"attrs,omitempty"`
}

// routeKey is what the kernel uses to tell routes apart: adding a second
// route with the same key and NLM_F_EXCL fails with EEXIST.
//
// It is kept small and free of pointers (not netip.Prefix, whose Addr
// holds one): the cache and its per-link indexes hold one per route, so a
// full table's keys cost half as much and the GC does not scan them.
type routeKey struct {
	dst, src         [16]byte
	dstBits, srcBits uint8 // prefix length
	// dstLen and srcLen are the address's bit length as netip.Addr's
	// BitLen: 0 for no prefix (a route without RTA_SRC), 32 or 128.
	dstLen, srcLen  uint8
	family, tos     uint8
	table, priority uint32
}

func packPrefix(p netip.Prefix) (a [16]byte, bits, n uint8) {
	if !p.IsValid() {
		return a, 0, 0
	}
	return p.Addr().As16(), uint8(p.Bits()), uint8(p.Addr().BitLen())
}

func unpackPrefix(a [16]byte, bits, n uint8) netip.Prefix {
	switch n {
	case 0:
		return netip.Prefix{}
	case 32:
		return netip.PrefixFrom(netip.AddrFrom16(a).Unmap(), int(bits))
	}
	return netip.PrefixFrom(netip.AddrFrom16(a), int(bits))
}

func (r *Route) key() routeKey {
	k := routeKey{family: r.Family, tos: r.TOS, table: r.Table, priority: r.Priority}
	k.dst, k.dstBits, k.dstLen = packPrefix(r.Dst)
	k.src, k.srcBits, k.srcLen = packPrefix(r.Src)
	return k
}

// compareKeys orders keys cheaply (no formatting): by family, table,
// destination, source, TOS and priority, addresses as netip.Addr.Compare.
func compareKeys(a, b routeKey) int {
	return cmp.Or(cmp.Compare(a.family, b.family), cmp.Compare(a.table, b.table),
		cmp.Compare(a.dstLen, b.dstLen), bytes.Compare(a.dst[:], b.dst[:]), cmp.Compare(a.dstBits, b.dstBits),
		cmp.Compare(a.srcLen, b.srcLen), bytes.Compare(a.src[:], b.src[:]), cmp.Compare(a.srcBits, b.srcBits),
		cmp.Compare(a.tos, b.tos), cmp.Compare(a.priority, b.priority))
}

func (k routeKey) String() string {
	s := fmt.Sprintf("%s table %d metric %d", unpackPrefix(k.dst, k.dstBits, k.dstLen), k.table, k.priority)
	if k.srcLen != 0 {
		s += " from " + unpackPrefix(k.src, k.srcBits, k.srcLen).String()
	}
	return s
}

// sameAlias: a and b, of one key, are the same kernel route, perhaps with
// hops taken out or put back since. The kernel keeps several routes under
// one key (IPv4 `ip route append`, IPv6 device or nexthop-object routes
// beside a multipath one), and no two of them share a hop.
func sameAlias(a, b *Route) bool {
	if a.NHID != 0 || b.NHID != 0 {
		return a.NHID == b.NHID
	}
	if a.Type != b.Type {
		return false
	}
	if len(a.Hops) == 0 && len(b.Hops) == 0 {
		return true
	}
	for _, h := range a.Hops {
		if hasHop(b.Hops, h) {
			return true
		}
	}
	return false
}

// sameHops: a and b have exactly the same hops, in the same order.
func sameHops(a, b *Route) bool {
	return a.NHID == b.NHID && slices.EqualFunc(a.Hops, b.Hops, func(x, y Hop) bool { return x.same(y) })
}

// aliasIndex is the position of the route of rs that is r, or -1.
func aliasIndex(rs []*Route, r *Route) int {
	if i := slices.IndexFunc(rs, func(o *Route) bool { return sameHops(o, r) }); i >= 0 {
		return i
	}
	return slices.IndexFunc(rs, func(o *Route) bool { return sameAlias(o, r) })
}

func (r *Route) String() string {
	var b strings.Builder
	b.WriteString(r.key().String())
	if r.NHID != 0 {
		fmt.Fprintf(&b, " nhid %d", r.NHID)
	}
	for _, h := range r.Hops {
		fmt.Fprintf(&b, " [dev %d", h.Ifindex)
		if h.Gateway.IsValid() {
			fmt.Fprintf(&b, " via %s", h.Gateway)
		}
		fmt.Fprintf(&b, " w %d]", h.Weight)
	}
	return b.String()
}

func (r *Route) clone() *Route {
	c := *r
	c.Hops = slices.Clone(r.Hops)
	return &c
}

// withHops returns a copy of r using hops, in RTA_MULTIPATH form when
// there are several of them or the original was multipath.
func (r *Route) withHops(hops []Hop) *Route {
	return r.withOwnHops(slices.Clone(hops))
}

// withOwnHops is withHops for a slice of hops the caller just built and
// hands over: the copy of a whole table's multipath routes at a
// withdrawal or restore need not be made twice.
func (r *Route) withOwnHops(hops []Hop) *Route {
	c := *r
	c.Hops = hops
	c.Multipath = len(hops) > 1
	return &c
}

func hasHop(hops []Hop, h Hop) bool {
	return slices.ContainsFunc(hops, h.same)
}

// GroupMember is one entry of a nexthop group.
type GroupMember struct {
	ID     uint32 `json:"id"`
	Weight int    `json:"weight"` // 1..65536
}

// Nexthop is a kernel nexthop object (`ip nexthop`).
type Nexthop struct {
	ID        uint32        `json:"id"`
	Family    uint8         `json:"family"`
	Protocol  uint8         `json:"protocol"`
	Scope     uint8         `json:"scope,omitempty"`
	Flags     uint32        `json:"flags,omitempty"`
	Ifindex   int           `json:"ifindex,omitempty"`
	Gateway   netip.Addr    `json:"gateway,omitzero"`
	Blackhole bool          `json:"blackhole,omitempty"`
	FDB       bool          `json:"fdb,omitempty"`
	Group     []GroupMember `json:"group,omitempty"`
	GroupType uint16        `json:"group_type,omitempty"`
	Attrs     []Attr        `json:"attrs,omitempty"`
}

func (n *Nexthop) clone() *Nexthop {
	c := *n
	c.Group = slices.Clone(n.Group)
	return &c
}

func (n *Nexthop) withGroup(g []GroupMember) *Nexthop {
	c := n.clone()
	c.Group = slices.Clone(g)
	return c
}

func hasMember(g []GroupMember, id uint32) bool {
	return slices.ContainsFunc(g, func(m GroupMember) bool { return m.ID == id })
}

func (n *Nexthop) String() string {
	if len(n.Group) > 0 {
		ids := make([]string, len(n.Group))
		for i, m := range n.Group {
			ids[i] = fmt.Sprintf("%d,%d", m.ID, m.Weight)
		}
		return fmt.Sprintf("nexthop %d group %s", n.ID, strings.Join(ids, "/"))
	}
	return fmt.Sprintf("nexthop %d dev %d via %s", n.ID, n.Ifindex, n.Gateway)
}
