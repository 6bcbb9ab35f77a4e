package host

import (
	"path/filepath"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// The committed objects are built per architecture (gen/gen.go). The BPF
// instruction set is the same on every architecture, so this x86 host's
// verifier loads the arm64 objects too, and BPF_PROG_TEST_RUN runs their TC
// programs; only the kprobes, which read registers, differ.
var bpfArchs = []string{"x86", "arm64"}

func objectSpec(t *testing.T, name, arch string) *ebpf.CollectionSpec {
	t.Helper()
	path := filepath.Join("..", "..", "gen", name+"_"+arch+"_bpfel.o")
	spec, err := ebpf.LoadCollectionSpec(path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return spec
}

// TestArchObjectsRunTC loads each architecture's traffic and ARP objects
// into this kernel and runs the traffic ingress program on a frame: the
// counter of the test run's device (loopback, ifindex 1) must count it.
func TestArchObjectsRunTC(t *testing.T) {
	requireRoot(t)
	for _, arch := range bpfArchs {
		t.Run(arch, func(t *testing.T) {
			arp, err := ebpf.NewCollection(objectSpec(t, "arp", arch))
			if err != nil {
				t.Fatalf("load arp: %v", err)
			}
			arp.Close()
			coll, err := ebpf.NewCollection(objectSpec(t, "traffic", arch))
			if err != nil {
				t.Fatalf("load traffic: %v", err)
			}
			defer coll.Close()
			stats := coll.Maps["if_stats"]
			zero := make([]counters, ebpf.MustPossibleCPU())
			if err := stats.Put(uint32(1), zero); err != nil {
				t.Fatal(err)
			}
			frame := make([]byte, 60)
			copy(frame[12:], []byte{0x08, 0x00})
			ret, err := coll.Programs["tc_ingress"].Run(&ebpf.RunOptions{Data: frame})
			if err != nil {
				t.Fatalf("test run: %v", err)
			}
			if int32(ret) != -1 {
				t.Errorf("tc_ingress returned %d, want -1 (TC_NEXT: never change the verdict)", int32(ret))
			}
			var got []counters
			if err := stats.Lookup(uint32(1), &got); err != nil {
				t.Fatal(err)
			}
			var pkts, byts uint64
			for _, c := range got {
				pkts += c.RxPackets
				byts += c.RxBytes
			}
			if pkts != 1 || byts != uint64(len(frame)) {
				t.Errorf("counted %d packets, %d bytes; want 1, %d", pkts, byts, len(frame))
			}
		})
	}
}

// counters mirrors struct if_counters (bpf/linkbeat.h); both objects share it.
type counters struct {
	RxPackets, RxBytes, RxLastNs, TxPackets, TxBytes, TxLastNs, TxErrors, TxTimeouts uint64
}

// TestArchKprobeReadsFirstArgument checks, per architecture, that the kprobe
// programs take netif_carrier_*'s argument from that architecture's first
// argument register: pt_regs.di (offset 112) on x86-64, regs[0] (offset 0)
// on arm64. An object built for the wrong target reads another register.
// The host has no kprobes, so this reads the instructions instead.
func TestArchKprobeReadsFirstArgument(t *testing.T) {
	want := map[string]int16{"x86": 112, "arm64": 0}
	for _, arch := range bpfArchs {
		spec := objectSpec(t, "carrier", arch)
		for _, name := range []string{"kprobe_carrier_on", "kprobe_carrier_off"} {
			p := spec.Programs[name]
			if p == nil {
				t.Fatalf("%s: no program %s", arch, name)
			}
			off, ok := firstContextLoad(p.Instructions)
			if !ok {
				t.Fatalf("%s %s: no load from the context register\n%v", arch, name, p.Instructions)
			}
			if off != want[arch] {
				t.Errorf("%s %s reads the context at offset %d, want %d", arch, name, off, want[arch])
			}
		}
	}
}

// firstContextLoad is the offset of the first 64-bit load from R1 (the
// context) before R1 is overwritten.
func firstContextLoad(insns asm.Instructions) (int16, bool) {
	for _, ins := range insns {
		if ins.OpCode.Class().IsLoad() && ins.Src == asm.R1 && ins.OpCode.Size() == asm.DWord {
			return ins.Offset, true
		}
		if ins.Dst == asm.R1 && !ins.OpCode.Class().IsStore() {
			return 0, false
		}
	}
	return 0, false
}
