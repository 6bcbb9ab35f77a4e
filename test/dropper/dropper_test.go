package dropper

import (
	"net"
	"os"
	"testing"

	"github.com/cilium/ebpf"
)

func run(t *testing.T, prog *ebpf.Program, frame []byte) int32 {
	t.Helper()
	ret, err := prog.Run(&ebpf.RunOptions{Data: frame})
	if err != nil {
		t.Fatal(err)
	}
	return int32(ret)
}

func requireRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to load BPF")
	}
}

// TestNATo runs the drop on an NA to the MAC (dropped), an NA to another
// MAC and an NS to the MAC (passed).
func TestNATo(t *testing.T) {
	requireRoot(t)
	mac := net.HardwareAddr{0x02, 1, 2, 3, 4, 5}
	prog, err := NATo(mac)
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	frame := func(dst net.HardwareAddr, icmpType byte) []byte {
		f := make([]byte, 14+40+32)
		copy(f, dst)
		f[12], f[13], f[14], f[20], f[21], f[54] = 0x86, 0xdd, 0x60, 58, 255, icmpType
		return f
	}
	for _, c := range []struct {
		name  string
		frame []byte
		want  int32
	}{
		{"NA to the MAC", frame(mac, 136), 2},
		{"NA to another MAC", frame(net.HardwareAddr{0x02, 1, 2, 3, 4, 6}, 136), -1},
		{"NS to the MAC", frame(mac, 135), -1},
	} {
		if got := run(t, prog, c.frame); got != c.want {
			t.Errorf("%s: returned %d, want %d", c.name, got, c.want)
		}
	}
}

// TestARPFrom runs the drop on ARP from the MAC (dropped), ARP from another
// MAC and IPv4 from the MAC (passed).
func TestARPFrom(t *testing.T) {
	requireRoot(t)
	mac := net.HardwareAddr{0x02, 1, 2, 3, 4, 5}
	prog, err := ARPFrom(mac)
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	frame := func(sha net.HardwareAddr, ethertype uint16) []byte {
		f := make([]byte, 14+28)
		f[12], f[13] = byte(ethertype>>8), byte(ethertype)
		copy(f[14+8:], sha)
		return f
	}
	for _, c := range []struct {
		name  string
		frame []byte
		want  int32
	}{
		{"ARP from the MAC", frame(mac, 0x0806), 2},
		{"ARP from another MAC", frame(net.HardwareAddr{0x02, 1, 2, 3, 4, 6}, 0x0806), -1},
		{"IPv4 with the MAC at the same place", frame(mac, 0x0800), -1},
	} {
		if got := run(t, prog, c.frame); got != c.want {
			t.Errorf("%s: returned %d, want %d", c.name, got, c.want)
		}
	}
}
