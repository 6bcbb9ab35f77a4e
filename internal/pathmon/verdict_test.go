package pathmon

import (
	"bytes"
	"encoding/hex"
	"net"
	"net/netip"
	"testing"
)

func TestStep(t *testing.T) {
	type obs struct {
		replies uint64
		want    Verdict
		changed bool
	}
	for _, tc := range []struct {
		name      string
		missedMax int
		steps     []obs
	}{
		{"first reply makes it alive", 3, []obs{{1, Alive, true}, {2, Alive, false}, {5, Alive, false}}},
		{"never answers: dead after missed_max", 3, []obs{{0, Unknown, false}, {0, Unknown, false}, {0, Dead, true}, {0, Dead, false}}},
		{"alive, then silent, dead on the third miss", 3, []obs{{1, Alive, true}, {1, Alive, false}, {1, Alive, false}, {1, Dead, true}, {1, Dead, false}}},
		{"a reply before missed_max resets the count", 3, []obs{{1, Alive, true}, {1, Alive, false}, {1, Alive, false}, {2, Alive, false}, {2, Alive, false}, {2, Alive, false}, {2, Dead, true}}},
		{"dead, then alive on the first reply", 2, []obs{{0, Unknown, false}, {0, Dead, true}, {0, Dead, false}, {1, Alive, true}}},
		{"missed_max 1", 1, []obs{{1, Alive, true}, {1, Dead, true}, {2, Alive, true}}},
		{"counter reset is a reply", 3, []obs{{7, Alive, true}, {2, Alive, false}, {2, Alive, false}}},
		{"counter reset to zero is no reply", 2, []obs{{7, Alive, true}, {0, Alive, false}, {0, Dead, true}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s State
			for i, o := range tc.steps {
				next, changed := step(s, o.replies, tc.missedMax)
				if next.Verdict != o.want || changed != o.changed {
					t.Fatalf("step %d (replies %d, from %+v): got %v changed=%v, want %v changed=%v", i, o.replies, s, next.Verdict, changed, o.want, o.changed)
				}
				if next.Missed > tc.missedMax {
					t.Fatalf("step %d: missed %d exceeds missed_max %d", i, next.Missed, tc.missedMax)
				}
				s = next
			}
		})
	}
}

func TestStepSaturates(t *testing.T) {
	var s State
	for range 1000 {
		s, _ = step(s, 0, 3)
	}
	if s.Missed != 3 || s.Verdict != Dead {
		t.Fatalf("after 1000 misses: %+v", s)
	}
}

func mac(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

func TestChooseMAC(t *testing.T) {
	bondMAC := mac("52:54:00:00:00:01") // taken from the first slave
	perm2 := mac("52:54:00:00:00:02")
	for _, tc := range []struct {
		name       string
		in         macInput
		want       net.HardwareAddr // nil: derived
		filter     bool
		source     string
		wantErrors bool
	}{
		{name: "no bond: current", in: macInput{Current: perm2}, want: perm2, source: "current"},
		{name: "none: second slave's permanent address", in: macInput{Current: bondMAC, Perm: perm2, Bond: bondMAC, FailOverMAC: "none"}, want: perm2, filter: true, source: "permanent"},
		{name: "none: first slave, whose address the bond took: derived", in: macInput{Current: bondMAC, Perm: bondMAC, Bond: bondMAC, FailOverMAC: "none"}, filter: true, source: "derived"},
		{name: "none: no permanent address: derived", in: macInput{Current: bondMAC, Bond: bondMAC, FailOverMAC: "none"}, filter: true, source: "derived"},
		{name: "none: bond address set by hand, slave released back to its own", in: macInput{Current: perm2, Perm: perm2, Bond: mac("02:00:00:00:00:aa"), FailOverMAC: "none"}, want: perm2, filter: false, source: "permanent"},
		{name: "active: backup keeps its own", in: macInput{Current: perm2, Perm: perm2, Bond: bondMAC, FailOverMAC: "active"}, want: perm2, source: "current"},
		{name: "active: the active one shares its address with the bond", in: macInput{Current: bondMAC, Perm: bondMAC, Bond: bondMAC, FailOverMAC: "active"}, want: bondMAC, source: "current"},
		{name: "follow: derived", in: macInput{Current: perm2, Perm: perm2, Bond: bondMAC, FailOverMAC: "follow"}, filter: true, source: "derived"},
		{name: "802.3ad: like none", in: macInput{Current: bondMAC, Perm: perm2, Bond: bondMAC, Mode: "802.3ad", FailOverMAC: "follow"}, want: perm2, filter: true, source: "permanent"},
		{name: "balance-alb swaps addresses: derived", in: macInput{Current: perm2, Perm: perm2, Bond: bondMAC, Mode: "balance-alb", FailOverMAC: "none"}, filter: true, source: "derived"},
		{name: "balance-tlb swaps addresses: derived", in: macInput{Current: perm2, Perm: perm2, Bond: bondMAC, Mode: "balance-tlb", FailOverMAC: "active"}, filter: true, source: "derived"},
		{name: "active-backup follow: derived", in: macInput{Current: perm2, Perm: perm2, Bond: bondMAC, Mode: "active-backup", FailOverMAC: "follow"}, filter: true, source: "derived"},
		{name: "unknown mode: derived", in: macInput{Current: perm2, Perm: perm2, Bond: bondMAC, FailOverMAC: "BondFailOverMac(-1)"}, filter: true, source: "derived"},
		{name: "no address", in: macInput{}, wantErrors: true},
		{name: "zero address", in: macInput{Current: mac("00:00:00:00:00:00")}, wantErrors: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := chooseMAC(tc.in)
			if tc.wantErrors {
				if err == nil {
					t.Fatalf("got %+v, want an error", c)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Filter != tc.filter || c.Source != tc.source {
				t.Errorf("got filter=%v source=%s, want filter=%v source=%s", c.Filter, c.Source, tc.filter, tc.source)
			}
			if tc.want != nil && !bytes.Equal(c.MAC, tc.want) {
				t.Errorf("got %s, want %s", c.MAC, tc.want)
			}
			// Whatever is chosen, a backup never probes from the bond's
			// address unless the bond's address follows the active slave.
			if tc.in.Bond != nil && c.Source != "current" && bytes.Equal(c.MAC, tc.in.Bond) {
				t.Errorf("chose the bond's address %s", c.MAC)
			}
			if !usable(c.MAC) {
				t.Errorf("chose unusable %s", c.MAC)
			}
		})
	}
}

func TestDerivedMAC(t *testing.T) {
	a, b := derivedMAC(mac("52:54:00:12:34:56")), derivedMAC(mac("52:54:00:12:34:57"))
	if a[0]&0x02 == 0 || a[0]&0x01 != 0 {
		t.Errorf("%s is not a locally administered unicast address", a)
	}
	if bytes.Equal(a, b) {
		t.Errorf("two slaves got the same derived address %s", a)
	}
	if !bytes.Equal(a, derivedMAC(mac("52:54:00:12:34:56"))) {
		t.Error("derived address is not stable")
	}
}

func TestProbeFrame(t *testing.T) {
	f := probeFrame(mac("02:11:22:33:44:55"), netip.MustParseAddr("192.0.2.7"))
	want := "ffffffffffff" + "021122334455" + "0806" + // Ethernet
		"0001" + "0800" + "06" + "04" + "0001" + // Ethernet/IPv4 request
		"021122334455" + "00000000" + // sha, spa 0.0.0.0
		"000000000000" + "c0000207" // tha zero, tpa
	if got := hex.EncodeToString(f); got != want {
		t.Fatalf("frame\n got %s\nwant %s", got, want)
	}
}
