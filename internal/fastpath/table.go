// Package fastpath keeps linkbeat's bond fast path: a dead active slave's
// frames leave through a live slave from the moment the driver reports the
// carrier loss, before the bond switches (which waits for RTNL).
//
// The kernel side (bpf/fastpath.c, and fp_carrier in bpf/carrier.c) marks
// the slave dead and picks its replacement in the driver's
// netif_carrier_off call, from a candidate table this package keeps current
// (fp_bonds, fp_slaves). TC egress on the dead slave redirects out of the
// replacement; TC ingress on the replacement hands its frames to the bond.
// The redirect ends when the bond has switched (this package deletes it),
// when carrier returns (the carrier program deletes it), or, at the latest,
// when it expires: the daemon refreshes it while it waits for the bond, so
// a dead daemon never leaves one in force for longer than the TTL.
//
// Where the decision is made: Eligible and Candidates (pure, here). Where
// the kernel is touched: maps.go (BPF maps and TC hooks) and announce.go
// (gratuitous ARP and unsolicited NA, AF_PACKET). The Manager (manager.go)
// runs both on one goroutine.
package fastpath

import (
	"fmt"

	"github.com/linkbeat/linkbeat/internal/bond"
)

// MaxSlaves is the candidate table's size (FP_MAX_SLAVES in linkbeat.h).
const MaxSlaves = 8

// Eligible says whether the fast path may run for a bond, and if not, why
// not, in words for features, status and the log.
func Eligible(v bond.FastView) (bool, string) {
	switch {
	case !v.On:
		return false, fmt.Sprintf("off in the config (bonds.%s.fast_path: off)", v.Name)
	case v.Mode == "balance-tlb" || v.Mode == "balance-alb":
		return false, fmt.Sprintf("mode %s: the bond checks each slave's carrier on every frame and moves egress itself (bond_slave_can_tx; one frame dropped); nothing reaches a dead slave to redirect", v.Mode)
	case !Covers(v.Mode):
		return false, fmt.Sprintf("mode %s: the fast path covers active-backup, 802.3ad and balance-xor", v.Mode)
	// The bond applies fail_over_mac in active-backup only: in the other
	// modes every slave has the bond's MAC.
	case v.Mode == "active-backup" && v.FailOverMac != "none" && v.FailOverMac != "":
		return false, fmt.Sprintf("fail_over_mac=%s: the slaves do not share the bond's MAC, so a redirected frame would leave with the wrong source address", v.FailOverMac)
	case v.DownDelay > 0:
		return false, fmt.Sprintf("downdelay=%v: the bond keeps a slave without carrier for that long on purpose; the fast path stays off for this bond rather than overrule it", v.DownDelay)
	case len(v.Slaves) > MaxSlaves:
		return false, fmt.Sprintf("%d slaves: the candidate table holds %d", len(v.Slaves), MaxSlaves)
	}
	return true, ""
}

var modes = map[string]bool{"active-backup": true, "802.3ad": true, "balance-xor": true}

// Covers says whether the fast path covers bonding mode mode (Eligible
// has the other reasons it may stay off).
func Covers(mode string) bool { return modes[mode] }

// HashMode says a bond of this mode picks a slave per flow from its
// transmit array (bond_xmit_hash): every slave it can send on gets frames.
func HashMode(mode string) bool { return mode == "802.3ad" || mode == "balance-xor" }

// Flags are the kernel's settings for a bond's mode: active-backup hands
// the replacement's frames to the bond (a backup's would reach
// exact-match handlers only) and redirects for the active slave only.
// Modes that send through every slave mark any slave's loss and leave
// receiving to the bond, which delivers every slave's frames (in 802.3ad
// those of the active aggregator's ports, the only ones it sends on).
// The hash modes spread a dead slave's flows over the live candidates.
func Flags(v bond.FastView) uint32 {
	switch {
	case v.Mode == "active-backup":
		return FlagIngress
	case HashMode(v.Mode):
		return FlagAny | FlagHash
	}
	return FlagAny
}

// Candidates are the slaves the kernel may pick as a replacement, in the
// order it tries them: the primary first, then the bond's own order; each
// up in the bond's view and admin up (decide.go's rules; carrier is
// checked by the kernel at the moment of the pick).
// In tlb and alb, where a backup's loss counts too, the active slave comes
// first: it already carries the bond's other traffic.
// In the hash modes they are the slaves the bond's own transmit array
// holds (bond_update_slave_arr: up, active, and in 802.3ad in the active
// aggregator), in the bond's order; the kernel spreads flows over them.
func Candidates(v bond.FastView) []uint32 {
	var out []uint32
	ok := func(s bond.FastSlave) bool { return s.AdminUp && s.BondUp }
	first := v.Primary
	switch {
	case HashMode(v.Mode):
		ok = func(s bond.FastSlave) bool { return s.AdminUp && s.BondUp && inTxArray(v, s) }
		first = 0
	case Flags(v)&FlagAny != 0 && v.Active != 0:
		first = v.Active
	}
	for _, s := range v.Slaves {
		if s.Index == first && ok(s) {
			out = append(out, uint32(s.Index))
		}
	}
	for _, s := range v.Slaves {
		if s.Index != first && ok(s) {
			out = append(out, uint32(s.Index))
		}
	}
	return out
}

// inTxArray says whether a hash-mode bond sends on s when s has carrier:
// not a port it keeps as backup, and in 802.3ad a port of the active
// aggregator (another aggregator's ports lead to another partner, or to
// one that does not collect on them).
func inTxArray(v bond.FastView, s bond.FastSlave) bool {
	if s.Backup {
		return false
	}
	return v.Mode != "802.3ad" || (v.AdAggregator != 0 && s.Aggregator == v.AdAggregator)
}
