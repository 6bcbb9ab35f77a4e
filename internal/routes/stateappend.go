package routes

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
	"time"
)

// The record is written on the reaction path, before the deletes. Encoding
// its routes with json.Marshal took 50-250 µs there (reflection over a
// cold CPU's caches; under 4 µs when warm, in a benchmark), the largest
// part of the record's write. These appenders write the same bytes
// (TestRouteEntryAppendIsMarshal, FuzzRouteEntryAppendIsMarshal) with a
// small fraction of the code and allocations.

// appendLinkHead appends the opening of a link's record, the fields
// before its lists, as json.Marshal would write linkState's fields before its lists (without its
// closing brace). Like json.Marshal, it fails on a year outside 0-9999.
func appendLinkHead(b []byte, ls *linkState) ([]byte, error) {
	if y := ls.Since.Year(); y < 0 || y > 9999 {
		return b, fmt.Errorf("record of %s: since %v: year outside of range [0,9999]", ls.Ifname, ls.Since)
	}
	b = append(appendString(append(b, `{"ifname":`...), ls.Ifname), `,"ifindex":`...)
	b = append(strconv.AppendInt(b, int64(ls.Ifindex), 10), `,"since":`...)
	return append(ls.Since.AppendFormat(append(b, '"'), time.RFC3339Nano), '"'), nil
}

// appendString appends s as a JSON string, as json.Marshal would.
func appendString(b []byte, s string) []byte {
	n := len(b)
	return quoted(append(append(b, '"'), s...), n)
}

// appendRouteEntry appends e as json.Marshal would.
func appendRouteEntry(b []byte, e *routeEntry) []byte {
	if e == nil {
		return append(b, "null"...)
	}
	b = append(b, `{"route":`...)
	b = appendRoutePtr(b, e.Route)
	b = appendHopList(b, `,"removed":[`, e.Removed)
	if e.Merge {
		b = append(b, `,"merge":true`...)
	}
	if e.Orig != nil {
		b = append(b, `,"orig":`...)
		b = appendRoutePtr(b, e.Orig)
	}
	if len(e.Peers) > 0 {
		b = append(b, `,"peers":[`...)
		for i, p := range e.Peers {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendRoutePtr(b, p)
		}
		b = append(b, ']')
	}
	if e.Orphan {
		b = append(b, `,"orphan":true`...)
	}
	return append(b, '}')
}

func appendRoutePtr(b []byte, r *Route) []byte {
	if r == nil {
		return append(b, "null"...)
	}
	return appendRoute(b, r)
}

func appendRoute(b []byte, r *Route) []byte {
	b = appendUint(append(b, `{"family":`...), uint64(r.Family))
	b = appendUintOmit(b, `,"tos":`, uint64(r.TOS))
	b = appendUintOmit(b, `,"protocol":`, uint64(r.Protocol))
	b = appendUintOmit(b, `,"scope":`, uint64(r.Scope))
	b = appendUint(append(b, `,"table":`...), uint64(r.Table))
	b = appendPrefix(append(b, `,"dst":`...), r.Dst)
	if r.Src != (netip.Prefix{}) {
		b = appendPrefix(append(b, `,"src":`...), r.Src)
	}
	b = appendUintOmit(b, `,"type":`, uint64(r.Type))
	if r.Multipath {
		b = append(b, `,"multipath":true`...)
	}
	b = appendUintOmit(b, `,"flags":`, uint64(r.Flags))
	b = appendUintOmit(b, `,"priority":`, uint64(r.Priority))
	b = appendUintOmit(b, `,"nhid":`, uint64(r.NHID))
	if r.PrefSrc != (netip.Addr{}) {
		b = appendAddr(append(b, `,"prefsrc":`...), r.PrefSrc)
	}
	b = appendHopList(b, `,"hops":[`, r.Hops)
	b = appendAttrs(b, r.Attrs)
	return append(b, '}')
}

func appendHop(b []byte, h *Hop) []byte {
	b = strconv.AppendInt(append(b, `{"ifindex":`...), int64(h.Ifindex), 10)
	if h.Gateway != (netip.Addr{}) {
		b = appendAddr(append(b, `,"gateway":`...), h.Gateway)
	}
	if h.Weight != 0 {
		b = strconv.AppendInt(append(b, `,"weight":`...), int64(h.Weight), 10)
	}
	b = appendUintOmit(b, `,"flags":`, uint64(h.Flags))
	b = appendAttrs(b, h.Attrs)
	return append(b, '}')
}

func appendAttrs(b []byte, as []Attr) []byte {
	if len(as) == 0 {
		return b
	}
	b = append(b, `,"attrs":[`...)
	for i, a := range as {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendUint(append(b, `{"type":`...), uint64(a.Type))
		b = append(b, `,"data":`...)
		if a.Data == nil {
			b = append(b, "null"...)
		} else {
			b = append(b, '"')
			b = base64.StdEncoding.AppendEncode(b, a.Data)
			b = append(b, '"')
		}
		b = append(b, '}')
	}
	return append(b, ']')
}

func appendUint(b []byte, v uint64) []byte { return strconv.AppendUint(b, v, 10) }

func appendUintOmit(b []byte, key string, v uint64) []byte {
	if v == 0 {
		return b
	}
	return strconv.AppendUint(append(b, key...), v, 10)
}

func appendPrefix(b []byte, p netip.Prefix) []byte {
	n := len(b)
	b, _ = p.AppendText(append(b, '"')) // never fails
	return quoted(b, n)
}

func appendAddr(b []byte, a netip.Addr) []byte {
	n := len(b)
	b, _ = a.AppendText(append(b, '"')) // never fails
	return quoted(b, n)
}

// quoted closes the JSON string opened at b[n] as json.Marshal would.
// Addresses and prefixes need no escaping; anything else (an IPv6 zone
// can hold any byte) is quoted again by json.Marshal.
func quoted(b []byte, n int) []byte {
	for _, c := range b[n+1:] {
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(string(b[n+1:])) // a string never fails
			return append(b[:n], q...)
		}
	}
	return append(b, '"')
}

// appendHopList appends hops as a JSON list after key (which opens it),
// nothing when there are none (omitempty).
func appendHopList(b []byte, key string, hops []Hop) []byte {
	if len(hops) == 0 {
		return b
	}
	b = append(b, key...)
	for i := range hops {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendHop(b, &hops[i])
	}
	return append(b, ']')
}
