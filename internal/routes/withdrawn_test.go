package routes

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestReadWithdrawnFromStateFile(t *testing.T) {
	dir := t.TempDir()
	if w, err := ReadWithdrawn(dir); err != nil || len(w) != 0 {
		t.Fatalf("no state file: %v %v", w, err)
	}
	since := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	gw := netip.MustParseAddr("10.1.0.2")
	st := &state{Version: stateVersion, Links: map[string]*linkState{
		linkID("eth1", 3): {Ifname: "eth1", Ifindex: 3, Since: since, Routes: []*routeEntry{
			{Route: &Route{Family: 2, Dst: netip.MustParsePrefix("203.0.113.0/24"), Table: 254, Hops: []Hop{{Ifindex: 3, Gateway: gw, Weight: 1}}}},
			{Route: &Route{Family: 2, Dst: netip.MustParsePrefix("0.0.0.0/0"), Table: 254, Multipath: true,
				Hops: []Hop{{Ifindex: 3, Gateway: gw, Weight: 1}, {Ifindex: 4, Gateway: netip.MustParseAddr("10.2.0.2"), Weight: 2}}},
				Removed: []Hop{{Ifindex: 3, Gateway: gw, Weight: 1}}},
		}},
		linkID("eth0", 2): {Ifname: "eth0", Ifindex: 2, Since: since},
	}}
	if err := st.save(dir); err != nil {
		t.Fatal(err)
	}
	w, err := ReadWithdrawn(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(w) != 2 || w[0].Ifname != "eth0" || w[1].Ifname != "eth1" || !w[1].Since.Equal(since) || len(w[1].Routes) != 2 {
		t.Fatalf("withdrawn %+v", w)
	}
	if !strings.HasPrefix(w[1].Routes[0], "203.0.113.0/24 table 254") || !strings.Contains(w[1].Routes[1], "only its hops through this link") {
		t.Fatalf("routes %q", w[1].Routes)
	}
}
