package routes

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func checkAppendIsMarshal(t *testing.T, e *routeEntry) {
	t.Helper()
	want, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	if got := appendRouteEntry(nil, e); !bytes.Equal(got, want) {
		t.Errorf("appendRouteEntry wrote\n%s\njson.Marshal\n%s", got, want)
	}
}

// The record's route entries are appended by hand on the reaction path;
// the file must stay exactly what json.Marshal writes.
func TestRouteEntryAppendIsMarshal(t *testing.T) {
	full := route6("2001:db8::/64", hop(2, "fe80::1", 3), hop(3, "", 0))
	full.Src = netip.MustParsePrefix("2001:db8:5::/48")
	full.TOS, full.Protocol, full.Scope, full.Type, full.Flags, full.Priority = 1, 4, 253, 1, 4, 1024
	full.Multipath, full.PrefSrc = true, netip.MustParseAddr("2001:db8::9")
	full.Attrs = []Attr{{Type: 8, Data: []byte{1, 2, 3}}, {Type: 9}, {Type: 10, Data: []byte{}}}
	full.Hops[0].Flags = 4
	full.Hops[0].Attrs = []Attr{{Type: 2, Data: []byte("x")}}
	zoned := route6("fe80::/64", hop(2, "fe80::1", 1))
	zoned.Hops[0].Gateway = netip.MustParseAddr("fe80::1%<e\"\\&>")
	for name, e := range map[string]*routeEntry{
		"nil":     nil,
		"plain":   {Route: route4("203.0.113.0/24", hop(2, "10.1.0.254", 1))},
		"no dst":  {Route: &Route{Family: unix.AF_INET, Table: 254}},
		"nil rt":  {},
		"full":    {Route: full, Removed: []Hop{hop(2, "fe80::1", 3)}, Merge: true, Orig: full, Peers: []*Route{full, nil}, Orphan: true},
		"zoned":   {Route: zoned},
		"nexthop": {Route: &Route{Family: unix.AF_INET, Table: 254, Dst: netip.MustParsePrefix("0.0.0.0/0"), NHID: 7}},
	} {
		t.Run(name, func(t *testing.T) { checkAppendIsMarshal(t, e) })
	}
}

func FuzzRouteEntryAppendIsMarshal(f *testing.F) {
	f.Add(false, []byte{203, 0, 113, 0}, uint8(24), []byte(nil), uint8(0), uint8(0), uint32(100), uint8(unix.RTPROT_STATIC), uint8(0), uint8(unix.RTN_UNICAST),
		uint8(unix.RTNH_F_ONLINK), uint32(50), []byte{10, 1, 0, 1}, uint32(0), false, []byte{2, 0, 0, 0, 0, 1, 192, 0, 2, 1}, uint16(8), []byte{8, 0, 2, 0, 0x78, 5, 0, 0}, true)
	f.Add(true, []byte{0x20, 0x01, 0xd, 0xb8, 0, 0x98}, uint8(64), []byte{0x20, 0x01, 0xd, 0xb8, 0, 5}, uint8(48), uint8(0), uint32(254), uint8(unix.RTPROT_BOOT), uint8(0), uint8(unix.RTN_UNICAST),
		uint8(0), uint32(1024), []byte(nil), uint32(0), true, []byte{2, 0, 0, 0, 0, 0, 1, 0x20, 0x01, 0xd, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 3, 0, 0, 0, 2, 4, 0}, uint16(0), []byte(nil), false)
	f.Fuzz(func(t *testing.T, v6 bool, dst []byte, dstBits uint8, src []byte, srcBits uint8, tos uint8, table uint32, protocol, scope, typ uint8,
		flags uint8, priority uint32, prefsrc []byte, nhid uint32, multipath bool, hops []byte, attrType uint16, attrData []byte, partial bool) {
		r := fuzzRoute(v6, dst, dstBits, src, srcBits, tos, table, protocol, scope, typ, flags, priority, prefsrc, nhid, multipath, hops, attrType, attrData)
		e := &routeEntry{Route: r}
		if partial && len(r.Hops) > 1 {
			e.Removed, e.Merge, e.Orig, e.Peers = r.Hops[:1], true, r, []*Route{r, r}
		}
		checkAppendIsMarshal(t, e)
	})
}

// linkHead is linkState's fields before its lists, in its order: what
// appendLinkHead must write as json.Marshal would.
type linkHead struct {
	Ifname  string    `json:"ifname"`
	Ifindex int       `json:"ifindex"`
	Since   time.Time `json:"since"`
}

// The record's link heads are appended by hand too: the same bytes as
// json.Marshal of linkHead, odd names included.
func TestLinkHeadAppendIsMarshal(t *testing.T) {
	since := time.Date(2026, 12, 6, 6, 30, 1, 123456789, time.UTC)
	for _, name := range []string{"eth0", "a<b>&\"c\\", "é\x01", "bad\xff"} {
		ls := &linkState{Ifname: name, Ifindex: 7, Since: since}
		want, _ := json.Marshal(linkHead{ls.Ifname, ls.Ifindex, ls.Since})
		got, err := appendLinkHead(nil, ls)
		if err != nil || !bytes.Equal(got, want[:len(want)-1]) {
			t.Errorf("%q: appendLinkHead wrote\n%s (%v)\njson.Marshal\n%s", name, got, err, want)
		}
	}
	if _, err := appendLinkHead(nil, &linkState{Since: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}); err == nil {
		t.Error("appendLinkHead took year 10000, which json.Marshal refuses")
	}
}
