package pathmon

import (
	"encoding/binary"
	"net"
	"net/netip"

	"github.com/linkbeat/linkbeat/internal/netframe"
)

const (
	ethPIPv6    = 0x86dd
	nsFrameSize = 14 + 40 + 24 + 8 // Ethernet, IPv6, NS, source link-layer option
)

// probeSource is the IPv6 source of a slave's neighbour solicitations:
// the link-local address made from mac by modified EUI-64 (RFC 4291
// appendix A).
//
// Why not the unspecified address (::), as a DAD probe, which would be
// the twin of the ARP probe's 0.0.0.0: RFC 4861 7.2.4 makes the target
// answer a solicitation from :: with an unsolicited NA (S=0) to all-nodes
// (ff02::1, 33:33:00:00:00:01). That NA names no slave, floods to every
// port, and a backup slave of an active-backup bond may never see it: the
// bond syncs its multicast list (all-nodes among it) to the active slave
// only, and a NIC with a multicast filter drops the rest. The bonding
// driver would also count it for its own ns_ip6_target monitor
// (bond_validate_na accepts all-nodes), so linkbeat's probes would keep
// the kernel's verdict alive.
//
// From this link-local address, with mac as source link-layer option, the
// target answers with a solicited NA (S=1) unicast to mac (Linux:
// ndisc_recv_ns records the option as the neighbour's address). mac is
// private to the slave (chooseMAC) and in its unicast filter, so only
// this slave receives the answer, backup or not; the bonding driver
// ignores it (the destination is no address of the bond). The target
// keeps a stale neighbour entry for this address, never one for the
// bond's: mac is never the bond's MAC, so neither is this address.
func probeSource(mac net.HardwareAddr) netip.Addr {
	var a [16]byte
	a[0], a[1] = 0xfe, 0x80
	a[8], a[9], a[10] = mac[0]^0x02, mac[1], mac[2]
	a[11], a[12] = 0xff, 0xfe
	a[13], a[14], a[15] = mac[3], mac[4], mac[5]
	return netip.AddrFrom16(a)
}

// solicitedNode is target's solicited-node multicast group (RFC 4291
// 2.7.1), which the target has joined for it.
func solicitedNode(target netip.Addr) netip.Addr {
	t := target.As16()
	return netip.AddrFrom16([16]byte{0xff, 0x02, 11: 0x01, 12: 0xff, 13: t[13], 14: t[14], 15: t[15]})
}

// nsFrame is a neighbour solicitation for target as a whole Ethernet
// frame: from src and probeSource(src), to target's solicited-node group,
// hop limit 255, with src as source link-layer option (see probeSource).
func nsFrame(src net.HardwareAddr, target netip.Addr) []byte {
	f := make([]byte, nsFrameSize)
	dst, saddr, t := solicitedNode(target).As16(), probeSource(src).As16(), target.As16()
	copy(f[0:6], []byte{0x33, 0x33, dst[12], dst[13], dst[14], dst[15]})
	copy(f[6:12], src)
	binary.BigEndian.PutUint16(f[12:14], ethPIPv6)
	ip := f[14:54]
	ip[0] = 0x60
	binary.BigEndian.PutUint16(ip[4:6], 32) // payload: NS + option
	ip[6], ip[7] = 58, 255                  // ICMPv6, hop limit
	copy(ip[8:24], saddr[:])
	copy(ip[24:40], dst[:])
	ns := f[54:]
	ns[0] = 135 // neighbour solicitation; code, checksum, reserved zero
	copy(ns[8:24], t[:])
	ns[24], ns[25] = 1, 1 // source link-layer address, 8 bytes
	copy(ns[26:32], src)
	binary.BigEndian.PutUint16(ns[2:4], netframe.ICMPv6Checksum(saddr, dst, ns))
	return f
}
