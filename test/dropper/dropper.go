// Package dropper holds test tools shared by the host and VM tests: TC
// programs (tcx or cls_bpf direct-action) that drop one host's answers to
// path probes while its carrier, and every other frame, pass. ARPFrom kills
// the ARP path, NATo the IPv6 one.
package dropper

import (
	"encoding/binary"
	"fmt"
	"net"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"
)

// ARPFrom drops ARP frames whose sender hardware address is sha.
func ARPFrom(sha net.HardwareAddr) (*ebpf.Program, error) {
	if len(sha) != 6 {
		return nil, fmt.Errorf("drop ARP from %v: not an Ethernet address", sha)
	}
	insns := ethertype(unix.ETH_P_ARP)
	insns = append(insns, loadBytes(14+8, -8, 6)...) // the ARP sha
	insns = append(insns, macAt(-8, sha)...)
	return load("lbtest_drop_arp", "ARP", insns)
}

// NATo drops untagged ICMPv6 neighbour advertisements (type 136, no
// extension header) whose Ethernet destination is dst.
func NATo(dst net.HardwareAddr) (*ebpf.Program, error) {
	if len(dst) != 6 {
		return nil, fmt.Errorf("drop NA to %v: not an Ethernet address", dst)
	}
	insns := ethertype(unix.ETH_P_IPV6)
	insns = append(insns, loadBytes(0, -8, 6)...) // the destination
	insns = append(insns, macAt(-8, dst)...)
	insns = append(insns, loadBytes(14+6, -16, 1)...) // next header
	insns = append(insns, byteAt(-16, unix.IPPROTO_ICMPV6)...)
	insns = append(insns, loadBytes(14+40, -16, 1)...) // ICMPv6 type
	insns = append(insns, byteAt(-16, 136)...)
	return load("lbtest_drop_na", "NA", insns)
}

// ethertype passes frames of another EtherType (skb->protocol, in network
// order) and keeps the context in R6 for the loads that follow.
func ethertype(proto uint16) asm.Instructions {
	return asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.LoadMem(asm.R2, asm.R1, 16, asm.Word),
		asm.JNE.Imm32(asm.R2, int32(proto<<8|proto>>8), "pass"),
	}
}

// loadBytes is bpf_skb_load_bytes(skb, off, fp+at, n); a short frame passes.
func loadBytes(off, at, n int32) asm.Instructions {
	return asm.Instructions{
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.Mov.Imm(asm.R2, off),
		asm.Mov.Reg(asm.R3, asm.RFP),
		asm.Add.Imm(asm.R3, at),
		asm.Mov.Imm(asm.R4, n),
		asm.FnSkbLoadBytes.Call(),
		asm.JNE.Imm(asm.R0, 0, "pass"),
	}
}

// macAt passes unless the 6 bytes at fp+at are mac.
func macAt(at int16, mac net.HardwareAddr) asm.Instructions {
	return asm.Instructions{
		asm.LoadMem(asm.R2, asm.RFP, at, asm.Word),
		asm.JNE.Imm32(asm.R2, int32(binary.LittleEndian.Uint32(mac[0:4])), "pass"),
		asm.LoadMem(asm.R2, asm.RFP, at+4, asm.Half),
		asm.JNE.Imm32(asm.R2, int32(binary.LittleEndian.Uint16(mac[4:6])), "pass"),
	}
}

// byteAt passes unless the byte at fp+at is v.
func byteAt(at int16, v int32) asm.Instructions {
	return asm.Instructions{
		asm.LoadMem(asm.R2, asm.RFP, at, asm.Byte),
		asm.JNE.Imm(asm.R2, v, "pass"),
	}
}

func load(name, what string, match asm.Instructions) (*ebpf.Program, error) {
	insns := append(match,
		asm.Mov.Imm(asm.R0, 2), // TC_ACT_SHOT, TCX_DROP
		asm.Return(),
		asm.Mov.Imm(asm.R0, -1).WithSymbol("pass"), // TC_ACT_UNSPEC, TCX_NEXT
		asm.Return(),
	)
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: name, Type: ebpf.SchedCLS, License: "GPL", Instructions: insns})
	if err != nil {
		return nil, fmt.Errorf("load the %s drop program: %w", what, err)
	}
	return prog, nil
}
