package routes

import (
	"net/netip"
	"reflect"
	"testing"

	"golang.org/x/sys/unix"
)

// FuzzRouteSnapshot: a route as linkbeat holds it after a dump, built
// from fuzzed attributes, is written to the state file, read back, and
// encoded for the restore; what the kernel is sent decodes to the same
// route. A loss anywhere on that path is a route not restored exactly.
func FuzzRouteSnapshot(f *testing.F) {
	f.Add(false, []byte{203, 0, 113, 0}, uint8(24), []byte(nil), uint8(0), uint8(0), uint32(100), uint8(unix.RTPROT_STATIC), uint8(0), uint8(unix.RTN_UNICAST),
		uint8(unix.RTNH_F_ONLINK), uint32(50), []byte{10, 1, 0, 1}, uint32(0), false, []byte{2, 0, 0, 0, 0, 1, 192, 0, 2, 1}, uint16(8), []byte{8, 0, 2, 0, 0x78, 5, 0, 0})
	f.Add(true, []byte{0x20, 0x01, 0xd, 0xb8, 0, 0x98}, uint8(64), []byte{0x20, 0x01, 0xd, 0xb8, 0, 5}, uint8(48), uint8(0), uint32(254), uint8(unix.RTPROT_BOOT), uint8(0), uint8(unix.RTN_UNICAST),
		uint8(0), uint32(1024), []byte(nil), uint32(0), true, []byte{2, 0, 0, 0, 0, 0, 1, 0x20, 0x01, 0xd, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 3, 0, 0, 0, 2, 4, 0}, uint16(0), []byte(nil))
	f.Add(false, []byte{198, 51, 100, 0}, uint8(24), []byte(nil), uint8(0), uint8(0), uint32(254), uint8(unix.RTPROT_STATIC), uint8(0), uint8(unix.RTN_UNICAST),
		uint8(0), uint32(0), []byte(nil), uint32(20), false, []byte(nil), uint16(0), []byte(nil))
	f.Fuzz(func(t *testing.T, v6 bool, dst []byte, dstBits uint8, src []byte, srcBits uint8, tos uint8, table uint32, protocol, scope, typ uint8,
		flags uint8, priority uint32, prefsrc []byte, nhid uint32, multipath bool, hops []byte, attrType uint16, attrData []byte) {
		r := fuzzRoute(v6, dst, dstBits, src, srcBits, tos, table, protocol, scope, typ, flags, priority, prefsrc, nhid, multipath, hops, attrType, attrData)

		// Snapshot: the state file, as save writes it and loadState reads it.
		dir := t.TempDir()
		st := &state{Version: stateVersion, Links: map[string]*linkState{linkID("eth0", 2): {Ifname: "eth0", Ifindex: 2, Routes: []*routeEntry{{Route: r}}}}}
		if err := st.save(dir); err != nil {
			t.Fatal(err)
		}
		back, err := loadState(dir)
		if err != nil {
			t.Fatal(err)
		}
		l := back.Links[linkID("eth0", 2)]
		if l == nil || len(l.Routes) != 1 {
			t.Fatalf("state file lost the route: %+v", back)
		}
		saved := l.Routes[0].Route
		if !reflect.DeepEqual(saved, r) {
			t.Fatalf("state file changed the route\n got %#v\nwant %#v", saved, r)
		}
		// Restore: what is sent to the kernel, read as the kernel's dump.
		got, ok := decodeRoute(encodeRoute(saved, false))
		if !ok {
			t.Fatalf("restore message of %s does not decode", r)
		}
		if !reflect.DeepEqual(got, r) {
			t.Fatalf("restore changed the route\n got %#v\nwant %#v", got, r)
		}
	})
}

// fuzzRoute builds a route the way decodeRoute leaves a kernel dump's:
// masked prefixes, flags a user can set, hops only when no nexthop object.
func fuzzRoute(v6 bool, dst []byte, dstBits uint8, src []byte, srcBits uint8, tos uint8, table uint32, protocol, scope, typ uint8,
	flags uint8, priority uint32, prefsrc []byte, nhid uint32, multipath bool, hops []byte, attrType uint16, attrData []byte) *Route {
	fam, size := uint8(unix.AF_INET), 4
	if v6 {
		fam, size = unix.AF_INET6, 16
	}
	addr := func(b []byte) netip.Addr {
		a, _ := netip.AddrFromSlice(append(append([]byte(nil), b...), make([]byte, size)...)[:size])
		return a
	}
	if table == 0 {
		table = unix.RT_TABLE_MAIN
	}
	r := &Route{Family: fam, TOS: tos, Table: table, Protocol: protocol, Scope: scope, Type: typ,
		Flags: uint32(flags) & userHopFlags, Priority: priority, NHID: nhid}
	r.Dst = netip.PrefixFrom(addr(dst), int(dstBits)%(size*8+1)).Masked()
	if v6 {
		r.TOS = 0
		if bits := int(srcBits) % 129; bits > 0 {
			r.Src = netip.PrefixFrom(addr(src), bits).Masked()
		}
	}
	if len(prefsrc) > 0 {
		r.PrefSrc = addr(prefsrc)
	}
	if len(attrData) > 512 {
		attrData = attrData[:512]
	}
	switch t := attrType & nlaTypeMask; {
	case attrType == 0:
	case t == rtaDst || t == rtaSrc || t == rtaOIF || t == rtaGateway || t == rtaPriority || t == rtaPrefSrc ||
		t == rtaTable || t == rtaNHID || t == rtaMultipath || routeDropAttrs[t] || (nhid != 0 && hopAttrs[t]):
		// Decoded into fields, or never replayed.
	default:
		r.Attrs = []Attr{{Type: attrType, Data: append([]byte(nil), attrData...)}} // nil when empty, as decoded
	}
	if nhid != 0 {
		return r
	}
	// Each hop: ifindex (4 bytes), weight-1, flags, has-gateway, then the
	// gateway's bytes.
	for len(hops) >= 7 && len(r.Hops) < 4 {
		// The kernel's ifindex is a positive int.
		h := Hop{Ifindex: int((uint32(hops[0]) | uint32(hops[1])<<8 | uint32(hops[2])<<16 | uint32(hops[3])<<24) & 0x7fffffff), Weight: int(hops[4]) + 1, Flags: hops[5] & userHopFlags}
		withGW := hops[6]&1 != 0
		hops = hops[7:]
		if withGW {
			h.Gateway = addr(hops[:min(size, len(hops))])
			hops = hops[min(size, len(hops)):]
		}
		if !multipath {
			if h.Ifindex == 0 && !h.Gateway.IsValid() {
				break
			}
			// A single hop is the route's own oif, gateway and flags.
			h.Weight, h.Flags = 1, uint8(r.Flags)
			r.Hops = []Hop{h}
			break
		}
		r.Hops = append(r.Hops, h)
	}
	r.Multipath = multipath
	return r
}

// FuzzDecodeRouteMessage: no rtnetlink body, however mangled, panics the
// decoders the route cache reads every notice with.
func FuzzDecodeRouteMessage(f *testing.F) {
	f.Add(encodeRoute(route4("203.0.113.0/24", hop(2, "192.0.2.1", 1)), false))
	f.Add(encodeRoute(route6("2001:db8:98::/64", hop(2, "2001:db8:1::2", 1), hop(3, "2001:db8:2::2", 3)), false))
	f.Add(encodeNexthop(&Nexthop{ID: 20, Group: []GroupMember{{10, 3}, {11, 300}}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		decodeRoute(b)
		decodeNexthop(b)
		for _, typ := range []uint16{unix.RTM_NEWROUTE, unix.RTM_DELNEXTHOP} {
			decodeUpdate(typ, b)
		}
	})
}
