package bond

import (
	"testing"
	"time"
)

const ms = int64(time.Millisecond)

// pair is an active-backup bond of eth0 (active) and eth1, both healthy.
func pair() *Bond {
	return &Bond{Index: 10, Name: "bond0", Mode: "active-backup", Miimon: 100, Active: 2, FastFailover: true,
		PrimaryReselect: "always",
		Slaves: []*Slave{
			{Index: 2, Name: "eth0", AdminUp: true, Carrier: true, BondUp: true, Speed: -1, Duplex: -1},
			{Index: 3, Name: "eth1", AdminUp: true, Carrier: true, BondUp: true, Speed: -1, Duplex: -1},
		}}
}

func TestDecideActiveLosesCarrier(t *testing.T) {
	b := pair()
	b.Slaves[0].Carrier, b.Slaves[0].CarrierNs = false, 100*ms
	d := Decide(b, 100*ms+5000)
	if d.To != 3 || d.Reason != ReasonCarrier || d.TriggerNs != 100*ms {
		t.Fatalf("decision %+v", d)
	}
}

func TestDecideHealthyBondIsLeftAlone(t *testing.T) {
	if d := Decide(pair(), 5*ms); d != (Decision{}) {
		t.Fatalf("decision %+v", d)
	}
	b := pair()
	b.Slaves[1].Carrier = false // a backup failing is the bond's business
	if d := Decide(b, 5*ms); d != (Decision{}) {
		t.Fatalf("decision %+v", d)
	}
}

func TestDecideDownDelay(t *testing.T) {
	b := pair()
	b.DownDelay = 200 * time.Millisecond
	b.Slaves[0].Carrier, b.Slaves[0].CarrierNs = false, 100*ms
	if d := Decide(b, 150*ms); d.To != 0 || d.WakeNs != 300*ms {
		t.Fatalf("within downdelay: %+v", d)
	}
	if d := Decide(b, 300*ms); d.To != 3 {
		t.Fatalf("after downdelay: %+v", d)
	}
	// A blip shorter than downdelay: carrier is back, nothing to do.
	b.Slaves[0].Carrier, b.Slaves[0].CarrierNs = true, 180*ms
	if d := Decide(b, 300*ms); d != (Decision{}) {
		t.Fatalf("after a blip: %+v", d)
	}
}

func TestDecideTargetMustBeUsable(t *testing.T) {
	for name, spoil := range map[string]func(s *Slave){
		"no carrier":      func(s *Slave) { s.Carrier = false },
		"admin down":      func(s *Slave) { s.AdminUp = false },
		"down in bond":    func(s *Slave) { s.BondUp = false },
		"dead path (off)": nil,
	} {
		b := pair()
		b.Slaves[0].Carrier = false
		if spoil == nil {
			b.Slaves[1].Path = PathDead // ignored: no ARP targets configured
			if d := Decide(b, 0); d.To != 3 {
				t.Errorf("%s: %+v", name, d)
			}
			continue
		}
		spoil(b.Slaves[1])
		if d := Decide(b, 0); d.To != 0 || d.Declined != "no_live_slave" {
			t.Errorf("%s: %+v", name, d)
		}
	}
}

func TestDecidePrefersPrimaryThenBondOrder(t *testing.T) {
	b := pair()
	b.Slaves = append(b.Slaves, &Slave{Index: 4, Name: "eth2", AdminUp: true, Carrier: true, BondUp: true})
	b.Slaves[0].Carrier = false
	if d := Decide(b, 0); d.To != 3 {
		t.Fatalf("bond order: %+v", d)
	}
	b.Primary = 4
	if d := Decide(b, 0); d.To != 4 {
		t.Fatalf("primary first: %+v", d)
	}
}

func TestDecideNoCurrentActive(t *testing.T) {
	b := pair()
	b.Active = 0
	if d := Decide(b, 0); d.Declined != "no_current_active" || d.To != 0 {
		t.Fatalf("decision %+v", d)
	}
	for _, s := range b.Slaves {
		s.Carrier = false
	}
	if d := Decide(b, 0); d != (Decision{}) {
		t.Fatalf("all down: %+v", d)
	}
}

func TestDecidePrimaryReturn(t *testing.T) {
	setup := func(reselect string) *Bond {
		b := pair()
		b.Primary, b.Active, b.PrimaryReselect = 2, 3, reselect
		b.UpDelay = 50 * time.Millisecond
		b.Slaves[0].CarrierNs = 1000 * ms // came back at 1s
		return b
	}
	b := setup("always")
	if d := Decide(b, 1010*ms); d.To != 0 || d.WakeNs != 1050*ms {
		t.Fatalf("always, within updelay: %+v", d)
	}
	if d := Decide(b, 1050*ms); d.To != 2 || d.Reason != ReasonPrimary {
		t.Fatalf("always, after updelay: %+v", d)
	}
	b = setup("failure")
	if d := Decide(b, 2000*ms); d != (Decision{}) {
		t.Fatalf("failure: %+v", d)
	}
	b = setup("better")
	if d := Decide(b, 2000*ms); d != (Decision{}) {
		t.Fatalf("better, same (unknown) speed: %+v", d)
	}
	b.Slaves[0].Speed, b.Slaves[0].Duplex = 10000, 1
	b.Slaves[1].Speed, b.Slaves[1].Duplex = 1000, 1
	if d := Decide(b, 2000*ms); d.To != 2 {
		t.Fatalf("better, faster primary: %+v", d)
	}
	b.Slaves[0].Speed = 100
	if d := Decide(b, 2000*ms); d != (Decision{}) {
		t.Fatalf("better, slower primary: %+v", d)
	}
	// Not yet up in the bond's view: the kernel would refuse.
	b = setup("always")
	b.Slaves[0].BondUp = false
	if d := Decide(b, 2000*ms); d != (Decision{}) {
		t.Fatalf("primary not up in the bond: %+v", d)
	}
}

func TestDecidePath(t *testing.T) {
	b := pair()
	b.PathChecks = true
	b.Slaves[0].Path, b.Slaves[0].PathNs = PathDead, 7*ms
	b.Slaves[1].Path = PathAlive
	if d := Decide(b, 8*ms); d.To != 3 || d.Reason != ReasonPath || d.TriggerNs != 7*ms {
		t.Fatalf("dead path: %+v", d)
	}
	// Only while a backup still hears its targets.
	for _, v := range []PathVerdict{PathDead, PathUnknown} {
		b.Slaves[1].Path = v
		if d := Decide(b, 8*ms); d.To != 0 || d.Declined != "no_live_slave" {
			t.Fatalf("backup path %d: %+v", v, d)
		}
	}
	// A carrier loss may go to a slave with no verdict yet, never to a
	// dead path.
	b.Slaves[0].Carrier, b.Slaves[0].Path = false, PathAlive
	b.Slaves[1].Path = PathUnknown
	if d := Decide(b, 8*ms); d.To != 3 || d.Reason != ReasonCarrier {
		t.Fatalf("carrier loss, backup unknown: %+v", d)
	}
	b.Slaves[1].Path = PathDead
	if d := Decide(b, 8*ms); d.To != 0 || d.Declined != "no_live_slave" {
		t.Fatalf("carrier loss, backup path dead: %+v", d)
	}
}

func TestDecideOnlyWhereActiveSlaveApplies(t *testing.T) {
	for _, mode := range []string{"802.3ad", "balance-rr", "balance-xor", "broadcast"} {
		b := pair()
		b.Mode = mode
		b.Slaves[0].Carrier = false
		if d := Decide(b, 0); d != (Decision{}) {
			t.Errorf("%s: %+v", mode, d)
		}
	}
	for _, mode := range []string{"balance-tlb", "balance-alb"} {
		b := pair()
		b.Mode = mode
		b.Slaves[0].Carrier = false
		if d := Decide(b, 0); d.To != 3 {
			t.Errorf("%s: %+v", mode, d)
		}
	}
	b := pair()
	b.FastFailover = false
	b.Slaves[0].Carrier = false
	if d := Decide(b, 0); d != (Decision{}) {
		t.Errorf("fast_failover off: %+v", d)
	}
}

func TestBetterMatchesKernel(t *testing.T) {
	for _, c := range []struct {
		ps, pd, cs, cd int
		want           bool
	}{
		{1000, 1, 1000, 1, false},
		{10000, 1, 1000, 1, true},
		{1000, 1, 1000, 0, true},
		{-1, -1, 1000, 1, true}, // unknown is the largest u32, as in the kernel
		{1000, 1, -1, -1, false},
	} {
		got := better(&Slave{Speed: c.ps, Duplex: c.pd}, &Slave{Speed: c.cs, Duplex: c.cd})
		if got != c.want {
			t.Errorf("better(%d/%d over %d/%d) = %v", c.ps, c.pd, c.cs, c.cd, got)
		}
	}
}
