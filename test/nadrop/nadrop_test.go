package nadrop

import (
	"net"
	"os"
	"testing"

	"github.com/cilium/ebpf"
)

// TestProgram runs the drop on an NA to the MAC (dropped), an NA to another
// MAC and an NS to the MAC (passed). Needs root.
func TestProgram(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to load BPF")
	}
	mac := net.HardwareAddr{0x02, 1, 2, 3, 4, 5}
	prog, err := Program(mac)
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
		ret, err := prog.Run(&ebpf.RunOptions{Data: c.frame})
		if err != nil {
			t.Fatal(err)
		}
		if int32(ret) != c.want {
			t.Errorf("%s: returned %d, want %d", c.name, int32(ret), c.want)
		}
	}
}
