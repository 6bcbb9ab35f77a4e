package routes

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/linkbeat/linkbeat/internal/rtnl"
)

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

// nlKernel talks rtnetlink in the network namespace that was current when
// NewKernel ran: its sockets are opened there and stay bound to it.
type nlKernel struct {
	conn   *rtnl.Conn
	sub    int // notification socket; groups joined by Subscribe
	err    error
	mu     sync.Mutex // guards subbed
	subbed bool
}

// NewKernel returns the netlink Kernel of the calling thread's network
// namespace. Errors opening sockets surface on first use.
func NewKernel() Kernel {
	k := &nlKernel{sub: -1}
	// Room for a batch's acknowledgements: the kernel drops what does not
	// fit, and a lost ACK must not be waited for. Never wait for an answer
	// forever: a reply lost to an overrun would otherwise hang the
	// reaction path.
	if k.conn, k.err = rtnl.Dial(rtnl.ConnOptions{RcvBuf: 4 << 20, Timeout: replyTimeout}); k.err != nil {
		return k
	}
	k.sub, k.err = rtnl.Socket()
	return k
}

// request sends one message and calls fn for each reply until the dump ends
// or the ACK arrives.
func (k *nlKernel) request(typ, flags uint16, body []byte, fn func(typ uint16, flags uint16, data []byte) error) error {
	if k.err != nil {
		return k.err
	}
	return k.conn.Request(typ, flags, body, fn)
}

// dump runs a dump through rtnl.Retry, which does it again while the
// kernel marks it inconsistent; reset drops an interrupted attempt's part.
func (k *nlKernel) dump(typ uint16, body []byte, fn func(typ, flags uint16, data []byte) error, reset func()) error {
	_, err := rtnl.Retry("rtnetlink", func() (struct{}, error) {
		reset()
		return struct{}{}, k.request(typ, unix.NLM_F_DUMP, body, fn)
	})
	return err
}

func (k *nlKernel) Routes() ([]*Route, error) {
	var out []*Route
	for _, fam := range []uint8{unix.AF_INET, unix.AF_INET6} {
		body := make([]byte, unix.SizeofRtMsg)
		body[0] = fam
		var got []*Route
		err := k.dump(unix.RTM_GETROUTE, body, func(typ, _ uint16, data []byte) error {
			if r, ok := decodeRoute(data); ok {
				got = append(got, r)
			}
			return nil
		}, func() { got = got[:0] })
		if err != nil {
			return nil, fmt.Errorf("dump routes: %w", err)
		}
		out = append(out, got...)
	}
	return out, nil
}

func (k *nlKernel) Nexthops() ([]*Nexthop, error) {
	var out []*Nexthop
	err := k.dump(unix.RTM_GETNEXTHOP, make([]byte, unix.SizeofNhmsg), func(typ, _ uint16, data []byte) error {
		if n, ok := decodeNexthop(data); ok {
			out = append(out, n)
		}
		return nil
	}, func() { out = out[:0] })
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL) {
		return nil, nil // kernel without nexthop objects
	}
	if err != nil {
		return nil, fmt.Errorf("dump nexthops: %w", err)
	}
	return out, nil
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

func (k *nlKernel) AddRoute(r *Route, op Op) error {
	return k.request(unix.RTM_NEWROUTE, opFlags(op), encodeRoute(r, false), nil)
}

func (k *nlKernel) DeleteRoute(r *Route) error {
	return deleteError(r, k.request(unix.RTM_DELROUTE, 0, encodeRoute(r, true), nil))
}

func deleteError(r *Route, err error) error {
	if r.NHID != 0 && errors.Is(err, unix.EINVAL) {
		// "Nexthop id does not exist": the kernel flushed the object,
		// and every route using it went with it.
		return fmt.Errorf("%w (%w)", unix.ESRCH, err)
	}
	return err
}

// A batch of ApplyRoutes is at most batchBytes and batchMsgs: its acks
// (each a socket buffer of its own, about 1 KiB with an extended-ACK
// message) must fit the receive buffer, or the kernel drops them.
const (
	batchBytes   = 32 << 10
	batchMsgs    = 256
	replyTimeout = 10 * time.Second
)

func (k *nlKernel) ApplyRoutes(changes []RouteChange) []error {
	errs := make([]error, len(changes))
	var bodies [][]byte
	var types, flags []uint16
	for _, c := range changes {
		if c.Delete {
			bodies, types, flags = append(bodies, encodeRoute(c.Route, true)), append(types, unix.RTM_DELROUTE), append(flags, 0)
		} else {
			bodies, types, flags = append(bodies, encodeRoute(c.Route, false)), append(types, unix.RTM_NEWROUTE), append(flags, opFlags(c.Op))
		}
	}
	for start := 0; start < len(bodies); {
		end, size := start, 0
		for end < len(bodies) && end-start < batchMsgs && (end == start || size+unix.NLMSG_HDRLEN+len(bodies[end]) <= batchBytes) {
			size += unix.NLMSG_HDRLEN + len(bodies[end])
			end++
		}
		k.batch(types[start:end], flags[start:end], bodies[start:end], errs[start:end])
		start = end
	}
	for i, c := range changes {
		if c.Delete {
			errs[i] = deleteError(c.Route, errs[i])
		}
	}
	return errs
}

// batch sends several requests in one datagram and collects each one's
// ACK: the kernel handles them in order and acknowledges each.
func (k *nlKernel) batch(types, flags []uint16, bodies [][]byte, errs []error) {
	if k.err != nil {
		for i := range errs {
			errs[i] = k.err
		}
		return
	}
	k.conn.Batch(types, flags, bodies, errs)
}

func (k *nlKernel) AddNexthop(n *Nexthop, op Op) error {
	return k.request(unix.RTM_NEWNEXTHOP, opFlags(op), encodeNexthop(n), nil)
}

func (k *nlKernel) DeleteNexthop(id uint32) error {
	b := make([]byte, unix.SizeofNhmsg)
	b = appendAttr(b, nhaID, u32(id))
	return k.request(unix.RTM_DELNEXTHOP, 0, b, nil)
}

func (k *nlKernel) Link(ifindex int) (LinkInfo, error) {
	body := make([]byte, unix.SizeofIfInfomsg)
	binary.NativeEndian.PutUint32(body[4:], uint32(ifindex))
	var li LinkInfo
	found := false
	err := k.request(unix.RTM_GETLINK, 0, body, func(typ, _ uint16, data []byte) error {
		if typ != unix.RTM_NEWLINK || len(data) < unix.SizeofIfInfomsg {
			return nil
		}
		flags := binary.NativeEndian.Uint32(data[8:])
		li.Carrier = flags&unix.IFF_UP != 0 && flags&unix.IFF_LOWER_UP != 0
		for _, a := range parseAttrs(data[unix.SizeofIfInfomsg:]) {
			if a.Type&nlaTypeMask == unix.IFLA_IFNAME {
				li.Name = rtnl.CString(a.Data)
			}
		}
		found = true
		return nil
	})
	if errors.Is(err, unix.ENODEV) {
		return li, ErrNoLink
	}
	if err != nil {
		return li, fmt.Errorf("get link %d: %w", ifindex, err)
	}
	if !found {
		return li, ErrNoLink
	}
	return li, nil
}

func (k *nlKernel) Subscribe(ctx context.Context) (<-chan Update, error) {
	if k.err != nil {
		return nil, k.err
	}
	k.mu.Lock()
	if k.subbed {
		k.mu.Unlock()
		return nil, errors.New("already subscribed")
	}
	k.subbed = true
	k.mu.Unlock()
	for _, g := range []int{unix.RTNLGRP_IPV4_ROUTE, unix.RTNLGRP_IPV6_ROUTE, unix.RTNLGRP_NEXTHOP} {
		err := unix.SetsockoptInt(k.sub, unix.SOL_NETLINK, unix.NETLINK_ADD_MEMBERSHIP, g)
		if err != nil && g != unix.RTNLGRP_NEXTHOP { // nexthop group is optional
			return nil, fmt.Errorf("join netlink group %d: %w", g, err)
		}
	}
	// A big buffer makes ENOBUFS (and the re-dump it costs) rare.
	if unix.SetsockoptInt(k.sub, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20) != nil {
		unix.SetsockoptInt(k.sub, unix.SOL_SOCKET, unix.SO_RCVBUF, 8<<20)
	}
	if err := unix.SetNonblock(k.sub, true); err != nil {
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	// The runtime poller lets Close interrupt a blocked Read.
	f := os.NewFile(uintptr(k.sub), "rtnetlink-notify")
	ch := make(chan Update, 1024)
	go func() {
		<-ctx.Done()
		f.Close()
	}()
	go func() {
		defer close(ch)
		buf := make([]byte, 1<<20)
		for {
			n, err := f.Read(buf)
			if errors.Is(err, unix.ENOBUFS) {
				select {
				case ch <- Update{Kind: Overrun}:
				case <-ctx.Done():
					return
				}
				continue
			}
			if err != nil {
				return // closed by ctx, or a dead socket
			}
			msgs, err := syscall.ParseNetlinkMessage(buf[:n])
			if err != nil {
				continue
			}
			for _, m := range msgs {
				if k.conn.PortID() != 0 && m.Header.Pid == k.conn.PortID() {
					// The echo of linkbeat's own change: the Manager has put
					// it in its cache already, and applying it late would
					// briefly undo a later change (a route moved behind a
					// twin, deleted again after a restore).
					continue
				}
				u, ok := decodeUpdate(m.Header.Type, m.Data)
				if !ok {
					continue
				}
				u.Flags = m.Header.Flags
				select {
				case ch <- u:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return ch, nil
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

// ---- attribute codec ----

func parseAttrs(b []byte) []Attr {
	var out []Attr
	for len(b) >= 4 {
		l := int(binary.NativeEndian.Uint16(b))
		if l < 4 || l > len(b) {
			break
		}
		out = append(out, Attr{Type: binary.NativeEndian.Uint16(b[2:]), Data: b[4:l:l]})
		al := (l + 3) &^ 3
		if al > len(b) {
			break
		}
		b = b[al:]
	}
	return out
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
	for _, a := range parseAttrs(b[unix.SizeofRtMsg:]) {
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
	var hops []Hop
	for len(b) >= unix.SizeofRtNexthop {
		l := int(binary.NativeEndian.Uint16(b))
		if l < unix.SizeofRtNexthop || l > len(b) {
			break
		}
		h := Hop{Flags: b[2] & userHopFlags, Weight: int(b[3]) + 1, Ifindex: int(int32(binary.NativeEndian.Uint32(b[4:])))}
		for _, a := range parseAttrs(b[unix.SizeofRtNexthop:l]) {
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
	for _, a := range parseAttrs(b[unix.SizeofNhmsg:]) {
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
			for _, na := range parseAttrs(a.Data) {
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
