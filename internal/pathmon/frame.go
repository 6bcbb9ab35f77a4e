package pathmon

import (
	"encoding/binary"
	"net"
	"net/netip"
)

const (
	ethPARP   = 0x0806
	ethPIPv4  = 0x0800
	frameSize = 14 + 28
)

// probeFrame is an RFC 5227 ARP probe for target, as a whole Ethernet
// frame: broadcast, from src; ARP request with sender hardware address src,
// sender IP 0.0.0.0 and target hardware address zero. A sender IP of zero
// makes the target answer without learning anything (Linux: arp_process
// replies to sha and skips its neighbour table), so the probes never
// rewrite a neighbour entry of the bond's address. The reply comes back
// to src, with tha = src.
func probeFrame(src net.HardwareAddr, target netip.Addr) []byte {
	f := make([]byte, frameSize)
	copy(f[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(f[6:12], src)
	binary.BigEndian.PutUint16(f[12:14], ethPARP)
	a := f[14:]
	binary.BigEndian.PutUint16(a[0:2], 1) // hrd: Ethernet
	binary.BigEndian.PutUint16(a[2:4], ethPIPv4)
	a[4], a[5] = 6, 4
	binary.BigEndian.PutUint16(a[6:8], 1) // op: request
	copy(a[8:14], src)
	// a[14:18] spa 0.0.0.0, a[18:24] tha zero.
	t := target.As4()
	copy(a[24:28], t[:])
	return f
}
