package fastpath

import (
	"encoding/binary"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/linkbeat/linkbeat/internal/bond"
	"github.com/linkbeat/linkbeat/internal/netframe"
)

func view() bond.FastView {
	return bond.FastView{Index: 10, Name: "bond0", Mode: "active-backup", FailOverMac: "none", Active: 2, On: true,
		Slaves: []bond.FastSlave{
			{Index: 2, Name: "eth0", AdminUp: true, BondUp: true, Carrier: true},
			{Index: 3, Name: "eth1", AdminUp: true, BondUp: true, Carrier: true},
			{Index: 4, Name: "eth2", AdminUp: true, BondUp: true, Carrier: true},
		}}
}

func TestEligible(t *testing.T) {
	if ok, why := Eligible(view()); !ok {
		t.Fatalf("plain active-backup bond refused: %s", why)
	}
	for _, tc := range []struct {
		name string
		edit func(*bond.FastView)
		want string
	}{
		{"config off", func(v *bond.FastView) { v.On = false }, "fast_path: off"},
		{"fail_over_mac", func(v *bond.FastView) { v.FailOverMac = "active" }, "fail_over_mac=active"},
		{"downdelay", func(v *bond.FastView) { v.DownDelay = 200 * time.Millisecond }, "downdelay=200ms"},
		{"mode", func(v *bond.FastView) { v.Mode = "802.3ad" }, "mode 802.3ad"},
		{"mode xor", func(v *bond.FastView) { v.Mode = "balance-xor" }, "mode balance-xor"},
		{"mode alb", func(v *bond.FastView) { v.Mode = "balance-alb" }, "bond_slave_can_tx"},
		{"too many slaves", func(v *bond.FastView) {
			for i := range MaxSlaves {
				v.Slaves = append(v.Slaves, bond.FastSlave{Index: 20 + i})
			}
		}, "candidate table holds 8"},
	} {
		v := view()
		tc.edit(&v)
		ok, why := Eligible(v)
		if ok || !strings.Contains(why, tc.want) {
			t.Errorf("%s: eligible=%v why=%q, want refused with %q", tc.name, ok, why, tc.want)
		}
	}
}

func TestCandidates(t *testing.T) {
	v := view()
	if got := Candidates(v); !slices.Equal(got, []uint32{2, 3, 4}) {
		t.Errorf("no primary: %v, want the bond's order", got)
	}
	v.Primary = 4
	if got := Candidates(v); !slices.Equal(got, []uint32{4, 2, 3}) {
		t.Errorf("primary eth2: %v, want it first", got)
	}
	v.Slaves[0].BondUp = false // down in the bond's view: the kernel would refuse it
	v.Slaves[2].AdminUp = false
	if got := Candidates(v); !slices.Equal(got, []uint32{3}) {
		t.Errorf("eth0 down in the bond, eth2 admin down: %v, want [3]", got)
	}
}

func TestCandidatesAnySlave(t *testing.T) {
	v := view()
	v.Mode, v.Active, v.Primary = "balance-alb", 3, 4
	if got := Candidates(v); !slices.Equal(got, []uint32{3, 2, 4}) {
		t.Errorf("any-slave mode: %v, want the active slave first, then the bond's order", got)
	}
	if Flags(v) != FlagAny || Flags(view()) != FlagIngress {
		t.Errorf("flags alb %d, active-backup %d", Flags(v), Flags(view()))
	}
}

func TestAnnouncements(t *testing.T) {
	mac := net.HardwareAddr{0x52, 0x54, 0, 1, 2, 3}
	fs := announcements(mac, []netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("fd00::1")})
	if len(fs) != 2 {
		t.Fatalf("%d frames, want a GARP and an NA", len(fs))
	}
	g := fs[0].data
	if fs[0].proto != ethPARP || !slices.Equal(g[0:6], []byte(broadcast)) || !slices.Equal(g[6:12], []byte(mac)) ||
		binary.BigEndian.Uint16(g[20:]) != 1 || !slices.Equal(g[28:32], []byte{10, 0, 0, 1}) || !slices.Equal(g[38:42], []byte{10, 0, 0, 1}) {
		t.Errorf("GARP frame % x", g)
	}
	na := fs[1].data
	ip, icmp := na[14:54], na[54:]
	if fs[1].proto != ethPIPv6 || ip[6] != 58 || ip[7] != 255 || icmp[0] != 136 || icmp[4]&0x20 == 0 || !slices.Equal(icmp[26:32], []byte(mac)) {
		t.Errorf("NA frame % x", na)
	}
	var src, dst [16]byte
	copy(src[:], ip[8:24])
	copy(dst[:], ip[24:40])
	// A message with its checksum in place sums to 0 (ones' complement).
	if c := netframe.ICMPv6Checksum(src, dst, icmp); c != 0 {
		t.Errorf("NA checksum does not verify: %#x", c)
	}
}
