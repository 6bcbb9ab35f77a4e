package doctor

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/linkbeat/linkbeat/internal/bond"
	"github.com/linkbeat/linkbeat/internal/fastpath"
	"github.com/linkbeat/linkbeat/internal/registry"
)

// lacpDefaulted is the LACP port state bit (IEEE 802.1AX; AD_STATE_DEFAULTED
// in bond_3ad.h) of a port that has heard no partner and uses defaults.
const lacpDefaulted = 0x40

const zeroMAC = "00:00:00:00:00:00"

// bonds returns the bond masters, in ifindex order.
func (s *Snapshot) bonds() []registry.Link {
	var out []registry.Link
	for _, l := range s.Links {
		if l.Bond != nil {
			out = append(out, l)
		}
	}
	slices.SortFunc(out, func(a, b registry.Link) int { return a.Index - b.Index })
	return out
}

func names(ls []registry.Link) []string {
	out := make([]string, len(ls))
	for i, l := range ls {
		out[i] = l.Name
	}
	return out
}

func bondSubject(b registry.Link) string { return fmt.Sprintf("%s (%s)", b.Name, b.Bond.Mode) }

// fastFailover says whether linkbeat run would switch the bond on a
// carrier event, and if not, why.
func (s *Snapshot) fastFailover(b registry.Link) (bool, string) {
	if !bond.Switchable(b.Bond.Mode) {
		return false, fmt.Sprintf("linkbeat's fast failover does not apply to mode %s (only active-backup, balance-tlb and balance-alb have an active slave to choose)", b.Bond.Mode)
	}
	if !s.Monitor.config().ForBond(b.Name).FastFailover {
		return false, fmt.Sprintf("the config turns linkbeat's fast failover off for %s (bonds.%s.fast_failover: false)", b.Name, b.Name)
	}
	var unwatched []string
	for _, sl := range s.slaves(b.Index) {
		if !s.monitored(sl) {
			unwatched = append(unwatched, sl.Name)
		}
	}
	if len(unwatched) > 0 {
		return false, fmt.Sprintf("linkbeat run would not monitor %s, so it never hears of %s carrier loss (list %s in --interfaces or the config to cover its ports)",
			strings.Join(unwatched, ", "), pluralIts(len(unwatched)), b.Name)
	}
	return true, ""
}

func pluralIts(n int) string {
	if n == 1 {
		return "its"
	}
	return "their"
}

func checkBondMonitor(s *Snapshot) []Finding {
	var out []Finding
	for _, b := range s.bonds() {
		if b.Bond.Miimon != 0 || b.Bond.ArpInterval != 0 {
			continue
		}
		f := Finding{
			ID: "bond-no-link-monitor", Subject: bondSubject(b), Guide: guideBonding,
			Summary: fmt.Sprintf("%s has miimon=0 and no ARP monitor: the bond never fails over by itself", b.Name),
			Fix: fmt.Sprintf("Give it a link monitor: `ip link set %s type bond miimon 100`, or, to check the path and not only the link "+
				"(active-backup, balance-rr, balance-xor, broadcast), `ip link set %s type bond arp_interval 200 arp_ip_target GATEWAY arp_validate all`. "+
				"Put the same in the bond's configuration (ifupdown: bond-miimon 100) so it survives a reboot.", b.Name, b.Name),
		}
		const base = "The bonding driver changes slaves only on its miimon or ARP monitor tick; with neither it never notices a dead slave and keeps sending into it."
		if ok, why := s.fastFailover(b); ok {
			f.Severity = Warning
			f.Why = base + " linkbeat run's fast failover switches this bond on the driver's carrier event, so it is covered while linkbeat runs, but not while linkbeat is stopped, restarting or not yet started at boot."
		} else {
			f.Severity = Error
			f.Why = base + " Nothing else covers it: " + why + "."
		}
		out = append(out, f)
	}
	return out
}

func checkArpValidate(s *Snapshot) []Finding {
	var out []Finding
	for _, b := range s.bonds() {
		if b.Bond.ArpInterval == 0 || b.Bond.ArpValidate != "none" {
			continue
		}
		out = append(out, Finding{
			ID: "bond-arp-validate-none", Severity: Warning, Subject: bondSubject(b), Guide: guideActiveBackup,
			Summary: fmt.Sprintf("%s monitors ARP (arp_interval=%d) with arp_validate=none: a dead path looks alive", b.Name, b.Bond.ArpInterval),
			Why: fmt.Sprintf("Without validation the ARP monitor counts any frame a slave receives as proof of life: broadcasts, other hosts' ARP, "+
				"the active slave's own probes coming back through the switch. A slave whose path to %s is dead stays \"up\", "+
				"and the bond can keep it or fail over onto it.", targets(b)),
			Fix: fmt.Sprintf("`ip link set %s type bond arp_validate all` (or `echo all > /sys/class/net/%s/bonding/arp_validate`), "+
				"and the same in the bond's configuration (ifupdown: bond-arp-validate all).", b.Name, b.Name),
		})
	}
	return out
}

func targets(b registry.Link) string {
	if len(b.Bond.ArpIPTargets) == 0 {
		return "its ARP targets"
	}
	return strings.Join(b.Bond.ArpIPTargets, ", ")
}

func checkArpTargets(s *Snapshot) []Finding {
	var out []Finding
	for _, b := range s.bonds() {
		if b.Bond.ArpInterval == 0 || len(b.Bond.ArpIPTargets) > 0 {
			continue
		}
		out = append(out, Finding{
			ID: "bond-arp-no-targets", Severity: Error, Subject: bondSubject(b), Guide: guideBonding,
			Summary: fmt.Sprintf("%s has arp_interval=%d but no arp_ip_target: the ARP monitor probes nothing", b.Name, b.Bond.ArpInterval),
			Why: "With no target no probe is sent, so a slave's state depends on whatever traffic happens to arrive: on a quiet network " +
				"every slave goes down, on a busy one a dead path stays up. miimon is off meanwhile (the driver runs one monitor).",
			Fix: fmt.Sprintf("`ip link set %s type bond arp_ip_target GATEWAY[,OTHER] arp_validate all`, "+
				"or switch to carrier monitoring: `ip link set %s type bond arp_interval 0 miimon 100`.", b.Name, b.Name),
		})
	}
	return out
}

// speedList describes the ports whose speed is known, and the distinct
// speeds among them.
func (s *Snapshot) speedList(ports []registry.Link) (desc []string, distinct map[int]bool) {
	distinct = map[int]bool{}
	for _, p := range ports {
		sp, ok := s.Speeds[p.Index]
		if !ok || sp.Mbps <= 0 {
			continue
		}
		distinct[sp.Mbps] = true
		desc = append(desc, fmt.Sprintf("%s %d Mb/s", p.Name, sp.Mbps))
	}
	return desc, distinct
}

func checkActiveBackupSpeeds(s *Snapshot) []Finding {
	var out []Finding
	for _, b := range s.bonds() {
		if b.Bond.Mode != "active-backup" || b.Bond.Primary != 0 {
			continue
		}
		ports := s.slaves(b.Index)
		desc, distinct := s.speedList(ports)
		if len(distinct) < 2 {
			continue
		}
		fastest, best := "", 0
		for _, p := range ports {
			if sp := s.Speeds[p.Index].Mbps; sp > best {
				fastest, best = p.Name, sp
			}
		}
		out = append(out, Finding{
			ID: "bond-ab-mixed-speed-no-primary", Severity: Warning, Subject: bondSubject(b), Guide: guideActiveBackup,
			Summary: fmt.Sprintf("%s has slaves of mixed speed (%s) and no primary", b.Name, strings.Join(desc, ", ")),
			Why: "Without a primary the bond keeps whichever slave is active: after one failover onto a slower slave it stays there " +
				"when the faster one comes back, and runs below its capacity until the next failure. linkbeat follows the bond's " +
				"own rules (primary, primary_reselect) and does not pick the faster slave either.",
			Fix: fmt.Sprintf("Make the fastest slave the primary: `ip link set %s type bond primary %s primary_reselect better` "+
				"(better: go back to it when it is faster than the active slave), and the same in the bond's configuration "+
				"(ifupdown: bond-primary %s).", b.Name, fastest, fastest),
		})
	}
	return out
}

func checkLACPSpeeds(s *Snapshot) []Finding {
	var out []Finding
	for _, b := range s.bonds() {
		if b.Bond.Mode != "802.3ad" {
			continue
		}
		ports := s.slaves(b.Index)
		desc, distinct := s.speedList(ports)
		var duplexes []string
		half, full := false, false
		for _, p := range ports {
			switch s.Speeds[p.Index].Duplex {
			case 0:
				half = true
				duplexes = append(duplexes, p.Name+" half duplex")
			case 1:
				full = true
			}
		}
		if len(distinct) < 2 && !half {
			continue
		}
		var what []string
		if len(distinct) >= 2 {
			what = append(what, "speeds differ ("+strings.Join(desc, ", ")+")")
		}
		if half {
			w := strings.Join(duplexes, ", ")
			if full {
				w = "duplex differs (" + w + ")"
			}
			what = append(what, w)
		}
		out = append(out, Finding{
			ID: "bond-lacp-speed-duplex-mismatch", Severity: Warning, Subject: bondSubject(b), Guide: guideLACP,
			Summary: fmt.Sprintf("%s's ports do not match: %s", b.Name, strings.Join(what, "; ")),
			Why: "LACP aggregates only ports of one speed, in full duplex. The others land in aggregators of their own (a half-duplex " +
				"port is never aggregated), and the bond sends through one aggregator at a time (ad_select): the odd ports carry nothing, " +
				"or the bond runs on the lesser aggregator.",
			Fix: "Use ports of the same speed, full duplex: check the cabling and the switch port settings (`ethtool IFACE`), " +
				fmt.Sprintf("or take the odd port out (`ip link set IFACE nomaster`). To mix speeds, use active-backup with the fastest as primary. "+
					"See `grep -A12 'Slave Interface' /proc/net/bonding/%s`.", b.Name),
		})
	}
	return out
}

// upPorts are the ports the bond counts as up.
func (s *Snapshot) upPorts(b registry.Link) []registry.Link {
	var out []registry.Link
	for _, p := range s.slaves(b.Index) {
		if p.BondSlave.LinkUp() {
			out = append(out, p)
		}
	}
	return out
}

// lacpAlone lists the up ports of an 802.3ad bond that have no LACP
// partner, and whether the bond as a whole has none.
func (s *Snapshot) lacpAlone(b registry.Link) (alone []registry.Link, noPartner bool) {
	up := s.upPorts(b)
	if len(up) == 0 {
		return nil, false
	}
	for _, p := range up {
		if p.BondSlave.ActorState&lacpDefaulted != 0 {
			alone = append(alone, p)
		}
	}
	if b.Bond.AdPartnerMac == zeroMAC || len(alone) > 0 {
		if len(alone) == 0 {
			alone = up
		}
		return alone, true
	}
	return nil, false
}

func checkLACPPartner(s *Snapshot) []Finding {
	var out []Finding
	for _, b := range s.bonds() {
		if b.Bond.Mode != "802.3ad" {
			continue
		}
		alone, none := s.lacpAlone(b)
		if !none {
			continue
		}
		out = append(out, Finding{
			ID: "bond-lacp-no-partner", Severity: Error, Subject: bondSubject(b), Guide: guideLACP,
			Summary: fmt.Sprintf("%s hears no LACP partner on %s", b.Name, strings.Join(names(alone), ", ")),
			Why: "No LACPDU comes back, so the ports use defaulted partner data and each ends up in an aggregator of its own: the bond " +
				"sends through one port only, and if the switch ports form a static channel the switch hashes frames onto ports the " +
				"bond does not listen on, and they are lost.",
			Fix: "Configure the switch ports as one LACP channel (IOS: `channel-protocol lacp` and `channel-group 1 mode active` on each). " +
				"If you cannot configure the switches, 802.3ad is the wrong mode (guide, step 1 to 5): use balance-alb to share bandwidth, " +
				fmt.Sprintf("or active-backup. Check with `grep -i partner /proc/net/bonding/%s`.", b.Name),
		})
	}
	return out
}

func checkLACPAggregators(s *Snapshot) []Finding {
	var out []Finding
	for _, b := range s.bonds() {
		if b.Bond.Mode != "802.3ad" {
			continue
		}
		if _, none := s.lacpAlone(b); none {
			continue // bond-lacp-no-partner explains the split
		}
		byAgg := map[uint16][]string{}
		for _, p := range s.upPorts(b) {
			if id := p.BondSlave.AggregatorID; id != 0 {
				byAgg[id] = append(byAgg[id], p.Name)
			}
		}
		if len(byAgg) < 2 {
			continue
		}
		active := b.Bond.AdAggregator
		ids := make([]int, 0, len(byAgg))
		for id := range byAgg {
			ids = append(ids, int(id))
		}
		slices.Sort(ids)
		var groups, idle []string
		for _, id := range ids {
			mark := ""
			if id == active {
				mark = ", active"
			} else if active != 0 {
				idle = append(idle, byAgg[uint16(id)]...)
			}
			groups = append(groups, fmt.Sprintf("%d: %s%s", id, strings.Join(byAgg[uint16(id)], " "), mark))
		}
		why := "Only the bond's active aggregator carries traffic"
		if len(idle) > 0 {
			why += "; " + strings.Join(idle, ", ") + " sit idle"
		}
		out = append(out, Finding{
			ID: "bond-lacp-split-aggregators", Severity: Warning, Subject: bondSubject(b), Guide: guideTree,
			Summary: fmt.Sprintf("%s's ports are in %d aggregators (%s)", b.Name, len(byAgg), strings.Join(groups, "; ")),
			Why: why + ". Usual causes: the ports go to two switches that are not one LACP partner (no stack or MLAG), the switch ports " +
				"are in different channel groups, or the ports differ in speed.",
			Fix: "Put the switch ports in one channel group, or make the two switches one LACP partner (stack, MLAG, vPC). " +
				"With two independent switches, use active-backup (guide, step 3), or balance-alb. " +
				fmt.Sprintf("Compare the partner and aggregator of each port in /proc/net/bonding/%s.", b.Name),
		})
	}
	return out
}

func checkBondMode(s *Snapshot) []Finding {
	why := map[string]string{
		"balance-rr":  "it needs a static channel on the switch (etherchannel mode on) and reorders a flow's packets across ports, which TCP takes for loss",
		"balance-xor": "it needs a static channel on the switch, with no protocol to tell a miswired or dead port; 802.3ad does the same with LACP",
		"broadcast":   "it sends every frame through every port: for special cases only",
		"balance-tlb": "incoming traffic arrives on one port only; balance-alb shares it too, under the same conditions",
	}
	var out []Finding
	for _, b := range s.bonds() {
		w, ok := why[b.Bond.Mode]
		if !ok {
			continue
		}
		out = append(out, Finding{
			ID: "bond-mode-outside-guide", Severity: Info, Subject: bondSubject(b), Guide: guideTree,
			Summary: fmt.Sprintf("%s runs %s, which the guide's decision tree does not lead to", b.Name, b.Bond.Mode),
			Why:     "It may be what you want, but " + w + ".",
			Fix:     "Walk the tree (`linkbeat doctor --guide`): active-backup, 802.3ad (you control the switches) or balance-alb (you do not).",
		})
	}
	return out
}

// checkFastPath says where the bond fast path stays off for safety
// (fail_over_mac, downdelay): a carrier loss then costs what the
// user-space switch takes, not nothing.
func checkFastPath(s *Snapshot) []Finding {
	var out []Finding
	for _, b := range s.bonds() {
		o := b.Bond
		// tlb and alb need no fast path (Eligible says why); other modes
		// have none and get bond-mode-outside-guide.
		if !fastpath.Covers(o.Mode) {
			continue
		}
		v := bond.FastView{Name: b.Name, Mode: o.Mode, FailOverMac: o.FailOverMac, DownDelay: time.Duration(o.DownDelay) * time.Millisecond,
			On: s.Monitor.config().ForBond(b.Name).FastPath}
		ok, why := fastpath.Eligible(v)
		if ok || !v.On {
			continue
		}
		out = append(out, Finding{
			ID: "bond-fast-path-off", Severity: Info, Subject: bondSubject(b), Guide: guideLinkbeat,
			Summary: fmt.Sprintf("linkbeat's fast path stays off for %s: %s", b.Name, why),
			Why: "Without it, the frames the bond hands to a dead slave are lost until the bond has moved off it (a switch, or in 802.3ad and balance-xor " +
				"the transmit array's rebuild), which waits for RTNL (docs/fastpath.md).",
			Fix: fmt.Sprintf("If the setting is not needed: `ip link set %s type bond fail_over_mac none` (with the slaves released) or `downdelay 0`; "+
				"otherwise nothing to do.", b.Name),
		})
	}
	return out
}
