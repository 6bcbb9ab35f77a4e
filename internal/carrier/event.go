// Package carrier turns carrier transitions, from BPF (fentry or kprobe on
// netif_carrier_on/off) and from rtnetlink, into one de-duplicated stream of
// events.
package carrier

import (
	"encoding/json"
	"fmt"
	"time"
)

// Source says which path delivered an event.
type Source uint8

const (
	SourceNone Source = iota
	SourceFentry
	SourceKprobe
	SourceNetlink
	// SourceResync marks a change found by a full netlink dump after a loss
	// (ring-buffer drop, netlink ENOBUFS, a gap in the carrier counters).
	SourceResync
)

var sourceNames = [...]string{"none", "fentry", "kprobe", "netlink", "resync"}

func (s Source) String() string {
	if int(s) < len(sourceNames) {
		return sourceNames[s]
	}
	return fmt.Sprintf("source(%d)", uint8(s))
}

// ParseSource is the inverse of String, for flags.
func ParseSource(s string) (Source, error) {
	for i, n := range sourceNames {
		if n == s && Source(i) != SourceNone && Source(i) != SourceResync {
			return Source(i), nil
		}
	}
	return SourceNone, fmt.Errorf("unknown carrier source %q (want fentry, kprobe or netlink)", s)
}

// IsBPF reports whether the source sees the driver's call itself.
func (s Source) IsBPF() bool { return s == SourceFentry || s == SourceKprobe }

func (s Source) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Event is one carrier transition of one interface.
type Event struct {
	// Time is the kernel's CLOCK_MONOTONIC at the transition (BPF), or at
	// the moment the daemon read the notice (netlink, resync).
	Time      time.Duration
	Ifindex   int
	Ifname    string
	Up        bool
	Source    Source
	UpCount   uint32
	DownCount uint32
	// Seq orders BPF events (1, 2, ...); 0 for netlink.
	Seq uint64
}

func (e Event) State() string {
	if e.Up {
		return "up"
	}
	return "down"
}

type eventJSON struct {
	TimeNS    int64  `json:"time_ns"`
	Ifindex   int    `json:"ifindex"`
	Ifname    string `json:"ifname"`
	Carrier   string `json:"carrier"`
	Source    Source `json:"source"`
	UpCount   uint32 `json:"up_count"`
	DownCount uint32 `json:"down_count"`
}

func (e Event) MarshalJSON() ([]byte, error) {
	return json.Marshal(eventJSON{
		TimeNS: int64(e.Time), Ifindex: e.Ifindex, Ifname: e.Ifname,
		Carrier: e.State(), Source: e.Source, UpCount: e.UpCount, DownCount: e.DownCount,
	})
}

func (e Event) String() string {
	return fmt.Sprintf("%s (ifindex %d) carrier %s via %s at %s (up %d, down %d)",
		e.Ifname, e.Ifindex, e.State(), e.Source, e.Time, e.UpCount, e.DownCount)
}
