package bond

import "time"

// Slave is one port as the manager sees it.
type Slave struct {
	Index   int
	Name    string
	AdminUp bool
	// Carrier and CarrierNs (CLOCK_MONOTONIC of the last change) are as
	// the event source ordered them: the driver's event when there is one.
	Carrier   bool
	CarrierNs int64
	// BondUp is BOND_LINK_UP in the bond's own view: the kernel refuses
	// to make any other slave active.
	BondUp bool
	// Path is the path monitor's verdict (are the ARP targets
	// answering?), reached at PathNs.
	Path   PathVerdict
	PathNs int64
	// Speed and Duplex feed primary_reselect=better (-1: unknown).
	Speed, Duplex int
}

// PathVerdict is what the path monitor last said of a slave.
type PathVerdict uint8

const (
	PathUnknown PathVerdict = iota // no verdict yet, or no probing
	PathAlive
	PathDead
)

// Bond is one bond as the manager sees it.
type Bond struct {
	Index           int
	Name            string
	Mode            string
	Miimon          int
	UpDelay         time.Duration
	DownDelay       time.Duration
	ArpInterval     int
	Active          int
	Primary         int
	PrimaryReselect string
	FailOverMac     string
	// AdAggregator is 802.3ad's active aggregator (for the fast path).
	AdAggregator int
	// Slaves are in the bond's own order.
	Slaves []*Slave
	// FastFailover and PathChecks are linkbeat's settings for it.
	FastFailover bool
	PathChecks   bool
}

// Decision is what to do with a bond now.
type Decision struct {
	// To is the slave to make active (0: none).
	To     int
	Reason string
	// TriggerNs is the kernel time of what made the switch necessary.
	TriggerNs int64
	// Declined says why a wanted switch is left to the bond.
	Declined string
	// WakeNs asks to decide again at this time (a downdelay or updelay
	// running out); 0 when nothing is pending.
	WakeNs int64
}

// Switchable reports whether a bond mode has an active slave to choose.
func Switchable(mode string) bool {
	return mode == "active-backup" || mode == "balance-tlb" || mode == "balance-alb"
}

func (b *Bond) slave(idx int) *Slave {
	for _, s := range b.Slaves {
		if s.Index == idx && idx != 0 {
			return s
		}
	}
	return nil
}

// usable is what the kernel demands of a new active slave (up, with
// carrier, BOND_LINK_UP), and no dead path when paths are checked.
func (b *Bond) usable(s *Slave) bool {
	return s.AdminUp && s.Carrier && s.BondUp && !(b.PathChecks && s.Path == PathDead)
}

// Decide picks what to do with a bond at monotonic time now. It never
// fights the bond: it only replaces an active slave that has failed (after
// downdelay), or brings the primary back as primary_reselect says (after
// updelay), and only to a slave the kernel would accept.
func Decide(b *Bond, now int64) Decision {
	if !b.FastFailover || !Switchable(b.Mode) {
		return Decision{}
	}
	active := b.slave(b.Active)
	if active == nil {
		// The kernel refuses a switch without a current active slave;
		// the bond picks one itself when a slave comes up in its view.
		for _, s := range b.Slaves {
			if s.AdminUp && s.Carrier {
				return Decision{Declined: "no_current_active"}
			}
		}
		return Decision{}
	}

	reason, trigger, wake := b.failing(active, now)
	if wake != 0 {
		return Decision{WakeNs: wake}
	}
	if reason != "" {
		var best *Slave
		for _, s := range b.Slaves {
			if s == active || !b.usable(s) {
				continue
			}
			// Leave a dead path only for one known to be alive.
			if reason == ReasonPath && s.Path != PathAlive {
				continue
			}
			if s.Index == b.Primary {
				best = s
				break
			}
			if best == nil {
				best = s
			}
		}
		if best == nil {
			return Decision{Declined: "no_live_slave", TriggerNs: trigger}
		}
		return Decision{To: best.Index, Reason: reason, TriggerNs: trigger}
	}

	// The active slave is fine: only the primary's return can move it.
	p := b.slave(b.Primary)
	if p == nil || p == active || !b.usable(p) {
		return Decision{}
	}
	if ready := p.CarrierNs + int64(b.UpDelay); now < ready {
		return Decision{WakeNs: ready}
	}
	switch b.PrimaryReselect {
	case "always", "":
	case "better":
		if !better(p, active) {
			return Decision{}
		}
	default: // "failure": only a failure moves the active slave
		return Decision{}
	}
	return Decision{To: p.Index, Reason: ReasonPrimary, TriggerNs: p.CarrierNs}
}

// failing says whether the active slave has failed, and since when; or,
// while downdelay runs, when to look again.
func (b *Bond) failing(active *Slave, now int64) (reason string, trigger, wake int64) {
	switch {
	case !active.Carrier:
		if until := active.CarrierNs + int64(b.DownDelay); now < until {
			return "", 0, until
		}
		return ReasonCarrier, active.CarrierNs, 0
	case b.PathChecks && active.Path == PathDead:
		return ReasonPath, active.PathNs, 0
	}
	return "", 0, 0
}

// better is bond_should_change_active's test for primary_reselect=better:
// speed and duplex compared as the kernel does, unknown (-1) being the
// largest u32.
func better(p, cur *Slave) bool {
	ps, cs := uint32(p.Speed), uint32(cur.Speed)
	pd, cd := uint8(p.Duplex), uint8(cur.Duplex)
	return !(ps < cs || (ps == cs && pd <= cd))
}
