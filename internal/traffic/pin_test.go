package traffic

import (
	"strings"
	"testing"

	"github.com/cilium/ebpf/btf"

	"github.com/linkbeat/linkbeat/gen"
)

func u64(name string, bitOff uint32) btf.Member {
	return btf.Member{Name: name, Type: &btf.Int{Name: "__u64", Size: 8}, Offset: btf.Bits(bitOff)}
}

func TestLayoutDiff(t *testing.T) {
	base := &btf.Struct{Name: "if_counters", Size: 16, Members: []btf.Member{u64("rx_packets", 0), u64("rx_bytes", 64)}}
	for _, tc := range []struct {
		name string
		cur  *btf.Struct
		want string // substring; "" means same layout
	}{
		{"same", &btf.Struct{Name: "if_counters", Size: 16, Members: []btf.Member{u64("rx_packets", 0), u64("rx_bytes", 64)}}, ""},
		{"grown", &btf.Struct{Name: "if_counters", Size: 24, Members: []btf.Member{u64("rx_packets", 0), u64("rx_bytes", 64), u64("rx_drops", 128)}}, "size 16 changed to 24"},
		// Same size, fields swapped: only BTF tells.
		{"reordered", &btf.Struct{Name: "if_counters", Size: 16, Members: []btf.Member{u64("rx_bytes", 0), u64("rx_packets", 64)}}, `field 0 "rx_packets" changed to "rx_bytes"`},
		{"narrowed", &btf.Struct{Name: "if_counters", Size: 16, Members: []btf.Member{u64("rx_packets", 0),
			{Name: "rx_bytes", Type: &btf.Int{Name: "__u32", Size: 4}, Offset: 64}}}, "field rx_bytes changed size"},
	} {
		got := LayoutDiff(base, tc.cur)
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("%s: LayoutDiff = %q, want %q", tc.name, got, tc.want)
		}
	}
}

// The build's own maps compare equal to themselves through typeChange,
// the path a restart takes with an unchanged binary.
func TestTypeChangeOfThisBuild(t *testing.T) {
	spec, err := gen.LoadTraffic()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range pinnedMaps {
		ms := spec.Maps[name]
		if ms == nil {
			t.Fatalf("no map %s in the traffic object", name)
		}
		if d := typeChange(spec.Types, ms.Value); d != "" {
			t.Errorf("%s: value differs from itself: %s", name, d)
		}
		st, ok := btf.UnderlyingType(ms.Value).(*btf.Struct)
		if !ok || st.Name == "" {
			t.Errorf("%s: value is not a named struct, so its layout would go unchecked", name)
		}
	}
}

func TestPinNames(t *testing.T) {
	for name, want := range map[string]bool{
		"if_stats": true, "link_state": true, "prog_tc_ingress": true, "prog_xmit_errors": true,
		"link_tcx_ingress_7": true, "link_tcx_egress_12": true, "link_raw_tp_net_dev_xmit": true,
		"arp_replies": true, "prog_arp_ingress": true, "arp_replies.old": false,
		"link_tcx_ingress_": false, "link_tcx_sideways_3": false, "foreign": false, "prog_other": false, "if_stats.bak": false,
	} {
		if got := ownPin(name); got != want {
			t.Errorf("ownPin(%q) = %v, want %v", name, got, want)
		}
	}
	if dir, idx, ok := parseTCXPin(tcxPinName("egress", 42)); !ok || dir != "egress" || idx != 42 {
		t.Errorf("parseTCXPin(tcxPinName(egress, 42)) = %q %d %v", dir, idx, ok)
	}
}
