package fastpath

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"

	"golang.org/x/sys/unix"

	"github.com/linkbeat/linkbeat/internal/netframe"
)

// Frames that tell the peers the bond's addresses now sit behind the
// replacement's port, as the bond's num_grat_arp and num_unsol_na would
// after a switch: a gratuitous ARP per IPv4 address and an unsolicited,
// overriding NA per IPv6 address, sent out of the replacement with
// AF_PACKET (no RTNL on the way).

var (
	broadcast = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	allNodes  = netip.MustParseAddr("ff02::1")
	allNodesM = net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}
)

const (
	ethPARP  = 0x0806
	ethPIPv6 = 0x86dd
)

// frame is one announcement and the link-layer address it goes to.
type frame struct {
	dst   net.HardwareAddr
	proto uint16
	data  []byte
}

// announcements builds the frames for a bond's MAC and addresses.
func announcements(mac net.HardwareAddr, addrs []netip.Addr) []frame {
	var out []frame
	for _, a := range addrs {
		switch {
		case a.Is4():
			out = append(out, frame{broadcast, ethPARP, garp(mac, a)})
		case a.Is6() && !a.Is4In6():
			out = append(out, frame{allNodesM, ethPIPv6, unsolicitedNA(mac, a)})
		}
	}
	return out
}

func ethHeader(dst, src net.HardwareAddr, proto uint16) []byte {
	b := make([]byte, 14)
	copy(b, dst)
	copy(b[6:], src)
	binary.BigEndian.PutUint16(b[12:], proto)
	return b
}

// garp is an ARP request for a with a as sender and target (RFC 5227's
// announcement).
func garp(mac net.HardwareAddr, a netip.Addr) []byte {
	b := ethHeader(broadcast, mac, ethPARP)
	ip := a.As4()
	arp := make([]byte, 28)
	binary.BigEndian.PutUint16(arp[0:], 1)      // Ethernet
	binary.BigEndian.PutUint16(arp[2:], 0x0800) // IPv4
	arp[4], arp[5] = 6, 4
	binary.BigEndian.PutUint16(arp[6:], 1) // request
	copy(arp[8:], mac)
	copy(arp[14:], ip[:])
	copy(arp[24:], ip[:])
	return append(b, arp...)
}

// unsolicitedNA is an NA for a to all nodes with the override flag and
// the target link-layer address option (RFC 4861 7.2.6).
func unsolicitedNA(mac net.HardwareAddr, a netip.Addr) []byte {
	icmp := make([]byte, 32)
	icmp[0] = 136                                    // neighbour advertisement
	binary.BigEndian.PutUint32(icmp[4:], 0x20000000) // override
	t := a.As16()
	copy(icmp[8:], t[:])
	icmp[24], icmp[25] = 2, 1 // target link-layer address, 8 bytes
	copy(icmp[26:], mac)
	dst := allNodes.As16()
	binary.BigEndian.PutUint16(icmp[2:], netframe.ICMPv6Checksum(t, dst, icmp))

	ip := make([]byte, 40)
	ip[0] = 0x60
	binary.BigEndian.PutUint16(ip[4:], uint16(len(icmp)))
	ip[6], ip[7] = 58, 255 // ICMPv6, hop limit 255
	copy(ip[8:], t[:])
	copy(ip[24:], dst[:])
	b := ethHeader(allNodesM, mac, ethPIPv6)
	return append(append(b, ip...), icmp...)
}

// sendFrames writes the frames out of one interface.
func sendFrames(ifindex int, frames []frame) error {
	if len(frames) == 0 {
		return nil
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("packet socket: %w", err)
	}
	defer unix.Close(fd)
	for _, f := range frames {
		sa := &unix.SockaddrLinklayer{Ifindex: ifindex, Protocol: htons(f.proto), Halen: 6}
		copy(sa.Addr[:], f.dst)
		if err := unix.Sendto(fd, f.data, 0, sa); err != nil {
			return fmt.Errorf("send announcement out of ifindex %d: %w", ifindex, err)
		}
	}
	return nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
