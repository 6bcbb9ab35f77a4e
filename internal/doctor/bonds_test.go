package doctor

import (
	"testing"

	"github.com/linkbeat/linkbeat/internal/registry"
)

// abBond is bond0 (ifindex 10) over eth0 (2) and eth1 (3).
func abBond(mode string, set func(*registry.Bond)) *Snapshot {
	return clean(bondL(10, "bond0", mode, set), port(2, "eth0", 10, nil), port(3, "eth1", 10, nil))
}

func noMonitor(b *registry.Bond) { b.Miimon = 0 }

func TestBondNoLinkMonitor(t *testing.T) {
	t.Run("active-backup covered by linkbeat: warning", func(t *testing.T) {
		f := only(t, checkBondMonitor, abBond("active-backup", noMonitor), "bond-no-link-monitor")[0]
		if f.Severity != Warning {
			t.Errorf("severity %s, want warning", f.Severity)
		}
		mustContain(t, "why", f.Why, "never notices a dead slave", "covered while linkbeat runs")
		mustContain(t, "fix", f.Fix, "ip link set bond0 type bond miimon 100", "arp_validate all")
	})
	t.Run("mode without an active slave: error", func(t *testing.T) {
		f := only(t, checkBondMonitor, abBond("balance-xor", noMonitor), "bond-no-link-monitor")[0]
		if f.Severity != Error {
			t.Errorf("severity %s, want error", f.Severity)
		}
		mustContain(t, "why", f.Why, "does not apply to mode balance-xor")
	})
	t.Run("fast failover off in the config: error", func(t *testing.T) {
		s := withConfig(abBond("active-backup", noMonitor), "bonds:\n  bond0:\n    fast_failover: false\n")
		f := only(t, checkBondMonitor, s, "bond-no-link-monitor")[0]
		if f.Severity != Error {
			t.Errorf("severity %s, want error", f.Severity)
		}
		mustContain(t, "why", f.Why, "fast_failover: false")
	})
	t.Run("ports not monitored: error", func(t *testing.T) {
		s := abBond("active-backup", noMonitor)
		s.Monitor.Daemon.Interfaces = []string{"eth0"}
		f := only(t, checkBondMonitor, s, "bond-no-link-monitor")[0]
		if f.Severity != Error {
			t.Errorf("severity %s, want error", f.Severity)
		}
		mustContain(t, "why", f.Why, "would not monitor eth1")
	})
	t.Run("listing the bond covers its ports: warning", func(t *testing.T) {
		s := abBond("active-backup", noMonitor)
		s.Monitor.Daemon.Interfaces = []string{"bond0"}
		if f := only(t, checkBondMonitor, s, "bond-no-link-monitor")[0]; f.Severity != Warning {
			t.Errorf("severity %s, want warning", f.Severity)
		}
	})
	t.Run("miimon set", func(t *testing.T) {
		only(t, checkBondMonitor, abBond("active-backup", nil))
	})
	t.Run("ARP monitor set", func(t *testing.T) {
		only(t, checkBondMonitor, abBond("active-backup", func(b *registry.Bond) { b.Miimon, b.ArpInterval = 0, 200 }))
	})
}

func arpMon(b *registry.Bond) {
	b.Miimon, b.ArpInterval, b.ArpIPTargets = 0, 200, []string{"10.0.0.2", "10.0.0.3"}
}

func TestArpValidateNone(t *testing.T) {
	t.Run("none", func(t *testing.T) {
		f := only(t, checkArpValidate, abBond("active-backup", arpMon), "bond-arp-validate-none")[0]
		mustContain(t, "summary", f.Summary, "arp_interval=200", "dead path looks alive")
		mustContain(t, "why", f.Why, "10.0.0.2, 10.0.0.3")
		mustContain(t, "fix", f.Fix, "ip link set bond0 type bond arp_validate all")
	})
	t.Run("all", func(t *testing.T) {
		only(t, checkArpValidate, abBond("active-backup", func(b *registry.Bond) { arpMon(b); b.ArpValidate = "all" }))
	})
	t.Run("active", func(t *testing.T) {
		only(t, checkArpValidate, abBond("active-backup", func(b *registry.Bond) { arpMon(b); b.ArpValidate = "active" }))
	})
	t.Run("no ARP monitor", func(t *testing.T) {
		only(t, checkArpValidate, abBond("active-backup", nil))
	})
}

func TestArpNoTargets(t *testing.T) {
	f := only(t, checkArpTargets, abBond("active-backup", func(b *registry.Bond) { b.Miimon, b.ArpInterval = 0, 200 }), "bond-arp-no-targets")[0]
	if f.Severity != Error {
		t.Errorf("severity %s, want error", f.Severity)
	}
	only(t, checkArpTargets, abBond("active-backup", arpMon))
	only(t, checkArpTargets, abBond("active-backup", nil))
}

func speeds(s *Snapshot, sp ...Speed) *Snapshot {
	for i, v := range sp {
		s.Speeds[2+i] = v
	}
	return s
}

func TestActiveBackupMixedSpeedNoPrimary(t *testing.T) {
	t.Run("mixed, no primary", func(t *testing.T) {
		s := speeds(abBond("active-backup", nil), Speed{1000, 1}, Speed{10000, 1})
		f := only(t, checkActiveBackupSpeeds, s, "bond-ab-mixed-speed-no-primary")[0]
		mustContain(t, "summary", f.Summary, "eth0 1000 Mb/s", "eth1 10000 Mb/s")
		mustContain(t, "fix", f.Fix, "primary eth1")
	})
	t.Run("primary set", func(t *testing.T) {
		only(t, checkActiveBackupSpeeds, speeds(abBond("active-backup", func(b *registry.Bond) { b.Primary = 3 }), Speed{1000, 1}, Speed{10000, 1}))
	})
	t.Run("same speed", func(t *testing.T) {
		only(t, checkActiveBackupSpeeds, speeds(abBond("active-backup", nil), Speed{1000, 1}, Speed{1000, 1}))
	})
	t.Run("one speed unknown", func(t *testing.T) {
		only(t, checkActiveBackupSpeeds, speeds(abBond("active-backup", nil), Speed{-1, -1}, Speed{10000, 1}))
	})
	t.Run("not active-backup", func(t *testing.T) {
		only(t, checkActiveBackupSpeeds, speeds(abBond("balance-alb", nil), Speed{1000, 1}, Speed{10000, 1}))
	})
}

// lacp is an 802.3ad bond whose ports heard a partner and share
// aggregator 1.
func lacp() *Snapshot {
	partner := func(s *registry.BondSlave) { s.AggregatorID, s.ActorState, s.PartnerState = 1, 0x3d, 0x3d }
	s := clean(bondL(10, "bond0", "802.3ad", func(b *registry.Bond) { b.AdAggregator, b.AdPartnerMac = 1, "52:54:00:aa:bb:cc" }),
		port(2, "eth0", 10, partner), port(3, "eth1", 10, partner))
	return speeds(s, Speed{10000, 1}, Speed{10000, 1})
}

func TestLACPSpeedDuplexMismatch(t *testing.T) {
	t.Run("speeds differ", func(t *testing.T) {
		f := only(t, checkLACPSpeeds, speeds(lacp(), Speed{10000, 1}, Speed{1000, 1}), "bond-lacp-speed-duplex-mismatch")[0]
		mustContain(t, "summary", f.Summary, "speeds differ", "eth1 1000 Mb/s")
	})
	t.Run("half duplex", func(t *testing.T) {
		f := only(t, checkLACPSpeeds, speeds(lacp(), Speed{1000, 1}, Speed{1000, 0}), "bond-lacp-speed-duplex-mismatch")[0]
		mustContain(t, "summary", f.Summary, "duplex differs", "eth1 half duplex")
	})
	t.Run("matching", func(t *testing.T) {
		only(t, checkLACPSpeeds, lacp())
	})
	t.Run("unknown speeds", func(t *testing.T) {
		only(t, checkLACPSpeeds, speeds(lacp(), Speed{-1, -1}, Speed{1000, 1}))
	})
}

func TestLACPNoPartner(t *testing.T) {
	t.Run("ports defaulted", func(t *testing.T) {
		s := lacp()
		for i := range s.Links {
			if s.Links[i].BondSlave != nil {
				s.Links[i].BondSlave.ActorState = 0x45 // activity, aggregation, defaulted
				s.Links[i].BondSlave.AggregatorID = uint16(s.Links[i].Index)
			}
		}
		s.Links[0].Bond.AdAggregator, s.Links[0].Bond.AdPartnerMac = 2, zeroMAC
		f := only(t, checkLACPPartner, s, "bond-lacp-no-partner")[0]
		if f.Severity != Error {
			t.Errorf("severity %s, want error", f.Severity)
		}
		mustContain(t, "summary", f.Summary, "eth0, eth1")
		mustContain(t, "fix", f.Fix, "channel-group 1 mode active", "balance-alb")
		// The split into aggregators is the same cause: one finding.
		only(t, checkLACPAggregators, s)
	})
	t.Run("partner MAC zero", func(t *testing.T) {
		s := lacp()
		s.Links[0].Bond.AdPartnerMac = zeroMAC
		only(t, checkLACPPartner, s, "bond-lacp-no-partner")
	})
	t.Run("partner present", func(t *testing.T) {
		only(t, checkLACPPartner, lacp())
	})
	t.Run("no port up", func(t *testing.T) {
		s := lacp()
		s.Links[0].Bond.AdPartnerMac = zeroMAC
		for i := range s.Links {
			if s.Links[i].BondSlave != nil {
				s.Links[i].BondSlave.MiiStatus = "down"
			}
		}
		only(t, checkLACPPartner, s)
	})
}

func TestLACPSplitAggregators(t *testing.T) {
	s := lacp()
	s.Links[2].BondSlave.AggregatorID = 2
	f := only(t, checkLACPAggregators, s, "bond-lacp-split-aggregators")[0]
	mustContain(t, "summary", f.Summary, "2 aggregators", "1: eth0, active", "2: eth1")
	mustContain(t, "why", f.Why, "eth1 sit idle")
	only(t, checkLACPAggregators, lacp())
}

func TestBondModeOutsideGuide(t *testing.T) {
	for _, m := range []string{"balance-rr", "balance-xor", "broadcast", "balance-tlb"} {
		if f := only(t, checkBondMode, abBond(m, nil), "bond-mode-outside-guide")[0]; f.Severity != Info {
			t.Errorf("%s: severity %s, want info", m, f.Severity)
		}
	}
	for _, m := range []string{"active-backup", "802.3ad", "balance-alb"} {
		only(t, checkBondMode, abBond(m, nil))
	}
}

func TestFastPathOff(t *testing.T) {
	f := only(t, checkFastPath, abBond("active-backup", func(b *registry.Bond) { b.FailOverMac = "active" }), "bond-fast-path-off")[0]
	mustContain(t, "summary", f.Summary, "fail_over_mac=active")
	f = only(t, checkFastPath, abBond("active-backup", func(b *registry.Bond) { b.DownDelay = 200 }), "bond-fast-path-off")[0]
	mustContain(t, "summary", f.Summary, "downdelay=200ms")
	only(t, checkFastPath, abBond("active-backup", nil))
	// The hash modes have a fast path too; fail_over_mac does not apply
	// to them.
	for _, mode := range []string{"802.3ad", "balance-xor"} {
		f = only(t, checkFastPath, abBond(mode, func(b *registry.Bond) { b.DownDelay = 200 }), "bond-fast-path-off")[0]
		mustContain(t, mode+" summary", f.Summary, "downdelay=200ms")
		only(t, checkFastPath, abBond(mode, func(b *registry.Bond) { b.FailOverMac = "active" }))
	}
	only(t, checkFastPath, abBond("balance-alb", func(b *registry.Bond) { b.DownDelay = 200 }))
	only(t, checkFastPath, withConfig(abBond("active-backup", func(b *registry.Bond) { b.DownDelay = 200 }), "bonds:\n  bond0:\n    fast_path: off\n"))
}
