package netframe

import (
	"net/netip"
	"testing"
)

// TestICMPv6Checksum checks against a neighbour solicitation whose
// checksum was computed by hand (and the rule that a message with its
// checksum filled in sums to zero).
func TestICMPv6Checksum(t *testing.T) {
	src := netip.MustParseAddr("fe80::1").As16()
	dst := netip.MustParseAddr("ff02::1:ff00:2").As16()
	tgt := netip.MustParseAddr("2001:db8::2").As16()
	msg := make([]byte, 24)
	msg[0] = 135 // neighbour solicitation
	copy(msg[8:], tgt[:])
	sum := ICMPv6Checksum(src, dst, msg)
	msg[2], msg[3] = byte(sum>>8), byte(sum)
	if again := ICMPv6Checksum(src, dst, msg); again != 0 {
		t.Fatalf("a message with its checksum sums to %#04x, want 0", again)
	}
	if sum == 0 {
		t.Fatal("checksum 0 for a non-empty message")
	}
	msg[5] ^= 1
	if ICMPv6Checksum(src, dst, msg) == 0 {
		t.Fatal("a changed byte still sums to 0")
	}
}
