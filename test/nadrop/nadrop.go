// Package nadrop is a test tool shared by the host and VM tests, the IPv6
// twin of arpdrop: a TC program for a target's egress that drops the
// neighbour advertisements it sends to one MAC, so the NS probes from that
// MAC go unanswered while the carrier, and every other frame, pass.
package nadrop

import (
	"encoding/binary"
	"fmt"
	"net"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"
)

// Program loads a TC program (tcx or cls_bpf direct-action) that drops
// untagged ICMPv6 neighbour advertisements (type 136, no extension
// header) whose Ethernet destination is dst, and passes the rest.
func Program(dst net.HardwareAddr) (*ebpf.Program, error) {
	if len(dst) != 6 {
		return nil, fmt.Errorf("drop NA to %v: not an Ethernet address", dst)
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "lbtest_drop_na", Type: ebpf.SchedCLS, License: "GPL",
		Instructions: asm.Instructions{
			// skb->protocol holds the EtherType in network order.
			asm.LoadMem(asm.R2, asm.R1, 16, asm.Word),
			asm.JNE.Imm32(asm.R2, int32(htons(unix.ETH_P_IPV6)), "pass"),
			// bpf_skb_load_bytes(skb, 0, fp-8, 6): the destination.
			asm.Mov.Reg(asm.R6, asm.R1),
			asm.Mov.Imm(asm.R2, 0),
			asm.Mov.Reg(asm.R3, asm.RFP),
			asm.Add.Imm(asm.R3, -8),
			asm.Mov.Imm(asm.R4, 6),
			asm.FnSkbLoadBytes.Call(),
			asm.JNE.Imm(asm.R0, 0, "pass"),
			asm.LoadMem(asm.R2, asm.RFP, -8, asm.Word),
			asm.JNE.Imm32(asm.R2, int32(binary.LittleEndian.Uint32(dst[0:4])), "pass"),
			asm.LoadMem(asm.R2, asm.RFP, -4, asm.Half),
			asm.JNE.Imm32(asm.R2, int32(binary.LittleEndian.Uint16(dst[4:6])), "pass"),
			// bpf_skb_load_bytes(skb, 14+6, fp-16, 1): next header.
			asm.Mov.Reg(asm.R1, asm.R6),
			asm.Mov.Imm(asm.R2, 14+6),
			asm.Mov.Reg(asm.R3, asm.RFP),
			asm.Add.Imm(asm.R3, -16),
			asm.Mov.Imm(asm.R4, 1),
			asm.FnSkbLoadBytes.Call(),
			asm.JNE.Imm(asm.R0, 0, "pass"),
			asm.LoadMem(asm.R2, asm.RFP, -16, asm.Byte),
			asm.JNE.Imm(asm.R2, unix.IPPROTO_ICMPV6, "pass"),
			// bpf_skb_load_bytes(skb, 14+40, fp-16, 1): ICMPv6 type.
			asm.Mov.Reg(asm.R1, asm.R6),
			asm.Mov.Imm(asm.R2, 14+40),
			asm.Mov.Reg(asm.R3, asm.RFP),
			asm.Add.Imm(asm.R3, -16),
			asm.Mov.Imm(asm.R4, 1),
			asm.FnSkbLoadBytes.Call(),
			asm.JNE.Imm(asm.R0, 0, "pass"),
			asm.LoadMem(asm.R2, asm.RFP, -16, asm.Byte),
			asm.JNE.Imm(asm.R2, 136, "pass"),
			asm.Mov.Imm(asm.R0, 2), // TC_ACT_SHOT, TCX_DROP
			asm.Return(),
			asm.Mov.Imm(asm.R0, -1).WithSymbol("pass"), // TC_ACT_UNSPEC, TCX_NEXT
			asm.Return(),
		},
	})
	if err != nil {
		return nil, fmt.Errorf("load the NA drop program: %w", err)
	}
	return prog, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
