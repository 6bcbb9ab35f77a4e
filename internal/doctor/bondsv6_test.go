package doctor

import (
	"net/netip"
	"testing"

	"github.com/linkbeat/linkbeat/internal/registry"
)

func nsMon(validate string) func(*registry.Bond) {
	return func(b *registry.Bond) {
		b.Miimon, b.ArpInterval, b.ArpValidate, b.NsIP6Targets = 0, 200, validate, []string{"2001:db8::1"}
	}
}

func TestNSTargetIgnored(t *testing.T) {
	t.Run("arp_validate none", func(t *testing.T) {
		f := only(t, checkNSTargetIgnored, abBond("active-backup", nsMon("none")), "bond-ns-target-ignored")[0]
		if f.Severity != Warning {
			t.Errorf("severity %s, want warning", f.Severity)
		}
		mustContain(t, "summary", f.Summary, "ns_ip6_target 2001:db8::1", "arp_validate=none", "ignores")
		mustContain(t, "fix", f.Fix, "ip link set bond0 type bond arp_interval 200 arp_validate all", "bonds.bond0.ns_targets: [2001:db8::1]")
	})
	t.Run("no ARP monitor", func(t *testing.T) {
		f := only(t, checkNSTargetIgnored, abBond("active-backup", func(b *registry.Bond) { nsMon("all")(b); b.ArpInterval, b.Miimon = 0, 100 }),
			"bond-ns-target-ignored")[0]
		mustContain(t, "summary", f.Summary, "arp_interval=0")
	})
	for _, v := range []string{"all", "active", "backup", "filter"} {
		t.Run("arp_validate "+v, func(t *testing.T) {
			only(t, checkNSTargetIgnored, abBond("active-backup", nsMon(v)))
		})
	}
	t.Run("no ns_ip6_target", func(t *testing.T) {
		only(t, checkNSTargetIgnored, abBond("active-backup", arpMon))
	})
}

func withAddrs(s *Snapshot, idx int, addrs ...string) *Snapshot {
	if s.Addrs == nil {
		s.Addrs = map[int][]netip.Addr{}
	}
	for _, a := range addrs {
		s.Addrs[idx] = append(s.Addrs[idx], netip.MustParseAddr(a))
	}
	return s
}

func TestIPv6PathCheck(t *testing.T) {
	t.Run("IPv6 only, carrier only", func(t *testing.T) {
		f := only(t, checkIPv6PathCheck, withAddrs(abBond("active-backup", nil), 10, "2001:db8::10"), "bond-ipv6-no-path-check")[0]
		if f.Severity != Warning {
			t.Errorf("severity %s, want warning", f.Severity)
		}
		mustContain(t, "summary", f.Summary, "bond0 is IPv6-only")
		mustContain(t, "fix", f.Fix, "bonds.bond0.ns_targets", "ns_ip6_target GATEWAY6 arp_validate all")
	})
	t.Run("IPv6 only, ARP targets in linkbeat", func(t *testing.T) {
		s := withConfig(withAddrs(abBond("active-backup", nil), 10, "2001:db8::10"), "bonds:\n  bond0:\n    arp_targets: [192.0.2.1]\n")
		f := only(t, checkIPv6PathCheck, s, "bond-ipv6-no-path-check")[0]
		mustContain(t, "why", f.Why, "need an IPv4 neighbour")
	})
	t.Run("linkbeat ns_targets", func(t *testing.T) {
		s := withConfig(withAddrs(abBond("active-backup", nil), 10, "2001:db8::10"), "bonds:\n  bond0:\n    ns_targets: [2001:db8::1]\n")
		only(t, checkIPv6PathCheck, s)
	})
	t.Run("the driver's ns_ip6_target", func(t *testing.T) {
		only(t, checkIPv6PathCheck, withAddrs(abBond("active-backup", nsMon("all")), 10, "2001:db8::10"))
	})
	t.Run("ns_ip6_target without the ARP monitor", func(t *testing.T) {
		s := withAddrs(abBond("active-backup", func(b *registry.Bond) { b.NsIP6Targets = []string{"2001:db8::1"} }), 10, "2001:db8::10")
		only(t, checkIPv6PathCheck, s, "bond-ipv6-no-path-check")
	})
	t.Run("dual stack", func(t *testing.T) {
		only(t, checkIPv6PathCheck, withAddrs(abBond("active-backup", nil), 10, "2001:db8::10", "192.0.2.10"))
	})
	t.Run("IPv4 only", func(t *testing.T) {
		only(t, checkIPv6PathCheck, withAddrs(abBond("active-backup", nil), 10, "192.0.2.10"))
	})
	t.Run("no addresses", func(t *testing.T) {
		only(t, checkIPv6PathCheck, abBond("active-backup", nil))
	})
	t.Run("an address on a slave is not the bond's", func(t *testing.T) {
		only(t, checkIPv6PathCheck, withAddrs(abBond("active-backup", nil), 2, "2001:db8::10"))
	})
}
