package pathmon

import (
	"bytes"
	"net"
	"net/netip"
	"testing"

	"github.com/linkbeat/linkbeat/internal/netframe"
)

// TestNSFrame checks the solicitation byte by byte where RFC 4861 says
// what the target checks: the solicited-node destination (IPv6 and
// Ethernet), hop limit 255, the link-local source made from the probe MAC,
// the source link-layer option, and a checksum that verifies.
func TestNSFrame(t *testing.T) {
	mac := net.HardwareAddr{0x02, 0x11, 0x22, 0x33, 0x44, 0x55}
	target := netip.MustParseAddr("2001:db8::aa:bbcc")
	f := nsFrame(mac, target)
	if len(f) != 86 {
		t.Fatalf("frame is %d bytes, want 86", len(f))
	}
	if want := []byte{0x33, 0x33, 0xff, 0xaa, 0xbb, 0xcc}; !bytes.Equal(f[0:6], want) {
		t.Errorf("Ethernet destination % x, want % x", f[0:6], want)
	}
	if !bytes.Equal(f[6:12], mac) || f[12] != 0x86 || f[13] != 0xdd {
		t.Errorf("Ethernet source or type: % x", f[6:14])
	}
	ip := f[14:54]
	if ip[0]>>4 != 6 || ip[6] != 58 || ip[7] != 255 || ip[4] != 0 || ip[5] != 32 {
		t.Errorf("IPv6 header % x", ip[:8])
	}
	src, _ := netip.AddrFromSlice(ip[8:24])
	if src.String() != "fe80::11:22ff:fe33:4455" {
		t.Errorf("source %s, want fe80::11:22ff:fe33:4455 (modified EUI-64 of %s)", src, mac)
	}
	dst, _ := netip.AddrFromSlice(ip[24:40])
	if dst.String() != "ff02::1:ffaa:bbcc" {
		t.Errorf("destination %s, want the solicited-node group ff02::1:ffaa:bbcc", dst)
	}
	ns := f[54:]
	if ns[0] != 135 || ns[1] != 0 {
		t.Errorf("ICMPv6 type %d code %d, want 135 0", ns[0], ns[1])
	}
	if got, _ := netip.AddrFromSlice(ns[8:24]); got != target {
		t.Errorf("NS target %s, want %s", got, target)
	}
	if ns[24] != 1 || ns[25] != 1 || !bytes.Equal(ns[26:32], mac) {
		t.Errorf("source link-layer option % x", ns[24:32])
	}
	// A correct checksum makes the sum over everything, itself included, 0.
	if c := netframe.ICMPv6Checksum(src.As16(), dst.As16(), ns); c != 0 {
		t.Errorf("checksum does not verify: residue %#04x", c)
	}
}

// TestICMPv6Checksum against a value worked out by hand: an all-zero
// pseudo-header and the message 0x8000 0x0000 sum to 0x8000 + 4 (length) + 58 (next header).
func TestICMPv6Checksum(t *testing.T) {
	var zero [16]byte
	if c := netframe.ICMPv6Checksum(zero, zero, []byte{0x80, 0, 0, 0}); c != ^uint16(0x8000+4+58) {
		t.Errorf("checksum %#04x, want %#04x", c, ^uint16(0x8000+4+58))
	}
}
