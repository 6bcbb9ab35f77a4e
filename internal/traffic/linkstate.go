package traffic

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"

	"github.com/linkbeat/linkbeat/gen"
)

// LinkState is the daemon's record of one link's carrier (struct
// link_state), kept in the pinned link_state map for `linkbeat status`.
type LinkState struct {
	Carrier bool
	// ChangedNS is the CLOCK_MONOTONIC time of the last change the daemon
	// saw; 0 when it has seen none since it first saw the link.
	ChangedNS uint64
	// SeenNS is when the daemon last recorded the link.
	SeenNS             uint64
	UpCount, DownCount uint32
	// Source is the carrier.Source that reported the change (0: first sight).
	Source uint8
}

func (s LinkState) raw() gen.TrafficLinkState {
	r := gen.TrafficLinkState{ChangedNs: s.ChangedNS, SeenNs: s.SeenNS, UpCount: s.UpCount, DownCount: s.DownCount, Source: s.Source}
	if s.Carrier {
		r.Carrier = 1
	}
	return r
}

func linkStateFrom(r gen.TrafficLinkState) LinkState {
	return LinkState{Carrier: r.Carrier != 0, ChangedNS: r.ChangedNs, SeenNS: r.SeenNs, UpCount: r.UpCount, DownCount: r.DownCount, Source: r.Source}
}

// RecordChange stores a carrier change of a counted interface.
func (t *Traffic) RecordChange(ifindex int, s LinkState) error {
	if _, ok := t.attached[ifindex]; !ok {
		return nil
	}
	if err := t.objs.LinkState.Put(uint32(ifindex), s.raw()); err != nil {
		return fmt.Errorf("record carrier of ifindex %d: %w", ifindex, err)
	}
	return nil
}

// RecordSight stores the carrier of an interface the daemon has just
// started to count. A record an earlier run left keeps its change time
// when the device's carrier counters show that nothing changed since.
func (t *Traffic) RecordSight(ifindex int, s LinkState) error {
	if _, ok := t.attached[ifindex]; !ok {
		return nil
	}
	var old gen.TrafficLinkState
	err := t.objs.LinkState.Lookup(uint32(ifindex), &old)
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("read carrier record of ifindex %d: %w", ifindex, err)
	}
	if err == nil && (old.Carrier != 0) == s.Carrier && old.UpCount == s.UpCount && old.DownCount == s.DownCount {
		s.ChangedNS, s.Source = old.ChangedNs, old.Source
	}
	if err := t.objs.LinkState.Put(uint32(ifindex), s.raw()); err != nil {
		return fmt.Errorf("record carrier of ifindex %d: %w", ifindex, err)
	}
	return nil
}

// ReadLinkStates reads every record of a link_state map.
func ReadLinkStates(m *ebpf.Map) (map[int]LinkState, error) {
	out := map[int]LinkState{}
	var (
		key uint32
		val gen.TrafficLinkState
	)
	it := m.Iterate()
	for it.Next(&key, &val) {
		out[int(key)] = linkStateFrom(val)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read link_state map: %w", err)
	}
	return out, nil
}
