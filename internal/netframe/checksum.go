// Package netframe holds what linkbeat's hand-built frames share: the
// path monitor's neighbour solicitations and the fast path's unsolicited
// neighbour advertisements.
package netframe

import "encoding/binary"

// ICMPv6Checksum is RFC 4443 2.3's: over the pseudo-header (RFC 8200 8.1)
// and the message, whose checksum field must be zero.
func ICMPv6Checksum(src, dst [16]byte, msg []byte) uint16 {
	var sum uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(binary.BigEndian.Uint16(b[i:]))
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	add(src[:])
	add(dst[:])
	var pseudo [8]byte
	binary.BigEndian.PutUint32(pseudo[0:4], uint32(len(msg)))
	pseudo[7] = 58 // next header: ICMPv6
	add(pseudo[:])
	add(msg)
	for sum>>16 != 0 {
		sum = (sum & 0xffff) + sum>>16
	}
	return ^uint16(sum)
}
