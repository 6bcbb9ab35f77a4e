package pathmon

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"path/filepath"
	"slices"

	"github.com/cilium/ebpf"

	"github.com/linkbeat/linkbeat/gen"
)

// Probe kinds, as metrics and status name them.
const (
	KindARP = "arp"
	KindNS  = "ns"
)

// Reply is one (slave, target) counter as the BPF maps hold it: ARP
// replies or NAs that answered the slave's probes.
type Reply struct {
	Ifindex int        `json:"ifindex"`
	Target  netip.Addr `json:"target"`
	Kind    string     `json:"probe"`
	Replies uint64     `json:"replies"`
	// LastNs is the latest's CLOCK_MONOTONIC time, 0 if none.
	LastNs uint64 `json:"last_ns"`
}

// Replies reads the monitor's counters, ordered by slave, kind, target.
func (m *Monitor) Replies() ([]Reply, error) {
	k, ok := m.k.(*linuxKernel)
	if !ok {
		return nil, nil
	}
	return readReplies(k.m, k.nsM)
}

// ReadPinned reads the pinned counters under pinDir, without a running
// daemon (status); a map that is not pinned reads as empty.
func ReadPinned(pinDir string) ([]Reply, error) {
	open := func(name string) (*ebpf.Map, error) {
		m, err := ebpf.LoadPinnedMap(filepath.Join(pinDir, name), &ebpf.LoadPinOptions{ReadOnly: true})
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("open pinned %s: %w", name, err)
		}
		return m, nil
	}
	arp, err := open(PinName)
	if err != nil {
		return nil, err
	}
	if arp != nil {
		defer arp.Close()
	}
	ns, err := open(NSPinName)
	if err != nil {
		return nil, err
	}
	if ns != nil {
		defer ns.Close()
	}
	return readReplies(arp, ns)
}

func readReplies(arp, ns *ebpf.Map) ([]Reply, error) {
	var out []Reply
	var v gen.ArpPathReplies
	if arp != nil {
		var k gen.ArpPathKey
		it := arp.Iterate()
		for it.Next(&k, &v) {
			var t [4]byte
			binary.NativeEndian.PutUint32(t[:], k.Target)
			out = append(out, Reply{Ifindex: int(k.Ifindex), Target: netip.AddrFrom4(t), Kind: KindARP, Replies: v.Replies, LastNs: v.LastNs})
		}
		if err := it.Err(); err != nil {
			return nil, fmt.Errorf("read %s: %w", PinName, err)
		}
	}
	if ns != nil {
		var k gen.NsNsKey
		it := ns.Iterate()
		for it.Next(&k, &v) {
			out = append(out, Reply{Ifindex: int(k.Ifindex), Target: netip.AddrFrom16(k.Target), Kind: KindNS, Replies: v.Replies, LastNs: v.LastNs})
		}
		if err := it.Err(); err != nil {
			return nil, fmt.Errorf("read %s: %w", NSPinName, err)
		}
	}
	slices.SortFunc(out, func(a, b Reply) int {
		if a.Ifindex != b.Ifindex {
			return a.Ifindex - b.Ifindex
		}
		return a.Target.Compare(b.Target)
	})
	return out, nil
}
