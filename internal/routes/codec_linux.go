package routes

import (
	"encoding/binary"
	"iter"
	"net/netip"

	"golang.org/x/sys/unix"
)

// The rtnetlink encoding of routes and nexthop objects.

// Attribute numbers, spelled out because x/sys/unix lacks some of them.
const (
	rtaDst         = 1
	rtaSrc         = 2
	rtaOIF         = 4
	rtaGateway     = 5
	rtaPriority    = 6
	rtaPrefSrc     = 7
	rtaMultipath   = 9
	rtaFlow        = 11
	rtaCacheInfo   = 12
	rtaTable       = 15
	rtaMark        = 16
	rtaMFCStats    = 17
	rtaVia         = 18
	rtaNewDst      = 19
	rtaEncapType   = 21
	rtaEncap       = 22
	rtaExpires     = 23
	rtaPad         = 24
	rtaUID         = 25
	rtaIPProto     = 27
	rtaSport       = 28
	rtaDport       = 29
	rtaNHID        = 30
	rtaFlowLabel   = 31
	nhaID          = 1
	nhaGroup       = 2
	nhaGroupType   = 3
	nhaBlackhole   = 4
	nhaOIF         = 5
	nhaGateway     = 6
	nhaGroups      = 9
	nhaMaster      = 10
	nhaFDB         = 11
	nhaResGroup    = 12
	nhaResBucket   = 13
	nhaOpFlags     = 14
	nhaGroupStats  = 15
	nhaHWStatsUsed = 17
	// NHA_RES_GROUP_UNBALANCED_TIME is output only: the kernel rejects it.
	nhaResGroupUnbalancedTime = 4
	nlaTypeMask               = 0x3fff
	// Flags a user may set on a route or nexthop; the rest (dead,
	// linkdown, offload...) are kernel state.
	userHopFlags = unix.RTNH_F_ONLINK | unix.RTNH_F_PERVASIVE
)

// Route attributes that are kernel output or lookup-only: never replayed.
var routeDropAttrs = map[uint16]bool{
	rtaCacheInfo: true, rtaMark: true, rtaMFCStats: true, rtaExpires: true, rtaPad: true,
	rtaUID: true, rtaIPProto: true, rtaSport: true, rtaDport: true, rtaFlowLabel: true,
}

// Hop-level attributes that the kernel also shows on routes using a nexthop
// object (nexthop_compat_mode); sending them with RTA_NH_ID is refused.
var hopAttrs = map[uint16]bool{rtaFlow: true, rtaVia: true, rtaEncapType: true, rtaEncap: true, rtaNewDst: true}

var nexthopDropAttrs = map[uint16]bool{
	nhaGroups: true, nhaMaster: true, nhaResBucket: true, nhaOpFlags: true,
	nhaGroupStats: true, nhaHWStatsUsed: true,
}

func opFlags(op Op) uint16 {
	switch op {
	case OpReplace:
		return unix.NLM_F_REPLACE
	case OpAppend:
		return unix.NLM_F_CREATE | unix.NLM_F_APPEND
	case OpPrepend:
		return unix.NLM_F_CREATE
	}
	return unix.NLM_F_CREATE | unix.NLM_F_EXCL
}

func decodeUpdate(typ uint16, data []byte) (Update, bool) {
	switch typ {
	case unix.RTM_NEWROUTE, unix.RTM_DELROUTE:
		r, ok := decodeRoute(data)
		kind := RouteAdded
		if typ == unix.RTM_DELROUTE {
			kind = RouteDeleted
		}
		return Update{Kind: kind, Route: r}, ok
	case unix.RTM_NEWNEXTHOP, unix.RTM_DELNEXTHOP:
		n, ok := decodeNexthop(data)
		kind := NexthopAdded
		if typ == unix.RTM_DELNEXTHOP {
			kind = NexthopDeleted
		}
		return Update{Kind: kind, Nexthop: n}, ok
	}
	return Update{}, false
}

// parseAttrs yields b's attributes, their data slices of b: decoding a
// route must not allocate a list of them per message (a dump of a whole
// table allocated more for those lists than for its routes).
func parseAttrs(b []byte) iter.Seq[Attr] {
	return func(yield func(Attr) bool) {
		for len(b) >= 4 {
			l := int(binary.NativeEndian.Uint16(b))
			if l < 4 || l > len(b) {
				return
			}
			if !yield(Attr{Type: binary.NativeEndian.Uint16(b[2:]), Data: b[4:l:l]}) {
				return
			}
			al := (l + 3) &^ 3
			if al > len(b) {
				return
			}
			b = b[al:]
		}
	}
}

func appendAttr(b []byte, typ uint16, data []byte) []byte {
	l := 4 + len(data)
	b = binary.NativeEndian.AppendUint16(b, uint16(l))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, data...)
	for l%4 != 0 {
		b = append(b, 0)
		l++
	}
	return b
}

func u32(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }

// attrU32 and attrU16 read a fixed-size attribute; a short one reads as 0
// instead of panicking the reader of every notice.
func attrU32(b []byte) uint32 {
	if len(b) < 4 {
		return 0
	}
	return binary.NativeEndian.Uint32(b)
}

func attrU16(b []byte) uint16 {
	if len(b) < 2 {
		return 0
	}
	return binary.NativeEndian.Uint16(b)
}

func addrFrom(b []byte) netip.Addr {
	a, _ := netip.AddrFromSlice(b)
	return a
}

func prefixFrom(fam uint8, b []byte, bits uint8) netip.Prefix {
	var a netip.Addr
	if len(b) > 0 {
		a = addrFrom(b)
	} else if fam == unix.AF_INET {
		a = netip.IPv4Unspecified()
	} else {
		a = netip.IPv6Unspecified()
	}
	return netip.PrefixFrom(a, int(bits))
}

// decodeRoute parses an RTM_NEWROUTE/DELROUTE body; ok is false for
// families and kinds linkbeat ignores.
func decodeRoute(b []byte) (*Route, bool) {
	if len(b) < unix.SizeofRtMsg {
		return nil, false
	}
	fam := b[0]
	if fam != unix.AF_INET && fam != unix.AF_INET6 {
		return nil, false
	}
	r := &Route{Family: fam, TOS: b[3], Table: uint32(b[4]), Protocol: b[5], Scope: b[6], Type: b[7],
		Flags: binary.NativeEndian.Uint32(b[8:])}
	if r.Flags&unix.RTM_F_CLONED != 0 {
		return nil, false // route cache entry, not configuration
	}
	var dst, src []byte
	single := Hop{Weight: 1, Flags: uint8(r.Flags) & userHopFlags}
	for a := range parseAttrs(b[unix.SizeofRtMsg:]) {
		switch t := a.Type & nlaTypeMask; t {
		case rtaDst:
			dst = a.Data
		case rtaSrc:
			src = a.Data
		case rtaOIF:
			single.Ifindex = int(attrU32(a.Data))
		case rtaGateway:
			single.Gateway = addrFrom(a.Data)
		case rtaPriority:
			r.Priority = attrU32(a.Data)
		case rtaPrefSrc:
			r.PrefSrc = addrFrom(a.Data)
		case rtaTable:
			r.Table = attrU32(a.Data)
		case rtaNHID:
			r.NHID = attrU32(a.Data)
		case rtaMultipath:
			r.Multipath = true
			r.Hops = decodeMultipath(a.Data)
		default:
			if !routeDropAttrs[t] {
				r.Attrs = append(r.Attrs, Attr{Type: a.Type, Data: append([]byte(nil), a.Data...)})
			}
		}
	}
	r.Dst = prefixFrom(fam, dst, b[1])
	if len(src) > 0 || b[2] > 0 {
		r.Src = prefixFrom(fam, src, b[2])
	}
	if !r.Multipath && (single.Ifindex != 0 || single.Gateway.IsValid()) {
		r.Hops = []Hop{single}
	}
	if r.NHID != 0 {
		kept := r.Attrs[:0]
		for _, a := range r.Attrs {
			if !hopAttrs[a.Type&nlaTypeMask] {
				kept = append(kept, a)
			}
		}
		r.Attrs = kept
	}
	return r, true
}

func decodeMultipath(b []byte) []Hop {
	// Sized once: the cache keeps the slice for as long as the route.
	n := countNexthops(b)
	if n == 0 {
		return nil
	}
	hops := make([]Hop, 0, n)
	for len(b) >= unix.SizeofRtNexthop {
		l := int(binary.NativeEndian.Uint16(b))
		if l < unix.SizeofRtNexthop || l > len(b) {
			break
		}
		h := Hop{Flags: b[2] & userHopFlags, Weight: int(b[3]) + 1, Ifindex: int(int32(binary.NativeEndian.Uint32(b[4:])))}
		for a := range parseAttrs(b[unix.SizeofRtNexthop:l]) {
			if a.Type&nlaTypeMask == rtaGateway {
				h.Gateway = addrFrom(a.Data)
			} else {
				h.Attrs = append(h.Attrs, Attr{Type: a.Type, Data: append([]byte(nil), a.Data...)})
			}
		}
		hops = append(hops, h)
		al := (l + 3) &^ 3
		if al > len(b) {
			break
		}
		b = b[al:]
	}
	return hops
}

// countNexthops is how many hops decodeMultipath finds in b.
func countNexthops(b []byte) int {
	n := 0
	for len(b) >= unix.SizeofRtNexthop {
		l := int(binary.NativeEndian.Uint16(b))
		if l < unix.SizeofRtNexthop || l > len(b) {
			break
		}
		n++
		al := (l + 3) &^ 3
		if al > len(b) {
			break
		}
		b = b[al:]
	}
	return n
}

// encodeRoute builds an rtmsg body. A delete names one kernel route: its
// key, protocol and type, and its hops or nexthop object, so that a twin
// of the same key (`ip route append`) stays.
func encodeRoute(r *Route, del bool) []byte {
	b := make([]byte, unix.SizeofRtMsg)
	b[0] = r.Family
	b[1] = uint8(r.Dst.Bits())
	if r.Src.IsValid() {
		b[2] = uint8(r.Src.Bits())
	}
	b[3] = r.TOS
	if r.Table < 256 {
		b[4] = uint8(r.Table)
	}
	b[5] = r.Protocol
	b[6] = r.Scope
	b[7] = r.Type
	if del {
		b[6] = unix.RT_SCOPE_NOWHERE // match any scope
	} else {
		binary.NativeEndian.PutUint32(b[8:], r.Flags&userHopFlags)
	}
	b = appendAttr(b, rtaTable, u32(r.Table))
	if r.Dst.Bits() > 0 {
		b = appendAttr(b, rtaDst, r.Dst.Addr().AsSlice())
	}
	if r.Src.IsValid() && r.Src.Bits() > 0 {
		b = appendAttr(b, rtaSrc, r.Src.Addr().AsSlice())
	}
	if r.Priority != 0 {
		b = appendAttr(b, rtaPriority, u32(r.Priority))
	}
	if r.NHID != 0 {
		// On delete the kernel refuses it (EINVAL) once the nexthop
		// object is gone: DeleteRoute reads that as ESRCH.
		b = appendAttr(b, rtaNHID, u32(r.NHID))
	}
	if del {
		return appendHops(b, r, true)
	}
	if r.PrefSrc.IsValid() {
		b = appendAttr(b, rtaPrefSrc, r.PrefSrc.AsSlice())
	}
	b = appendHops(b, r, false)
	for _, a := range r.Attrs {
		b = appendAttr(b, a.Type, a.Data)
	}
	return b
}

// appendHops adds r's hops; for a delete only what tells routes of one
// key apart (device and gateway), which is what the kernel compares.
func appendHops(b []byte, r *Route, del bool) []byte {
	switch {
	case r.NHID != 0:
	case r.Multipath:
		var mp []byte
		for _, h := range r.Hops {
			var attrs []byte
			if h.Gateway.IsValid() {
				attrs = appendAttr(attrs, rtaGateway, h.Gateway.AsSlice())
			}
			if !del {
				for _, a := range h.Attrs {
					attrs = appendAttr(attrs, a.Type, a.Data)
				}
			}
			w := max(h.Weight, 1) - 1
			mp = binary.NativeEndian.AppendUint16(mp, uint16(unix.SizeofRtNexthop+len(attrs)))
			mp = append(mp, h.Flags&userHopFlags, uint8(w))
			mp = binary.NativeEndian.AppendUint32(mp, uint32(h.Ifindex))
			mp = append(mp, attrs...)
		}
		b = appendAttr(b, rtaMultipath, mp)
	case len(r.Hops) == 1:
		h := r.Hops[0]
		if h.Ifindex != 0 {
			b = appendAttr(b, rtaOIF, u32(uint32(h.Ifindex)))
		}
		if h.Gateway.IsValid() {
			b = appendAttr(b, rtaGateway, h.Gateway.AsSlice())
		}
		if !del {
			binary.NativeEndian.PutUint32(b[8:], (r.Flags|uint32(h.Flags))&userHopFlags)
		}
	}
	return b
}

func decodeNexthop(b []byte) (*Nexthop, bool) {
	if len(b) < unix.SizeofNhmsg {
		return nil, false
	}
	n := &Nexthop{Family: b[0], Scope: b[1], Protocol: b[2], Flags: binary.NativeEndian.Uint32(b[4:]) & unix.RTNH_F_ONLINK}
	for a := range parseAttrs(b[unix.SizeofNhmsg:]) {
		switch t := a.Type & nlaTypeMask; t {
		case nhaID:
			n.ID = attrU32(a.Data)
		case nhaGroup:
			for g := a.Data; len(g) >= 8; g = g[8:] {
				w := int(g[4]) | int(g[5])<<8
				n.Group = append(n.Group, GroupMember{ID: binary.NativeEndian.Uint32(g), Weight: w + 1})
			}
		case nhaGroupType:
			n.GroupType = attrU16(a.Data)
		case nhaBlackhole:
			n.Blackhole = true
		case nhaFDB:
			n.FDB = true
		case nhaOIF:
			n.Ifindex = int(attrU32(a.Data))
		case nhaGateway:
			n.Gateway = addrFrom(a.Data)
		case nhaResGroup:
			var nested []byte
			for na := range parseAttrs(a.Data) {
				if na.Type&nlaTypeMask != nhaResGroupUnbalancedTime {
					nested = appendAttr(nested, na.Type, na.Data)
				}
			}
			n.Attrs = append(n.Attrs, Attr{Type: a.Type, Data: nested})
		default:
			if !nexthopDropAttrs[t] {
				n.Attrs = append(n.Attrs, Attr{Type: a.Type, Data: append([]byte(nil), a.Data...)})
			}
		}
	}
	return n, n.ID != 0
}

func encodeNexthop(n *Nexthop) []byte {
	b := make([]byte, unix.SizeofNhmsg)
	b[0] = n.Family
	// nh_scope stays 0: it is output only, the kernel refuses it on input.
	b[2] = n.Protocol
	binary.NativeEndian.PutUint32(b[4:], n.Flags&unix.RTNH_F_ONLINK)
	b = appendAttr(b, nhaID, u32(n.ID))
	switch {
	case len(n.Group) > 0:
		var g []byte
		for _, m := range n.Group {
			w := max(m.Weight, 1) - 1
			g = binary.NativeEndian.AppendUint32(g, m.ID)
			g = append(g, uint8(w), uint8(w>>8), 0, 0)
		}
		b = appendAttr(b, nhaGroup, g)
		if n.GroupType != 0 {
			b = appendAttr(b, nhaGroupType, binary.NativeEndian.AppendUint16(nil, n.GroupType))
		}
	case n.Blackhole:
		b = appendAttr(b, nhaBlackhole, nil)
	default:
		if n.Ifindex != 0 {
			b = appendAttr(b, nhaOIF, u32(uint32(n.Ifindex)))
		}
		if n.Gateway.IsValid() {
			b = appendAttr(b, nhaGateway, n.Gateway.AsSlice())
		}
	}
	if n.FDB {
		b = appendAttr(b, nhaFDB, nil)
	}
	for _, a := range n.Attrs {
		b = appendAttr(b, a.Type, a.Data)
	}
	return b
}
