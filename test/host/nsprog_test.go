package host

import (
	be "encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/linkbeat/linkbeat/gen"
)

// naFrame is a neighbour advertisement for target as a whole Ethernet
// frame, to dstMAC from the target, with the given NA flags (0x40:
// solicited) and hop limit; vlan > 0 puts an 802.1Q tag in front of the
// IPv6 header. The checksum is left zero: the program never reads it (the
// kernel's ndisc checks it).
func naFrame(dstMAC net.HardwareAddr, target netip.Addr, flags, hopLimit byte, vlan uint16) []byte {
	eth := make([]byte, 12, 18)
	copy(eth[0:6], dstMAC)
	copy(eth[6:12], []byte{0x02, 0x00, 0x00, 0x19, 0x00, 0x02})
	if vlan > 0 {
		eth = be.BigEndian.AppendUint16(eth, 0x8100)
		eth = be.BigEndian.AppendUint16(eth, vlan)
	}
	eth = be.BigEndian.AppendUint16(eth, 0x86dd)
	ip := make([]byte, 40)
	ip[0] = 0x60
	be.BigEndian.PutUint16(ip[4:6], 32)
	ip[6], ip[7] = 58, hopLimit
	src, dst := target.As16(), netip.MustParseAddr("fe80::11:22ff:fe33:4455").As16()
	copy(ip[8:24], src[:])
	copy(ip[24:40], dst[:])
	na := make([]byte, 32)
	na[0], na[4] = 136, flags
	t := target.As16()
	copy(na[8:24], t[:])
	na[24], na[25] = 2, 1 // target link-layer address option
	copy(na[26:32], eth[6:12])
	return append(append(eth, ip...), na...)
}

// TestNSProgramCounts runs each architecture's NA counter (bpf/ns.c)
// under BPF_PROG_TEST_RUN, on the test run's device (loopback, ifindex
// 1), probed for one target from one MAC. Only a solicited NA for that
// target, to that MAC, untagged and with hop limit 255 counts; every frame
// passes on (TC_NEXT).
func TestNSProgramCounts(t *testing.T) {
	requireRoot(t)
	probeMAC := net.HardwareAddr{0x02, 0x11, 0x22, 0x33, 0x44, 0x55}
	target := netip.MustParseAddr("2001:db8:19::2")
	other := netip.MustParseAddr("2001:db8:19::3")
	solicited := byte(0x40 | 0x20) // S and O, as Linux answers
	full := naFrame(probeMAC, target, solicited, 255, 0)
	cases := []struct {
		name  string
		frame []byte
		count bool
	}{
		{"a real NA", full, true},
		{"an NA from another target", naFrame(probeMAC, other, solicited, 255, 0), false},
		{"an NA to another MAC (the bond's)", naFrame(net.HardwareAddr{0x02, 0, 0, 0, 0, 0x99}, target, solicited, 255, 0), false},
		{"an unsolicited NA to all-nodes", naFrame(net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}, target, 0x20, 255, 0), false},
		{"an unsolicited NA to the probe MAC", naFrame(probeMAC, target, 0x20, 255, 0), false},
		{"a routed NA (hop limit 254)", naFrame(probeMAC, target, solicited, 254, 0), false},
		{"a truncated NA (cut inside the target)", full[:len(full)-16], false},
		// The shortest frame a test run takes for IPv6: the IPv6 header
		// must be whole, so cut the NA after its first 8 bytes.
		{"a truncated frame (the NA's first 8 bytes)", full[:14+40+8], false},
		{"a VLAN-tagged NA", naFrame(probeMAC, target, solicited, 255, 19), false},
	}
	for _, arch := range bpfArchs {
		t.Run(arch, func(t *testing.T) {
			coll, err := ebpf.NewCollection(objectSpec(t, "ns", arch))
			if err != nil {
				t.Fatalf("load ns: %v", err)
			}
			defer coll.Close()
			m, prog := coll.Maps[gen.NsMapNsReplies], coll.Programs[gen.NsProgNsIngress]
			key := gen.NsNsKey{Ifindex: 1, Target: target.As16()}
			var mac [6]uint8
			copy(mac[:], probeMAC)
			if err := m.Put(key, gen.NsPathReplies{Mac: mac}); err != nil {
				t.Fatal(err)
			}
			var want uint64
			for _, c := range cases {
				ret, err := prog.Run(&ebpf.RunOptions{Data: c.frame})
				if err != nil {
					t.Fatalf("%s: test run: %v", c.name, err)
				}
				if int32(ret) != -1 {
					t.Errorf("%s: returned %d, want -1 (TC_NEXT: never change the verdict)", c.name, int32(ret))
				}
				if c.count {
					want++
				}
				var v gen.NsPathReplies
				if err := m.Lookup(key, &v); err != nil {
					t.Fatal(err)
				}
				if v.Replies != want {
					t.Errorf("after %s: %d replies counted, want %d", c.name, v.Replies, want)
				}
				if c.count && v.LastNs == 0 {
					t.Errorf("after %s: last_ns not set", c.name)
				}
				want = v.Replies // one wrong count is reported once
			}
			var (
				k gen.NsNsKey
				v gen.NsPathReplies
				n int
			)
			for it := m.Iterate(); it.Next(&k, &v); {
				n++
			}
			if n != 1 {
				t.Errorf("the program added entries: %d, want 1 (only the daemon creates them)", n)
			}
		})
	}
}
