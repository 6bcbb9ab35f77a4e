package doctor

import (
	"fmt"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/linkbeat/linkbeat/internal/registry"
	"github.com/linkbeat/linkbeat/internal/routes"
)

// managed is internal/routes' rule for the routes linkbeat withdraws:
// unicast, any table but local, not an IPv6 link-local destination.
func managed(r *routes.Route) bool {
	if r.Table == unix.RT_TABLE_LOCAL || r.Type != unix.RTN_UNICAST {
		return false
	}
	return !(r.Family == unix.AF_INET6 && r.Dst.Addr().IsLinkLocalUnicast())
}

func family(r *routes.Route) string {
	if r.Family == unix.AF_INET6 {
		return "ipv6"
	}
	return "ipv4"
}

func (s *Snapshot) nexthop(id uint32) *routes.Nexthop {
	for _, n := range s.Nexthops {
		if n.ID == id {
			return n
		}
	}
	return nil
}

// hops are the route's nexthops, resolved through nexthop objects when
// the kernel did not list them (nexthop_compat_mode=0).
func (s *Snapshot) hops(r *routes.Route) []routes.Hop {
	if len(r.Hops) > 0 || r.NHID == 0 {
		return r.Hops
	}
	nh := s.nexthop(r.NHID)
	if nh == nil {
		return nil
	}
	if len(nh.Group) == 0 {
		return []routes.Hop{{Ifindex: nh.Ifindex, Gateway: nh.Gateway, Weight: 1}}
	}
	var out []routes.Hop
	for _, m := range nh.Group {
		if n := s.nexthop(m.ID); n != nil {
			out = append(out, routes.Hop{Ifindex: n.Ifindex, Gateway: n.Gateway, Weight: m.Weight})
		}
	}
	return out
}

func tableName(t uint32) string {
	switch t {
	case unix.RT_TABLE_MAIN:
		return "main"
	case unix.RT_TABLE_DEFAULT:
		return "default"
	}
	return fmt.Sprint(t)
}

func dstString(r *routes.Route) string {
	if r.Dst.Bits() == 0 {
		return "default"
	}
	return r.Dst.String()
}

func (s *Snapshot) hopString(h routes.Hop) string {
	if h.Gateway.IsValid() {
		return fmt.Sprintf("via %s dev %s", h.Gateway, s.name(h.Ifindex))
	}
	return "dev " + s.name(h.Ifindex)
}

// routeString is how `ip route` would name the route.
func (s *Snapshot) routeString(r *routes.Route) string {
	var hs []string
	for _, h := range s.hops(r) {
		hs = append(hs, s.hopString(h))
	}
	str := dstString(r)
	if r.Family == unix.AF_INET6 {
		str = "-6 " + str
	}
	if len(hs) > 0 {
		str += " " + strings.Join(hs, ", ")
	}
	if r.Table != unix.RT_TABLE_MAIN {
		str += " table " + tableName(r.Table)
	}
	if r.Priority != 0 {
		str += fmt.Sprintf(" metric %d", r.Priority)
	}
	return str
}

// ignoresLinkdown says whether the kernel skips fam's nexthops on link
// while it has no carrier. IPv4 ORs "all" with the device's value; IPv6
// reads the device's, which writing "all" sets on every device.
func (s *Snapshot) ignoresLinkdown(fam, link string) bool {
	m := s.IgnoreLinkdown[fam]
	if fam == "ipv4" {
		return m["all"] || m[link]
	}
	if v, ok := m[link]; ok {
		return v
	}
	return m["all"]
}

func sysctlFix(fam string) string {
	return fmt.Sprintf("`sysctl -w net.%s.conf.all.ignore_routes_with_linkdown=1 net.%s.conf.default.ignore_routes_with_linkdown=1`, "+
		"and the same two lines in /etc/sysctl.d/90-linkdown.conf so they hold from boot", fam, fam)
}

// withdraws says whether linkbeat run would withdraw l's routes.
func (s *Snapshot) withdraws(l registry.Link) bool {
	return s.monitored(l) && s.Monitor.config().For(l.Name).WithdrawRoutes
}

func checkMultipathLinkdown(s *Snapshot) []Finding {
	var out []Finding
	latent := map[string][]string{} // family -> links whose sysctl is 0
	latentRoutes := map[string]int{}
	for _, r := range s.Routes {
		if !managed(r) {
			continue
		}
		hops := s.hops(r)
		if len(hops) < 2 {
			continue
		}
		fam := family(r)
		var dead []routes.Hop
		var exposed []string // links of this route where the sysctl is 0
		deadWeight, total := 0, 0
		for _, h := range hops {
			total += max(h.Weight, 1)
			l, ok := s.link(h.Ifindex)
			if !ok || s.ignoresLinkdown(fam, l.Name) {
				continue
			}
			exposed = append(exposed, l.Name)
			if l.AdminUp && !l.Carrier {
				dead = append(dead, h)
				deadWeight += max(h.Weight, 1)
			}
		}
		if len(dead) == 0 {
			if len(exposed) > 0 {
				latentRoutes[fam]++
				for _, n := range exposed {
					if !slices.Contains(latent[fam], n) {
						latent[fam] = append(latent[fam], n)
					}
				}
			}
			continue
		}
		out = append(out, s.deadHopFinding(r, fam, dead, deadWeight, total))
	}
	for _, fam := range []string{"ipv4", "ipv6"} {
		if latentRoutes[fam] == 0 {
			continue
		}
		ls := latent[fam]
		slices.Sort(ls)
		out = append(out, Finding{
			ID: "multipath-linkdown-not-ignored", Severity: Info, Subject: fmt.Sprintf("net.%s.conf.*.ignore_routes_with_linkdown", fam), Guide: guideRoutes,
			Summary: fmt.Sprintf("%d multipath %s route(s) use links where ignore_routes_with_linkdown is 0 (%s)", latentRoutes[fam], fam, strings.Join(ls, ", ")),
			Why: "Their links have carrier now, but when one loses it the kernel keeps sending its share of the flows there; only linkbeat " +
				"(while it runs and monitors the link) withdraws the nexthop.",
			Fix: "As a second line of defence: " + sysctlFix(fam) + ".",
		})
	}
	return out
}

// deadHopFinding is the error for a multipath route that keeps nexthops
// whose links have no carrier: deadWeight of total flows (by weight) are
// lost.
func (s *Snapshot) deadHopFinding(r *routes.Route, fam string, dead []routes.Hop, deadWeight, total int) Finding {
	var deadDesc, links []string
	for _, h := range dead {
		deadDesc = append(deadDesc, s.hopString(h))
		if n := s.name(h.Ifindex); !slices.Contains(links, n) {
			links = append(links, n)
		}
	}
	var notes []string
	for _, n := range links {
		l, _ := s.linkByName(n)
		switch {
		case s.withdraws(l):
			notes = append(notes, fmt.Sprintf("linkbeat run would withdraw the nexthop on %s; that it is still here means linkbeat is not running in this network namespace", n))
		case !s.monitored(l):
			notes = append(notes, fmt.Sprintf("linkbeat run would not withdraw it: it does not monitor %s", n))
		default:
			notes = append(notes, fmt.Sprintf("linkbeat run would not withdraw it: the config keeps %s's routes (routes: keep)", n))
		}
	}
	return Finding{
		ID: "multipath-nexthop-linkdown", Severity: Error, Subject: s.routeString(r), Guide: guideRoutes,
		Summary: fmt.Sprintf("multipath route %s keeps nexthop %s, whose link has no carrier", dstString(r), strings.Join(deadDesc, ", ")),
		Why: fmt.Sprintf("With net.%s.conf.%s.ignore_routes_with_linkdown=0 the kernel only marks the nexthop \"linkdown\" and keeps hashing flows onto it: "+
			"%d/%d of the flows (by weight) go into a dead link and are lost until carrier returns. %s.",
			fam, strings.Join(links, "/"), deadWeight, total, strings.Join(notes, "; ")),
		Fix: fmt.Sprintf("Make the kernel skip nexthops without carrier: %s. And let linkbeat withdraw them "+
			"(monitor %s with routes: withdraw, the default).", sysctlFix(fam), strings.Join(links, ", ")),
	}
}

func checkUnmonitoredRoutes(s *Snapshot) []Finding {
	count := map[int]int{}
	examples := map[int][]string{}
	for _, r := range s.Routes {
		if !managed(r) {
			continue
		}
		seen := map[int]bool{}
		for _, h := range s.hops(r) {
			if h.Ifindex == 0 || seen[h.Ifindex] {
				continue
			}
			seen[h.Ifindex] = true
			count[h.Ifindex]++
			if len(examples[h.Ifindex]) < 3 {
				examples[h.Ifindex] = append(examples[h.Ifindex], dstString(r))
			}
		}
	}
	var out []Finding
	for _, l := range s.Links {
		n := count[l.Index]
		if n == 0 || l.Loopback {
			continue
		}
		desc := fmt.Sprintf("%d route(s): %s", n, strings.Join(examples[l.Index], ", "))
		if n > len(examples[l.Index]) {
			desc += ", ..."
		}
		switch {
		case !s.monitored(l):
			out = append(out, Finding{
				ID: "routes-not-monitored", Severity: Warning, Subject: l.Name, Guide: guideLinkbeat,
				Summary: fmt.Sprintf("%s carries %s, but linkbeat run would not monitor it", l.Name, desc),
				Why: fmt.Sprintf("When %s loses carrier nothing withdraws its routes: traffic keeps going into a dead link until the kernel "+
					"(ignore_routes_with_linkdown, multipath only) or someone else reacts, and no action script runs.", l.Name),
				Fix: fmt.Sprintf("Monitor it: add %s to --interfaces, or an `interfaces: {%s: {}}` entry to the config (or `monitor_all: true`); "+
					"listing its bond or bridge covers it as a port. If it is meant to be left alone, this is only a reminder.", l.Name, l.Name),
			})
		case !s.Monitor.config().For(l.Name).WithdrawRoutes:
			out = append(out, Finding{
				ID: "routes-kept", Severity: Info, Subject: l.Name, Guide: guideLinkbeat,
				Summary: fmt.Sprintf("%s carries %s, which the config keeps when it loses carrier (routes: keep)", l.Name, desc),
				Why:     "linkbeat watches the link and runs its script, but leaves its routes in place.",
				Fix:     fmt.Sprintf("If the routes should fail over, set interfaces.%s.routes: withdraw (the default).", l.Name),
			})
		}
	}
	for _, n := range s.Monitor.Daemon.Interfaces {
		if _, ok := s.linkByName(n); !ok {
			out = append(out, Finding{
				ID: "monitored-interface-missing", Severity: Info, Subject: n, Guide: guideLinkbeat,
				Summary: fmt.Sprintf("%s is to be monitored but does not exist", n),
				Why:     "linkbeat run picks it up when it appears; if the name is a typo, the interface meant is not monitored.",
				Fix:     "Check the name in --interfaces or the config's interfaces.",
			})
		}
	}
	return out
}
