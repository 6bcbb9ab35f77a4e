// Package arpdrop is a test tool shared by the host and VM tests: a TC
// program that drops the ARP frames one host sends, so that host's ARP
// probes go unanswered while its carrier, and every other frame, pass.
package arpdrop

import (
	"encoding/binary"
	"fmt"
	"net"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"
)

// Program loads a TC program (tcx or cls_bpf direct-action) that drops
// ARP frames whose sender hardware address is sha and passes the rest.
func Program(sha net.HardwareAddr) (*ebpf.Program, error) {
	if len(sha) != 6 {
		return nil, fmt.Errorf("drop ARP from %v: not an Ethernet address", sha)
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "lbtest_drop_arp", Type: ebpf.SchedCLS, License: "GPL",
		Instructions: asm.Instructions{
			// skb->protocol holds the EtherType in network order.
			asm.LoadMem(asm.R2, asm.R1, 16, asm.Word),
			asm.JNE.Imm32(asm.R2, int32(htons(unix.ETH_P_ARP)), "pass"),
			// bpf_skb_load_bytes(skb, 14 + 8, fp-8, 6): the ARP sha.
			asm.Mov.Imm(asm.R2, 14+8),
			asm.Mov.Reg(asm.R3, asm.RFP),
			asm.Add.Imm(asm.R3, -8),
			asm.Mov.Imm(asm.R4, 6),
			asm.FnSkbLoadBytes.Call(),
			asm.JNE.Imm(asm.R0, 0, "pass"),
			asm.LoadMem(asm.R2, asm.RFP, -8, asm.Word),
			asm.JNE.Imm32(asm.R2, int32(binary.LittleEndian.Uint32(sha[0:4])), "pass"),
			asm.LoadMem(asm.R2, asm.RFP, -4, asm.Half),
			asm.JNE.Imm32(asm.R2, int32(binary.LittleEndian.Uint16(sha[4:6])), "pass"),
			asm.Mov.Imm(asm.R0, 2), // TC_ACT_SHOT, TCX_DROP
			asm.Return(),
			asm.Mov.Imm(asm.R0, -1).WithSymbol("pass"), // TC_ACT_UNSPEC, TCX_NEXT
			asm.Return(),
		},
	})
	if err != nil {
		return nil, fmt.Errorf("load the ARP drop program: %w", err)
	}
	return prog, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
