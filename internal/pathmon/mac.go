package pathmon

import (
	"bytes"
	"errors"
	"hash/fnv"
	"net"
)

// macInput is what choosing a slave's probe address needs to know.
type macInput struct {
	// Current is the slave's address now.
	Current net.HardwareAddr
	// Perm is the slave's own address: the bond's perm_hwaddr for it (its
	// address when it was enslaved), else IFLA_PERM_ADDRESS; nil if
	// neither is known.
	Perm net.HardwareAddr
	// Bond is the bond's address; nil when the slave is in no bond.
	Bond net.HardwareAddr
	// Mode is the bond's mode ("active-backup", "balance-alb", ...).
	Mode string
	// FailOverMAC is the bond's fail_over_mac: "none", "active" or
	// "follow" (anything else is treated as "follow"). The bonding driver
	// applies it in active-backup only.
	FailOverMAC string
}

// macChoice is the address a slave probes from.
type macChoice struct {
	MAC net.HardwareAddr
	// Filter says the slave's unicast filter must accept MAC, because the
	// slave's own address is another one.
	Filter bool
	// Source says where MAC came from: "current", "permanent", "derived"
	// or "configured".
	Source string
}

// chooseMAC picks the Ethernet source and ARP sender address of a slave's
// probes. The target answers to it, so the switch must deliver that
// address to this slave and to no other port: it must be an address that
// no other port of the host sends from, or the probes move the switch's
// FDB entry away from where that address's traffic belongs. In particular
// a backup must never probe from the bond's address.
//
//   - No bond: the slave's current address.
//   - active-backup, fail_over_mac=active: every slave keeps its own
//     address (the bond copies the active one's), so the current one.
//   - fail_over_mac=none (and the other modes but tlb and alb): every
//     slave carries the bond's address; its permanent address is its own,
//     unless the bond took it (the first slave's, typically), then a
//     derived one.
//   - active-backup with fail_over_mac=follow, balance-tlb, balance-alb:
//     the bonding driver moves addresses between slaves on failover, so no
//     hardware address is safe: a derived one.
//
// A derived address is locally administered and fixed per slave (a hash of
// its permanent or current address), so restarts reuse it.
func chooseMAC(in macInput) (macChoice, error) {
	if !usable(in.Current) {
		return macChoice{}, errors.New("the slave has no Ethernet address")
	}
	if in.Bond == nil {
		return macChoice{MAC: in.Current, Source: "current"}, nil
	}
	policy := "none"
	switch in.Mode {
	case "balance-tlb", "balance-alb":
		policy = "swaps"
	case "active-backup", "":
		policy = in.FailOverMAC
	}
	switch policy {
	case "active":
		return macChoice{MAC: in.Current, Source: "current"}, nil
	case "none":
		if usable(in.Perm) && !bytes.Equal(in.Perm, in.Bond) {
			return macChoice{MAC: in.Perm, Filter: !bytes.Equal(in.Perm, in.Current), Source: "permanent"}, nil
		}
	}
	base := in.Perm
	if !usable(base) {
		base = in.Current
	}
	mac := derivedMAC(base)
	return macChoice{MAC: mac, Filter: !bytes.Equal(mac, in.Current), Source: "derived"}, nil
}

// usable is a 6-byte unicast address other than zero.
func usable(mac net.HardwareAddr) bool {
	return len(mac) == 6 && mac[0]&1 == 0 && !bytes.Equal(mac, make(net.HardwareAddr, 6))
}

// derivedMAC is a locally administered unicast address made from base.
func derivedMAC(base net.HardwareAddr) net.HardwareAddr {
	h := fnv.New64a()
	h.Write([]byte("linkbeat path probe "))
	h.Write(base)
	sum := h.Sum(nil)
	mac := net.HardwareAddr(sum[:6])
	mac[0] = mac[0]&^0x01 | 0x02
	if bytes.Equal(mac, base) {
		mac[5] ^= 0x01
	}
	return mac
}
