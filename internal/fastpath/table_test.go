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
		{"mode rr", func(v *bond.FastView) { v.Mode = "balance-rr" }, "mode balance-rr"},
		{"mode broadcast", func(v *bond.FastView) { v.Mode = "broadcast" }, "mode broadcast"},
		{"downdelay xor", func(v *bond.FastView) { v.Mode, v.DownDelay = "balance-xor", time.Second }, "downdelay=1s"},
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

func TestEligibleHashModes(t *testing.T) {
	for _, mode := range []string{"802.3ad", "balance-xor"} {
		v := view()
		v.Mode = mode
		// fail_over_mac applies to active-backup only: the hash modes
		// give every slave the bond's MAC whatever it says.
		v.FailOverMac = "active"
		if ok, why := Eligible(v); !ok {
			t.Errorf("%s bond refused: %s", mode, why)
		}
		if Flags(v) != FlagAny|FlagHash {
			t.Errorf("%s flags %d, want FlagAny|FlagHash (no ingress redirect: the bond receives on every transmitting slave)", mode, Flags(v))
		}
	}
}

// lacpView is an 802.3ad bond whose active aggregator is 1: eth0, eth1
// and eth3 are in it, eth2 is in aggregator 2 (another partner).
func lacpView() bond.FastView {
	v := view()
	v.Mode, v.AdAggregator, v.Active, v.Primary = "802.3ad", 1, 3, 3
	v.Slaves = append(v.Slaves, bond.FastSlave{Index: 5, Name: "eth3", AdminUp: true, BondUp: true, Carrier: true})
	for i := range v.Slaves {
		v.Slaves[i].Aggregator = 1
	}
	v.Slaves[2].Aggregator, v.Slaves[2].Backup = 2, true
	return v
}

func TestCandidatesLACP(t *testing.T) {
	v := lacpView()
	// The bond's order, not the active or primary slave first: the
	// kernel spreads flows over all of them.
	if got := Candidates(v); !slices.Equal(got, []uint32{2, 3, 5}) {
		t.Errorf("active aggregator 1: %v, want its ports [2 3 5] in the bond's order", got)
	}
	v.Slaves[3].Backup = true // in the aggregator, not yet enabled (LACP not in sync)
	v.Slaves[1].BondUp = false
	if got := Candidates(v); !slices.Equal(got, []uint32{2}) {
		t.Errorf("eth1 down, eth3 not enabled: %v, want [2]", got)
	}
	v = lacpView()
	v.AdAggregator = 0
	if got := Candidates(v); len(got) != 0 {
		t.Errorf("no active aggregator: %v, want none (nowhere the partner collects)", got)
	}
	v = lacpView()
	v.AdAggregator, v.Slaves[2].Backup = 2, false
	if got := Candidates(v); !slices.Equal(got, []uint32{4}) {
		t.Errorf("active aggregator 2: %v, want [4]", got)
	}
}

// A hash-mode record names the live candidates a dead slave's flows are
// spread over: not the dead one, not one without carrier, not another
// aggregator's port.
func TestSpread(t *testing.T) {
	v := lacpView()
	for i := range v.Slaves {
		v.Slaves[i].Carrier = true
	}
	v.Slaves[3].Carrier = false // eth3 (5) lost carrier too
	names := func(idx ...int) []string {
		var out []string
		for _, i := range idx {
			for _, s := range v.Slaves {
				if s.Index == i {
					out = append(out, s.Name)
				}
			}
		}
		return out
	}
	if got, want := spread(v, 2), names(3); !slices.Equal(got, want) {
		t.Errorf("eth0 (2) dead, eth3 (5) without carrier: spread %v, want %v", got, want)
	}
	if got := spread(v, 3); !slices.Equal(got, names(2)) {
		t.Errorf("eth1 (3) dead: spread %v, want %v", got, names(2))
	}
}

func TestCandidatesXor(t *testing.T) {
	v := view()
	v.Mode, v.Primary = "balance-xor", 4
	v.Slaves[1].AdminUp = false
	if got := Candidates(v); !slices.Equal(got, []uint32{2, 4}) {
		t.Errorf("balance-xor: %v, want every up slave in the bond's order [2 4]", got)
	}
}

func TestSendsToHash(t *testing.T) {
	v := lacpView()
	for i := range v.Slaves {
		v.Slaves[i].NoticedCarrier = true
	}
	v.Slaves[0].Carrier = false // the driver's call; linkwatch has not run
	b := &bondRun{view: v}
	if !b.sendsTo(2) {
		t.Errorf("802.3ad, eth0 without carrier, before linkwatch's notice: want the bond still sending to it")
	}
	b.view.Slaves[0].NoticedCarrier = false // linkwatch's notice: the bond's notifier rebuilt the array first
	if b.sendsTo(2) {
		t.Errorf("802.3ad, linkwatch's notice of eth0's carrier loss read: want the bond no longer sending to it")
	}
	b.view.Slaves[0].NoticedCarrier = true
	b.view.Slaves[0].BondUp = false // marked down: the transmit array is rebuilt without it
	if b.sendsTo(2) {
		t.Errorf("802.3ad, eth0 marked down in the bond: want the bond no longer sending to it")
	}
	b.view.Slaves[0].BondUp, b.view.Slaves[0].Backup = true, true
	if b.sendsTo(2) {
		t.Errorf("802.3ad, eth0 disabled in its aggregator: want the bond no longer sending to it")
	}
	b.view.Slaves[0].Backup, b.view.Slaves[0].Carrier = false, true
	if b.sendsTo(2) {
		t.Errorf("carrier back: want no redirect")
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
