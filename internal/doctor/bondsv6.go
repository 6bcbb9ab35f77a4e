package doctor

import (
	"fmt"
	"net/netip"
	"strings"
)

// checkNSTargetIgnored: the bonding driver sends NS to ns_ip6_target from
// its ARP monitor, and only believes the NAs with arp_validate on; with
// none (or no ARP monitor at all) the targets change nothing.
func checkNSTargetIgnored(s *Snapshot) []Finding {
	var out []Finding
	for _, b := range s.bonds() {
		if len(b.Bond.NsIP6Targets) == 0 || (b.Bond.ArpInterval > 0 && b.Bond.ArpValidate != "none") {
			continue
		}
		targets := strings.Join(b.Bond.NsIP6Targets, ", ")
		f := Finding{
			ID: "bond-ns-target-ignored", Severity: Warning, Subject: bondSubject(b), Guide: guideActiveBackup,
			Fix: fmt.Sprintf("`ip link set %s type bond arp_interval 200 arp_validate all` (keep ns_ip6_target), and the same in the bond's "+
				"configuration (ifupdown: bond-arp-validate all). Or let linkbeat check the path: `bonds.%s.ns_targets: [%s]` in its config.",
				b.Name, b.Name, targets),
		}
		if b.Bond.ArpInterval == 0 {
			f.Summary = fmt.Sprintf("%s has ns_ip6_target %s but arp_interval=0: nothing probes them", b.Name, targets)
			f.Why = "The bonding driver sends its neighbour solicitations from the ARP monitor; with arp_interval=0 it never runs, " +
				"so the IPv6 targets are configuration only and a dead path behind a live carrier goes unseen."
		} else {
			f.Summary = fmt.Sprintf("%s has ns_ip6_target %s with arp_validate=none: the kernel ignores the targets' answers", b.Name, targets)
			f.Why = fmt.Sprintf("With arp_validate=none the ARP monitor never validates a neighbour advertisement: any frame a slave "+
				"receives counts as proof of life, so a slave whose path to %s is dead stays \"up\". The solicitations go out, "+
				"and their answers are not what keeps a slave up.", targets)
		}
		out = append(out, f)
	}
	return out
}

// checkIPv6PathCheck: a bond with IPv6 addresses and no IPv4 one is
// checked by carrier only, unless linkbeat's ns_targets or the driver's
// ns_ip6_target (with its ARP monitor) probe an IPv6 neighbour. ARP
// targets need an IPv4 neighbour on the segment, which such a bond
// rarely has.
func checkIPv6PathCheck(s *Snapshot) []Finding {
	var out []Finding
	for _, b := range s.bonds() {
		v4, v6 := addrFamilies(s.Addrs[b.Index])
		if v4 || !v6 {
			continue
		}
		set := s.Monitor.config().ForBond(b.Name)
		if len(set.NSTargets) > 0 || (b.Bond.ArpInterval > 0 && len(b.Bond.NsIP6Targets) > 0) {
			continue
		}
		why := fmt.Sprintf("%s has IPv6 addresses and no IPv4 one, and nothing probes an IPv6 neighbour through it: "+
			"neither linkbeat's ns_targets nor the bonding driver's ns_ip6_target. Carrier (miimon, linkbeat's carrier events) "+
			"cannot see a path that dies behind a live link: a switch port stuck, a VLAN gone upstream.", b.Name)
		if len(set.ARPTargets) > 0 || len(b.Bond.ArpIPTargets) > 0 {
			why += " Its ARP targets need an IPv4 neighbour on the segment, and the bond itself has no IPv4 address."
		}
		out = append(out, Finding{
			ID: "bond-ipv6-no-path-check", Severity: Warning, Subject: bondSubject(b), Guide: guideLinkbeat,
			Summary: fmt.Sprintf("%s is IPv6-only and has no path check", b.Name),
			Why:     why,
			Fix: fmt.Sprintf("Give linkbeat the IPv6 gateway (or another always-there neighbour) to probe through every slave: "+
				"`bonds.%s.ns_targets: [GATEWAY6]` in its config. Or the driver's own: `ip link set %s type bond "+
				"arp_interval 200 ns_ip6_target GATEWAY6 arp_validate all` (Linux 6.0+; it replaces miimon).", b.Name, b.Name),
		})
	}
	return out
}

func addrFamilies(as []netip.Addr) (v4, v6 bool) {
	for _, a := range as {
		if a.Is4() {
			v4 = true
		} else if !a.IsLinkLocalUnicast() {
			v6 = true
		}
	}
	return v4, v6
}
