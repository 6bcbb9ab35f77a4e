package carrier

import "time"

// LinkState is what rtnetlink says of one link's carrier (IFLA_CARRIER and
// the IFLA_CARRIER_{UP,DOWN}_COUNT attributes).
type LinkState struct {
	Ifindex   int
	Ifname    string
	Carrier   bool
	UpCount   uint32
	DownCount uint32
}

// Tracker merges the BPF and netlink views of carrier into one stream. It
// is pure state, driven by one goroutine: the device's transition counters
// order the two sources, so the same change is reported once, by whichever
// path saw it first, and a jump in the counters reveals lost events.
type Tracker struct {
	links map[int]*trackedLink
}

type trackedLink struct {
	name    string
	up      bool
	upCnt   uint32
	downCnt uint32
}

func (l *trackedLink) total() uint64 { return uint64(l.upCnt) + uint64(l.downCnt) }

func NewTracker() *Tracker { return &Tracker{links: make(map[int]*trackedLink)} }

// Kernel takes an event from BPF. It returns report=false for a transition
// already reported, and gap=true when the counters jumped, meaning events
// were lost and the caller should resync from a netlink dump.
func (t *Tracker) Kernel(ev Event) (report, gap bool) {
	l := t.links[ev.Ifindex]
	if l == nil {
		t.links[ev.Ifindex] = &trackedLink{name: ev.Ifname, up: ev.Up, upCnt: ev.UpCount, downCnt: ev.DownCount}
		return true, false
	}
	total := uint64(ev.UpCount) + uint64(ev.DownCount)
	last := l.total()
	if total <= last {
		// Netlink or an earlier BPF event has told us already.
		return false, false
	}
	gap = total > last+1
	report = ev.Up != l.up
	l.name, l.up, l.upCnt, l.downCnt = ev.Ifname, ev.Up, ev.UpCount, ev.DownCount
	return report, gap
}

// Netlink takes a link notice, or a dump entry during a resync (src
// SourceResync). It returns the event to report when the carrier differs
// from what is known; the first sight of a link only records it.
func (t *Tracker) Netlink(ls LinkState, now time.Duration, src Source) (Event, bool) {
	l := t.links[ls.Ifindex]
	if l == nil {
		t.links[ls.Ifindex] = &trackedLink{name: ls.Ifname, up: ls.Carrier, upCnt: ls.UpCount, downCnt: ls.DownCount}
		return Event{}, false
	}
	l.name = ls.Ifname
	total := uint64(ls.UpCount) + uint64(ls.DownCount)
	if total < l.total() {
		// Built before a transition BPF has already delivered.
		return Event{}, false
	}
	changed := ls.Carrier != l.up
	l.up, l.upCnt, l.downCnt = ls.Carrier, ls.UpCount, ls.DownCount
	if !changed {
		return Event{}, false
	}
	return Event{
		Time: now, Ifindex: ls.Ifindex, Ifname: ls.Ifname, Up: ls.Carrier,
		Source: src, UpCount: ls.UpCount, DownCount: ls.DownCount,
	}, true
}

// Forget drops a link that was deleted, so a re-used ifindex starts afresh.
func (t *Tracker) Forget(ifindex int) { delete(t.links, ifindex) }

// Known lists the links the tracker holds, for pruning after a dump.
func (t *Tracker) Known() []int {
	out := make([]int, 0, len(t.links))
	for i := range t.links {
		out = append(out, i)
	}
	return out
}

// State returns the ordered carrier of a link and the counters it is at.
func (t *Tracker) State(ifindex int) (LinkState, bool) {
	l := t.links[ifindex]
	if l == nil {
		return LinkState{}, false
	}
	return LinkState{Ifindex: ifindex, Ifname: l.name, Carrier: l.up, UpCount: l.upCnt, DownCount: l.downCnt}, true
}

// Carrier returns the last known carrier of a link.
func (t *Tracker) Carrier(ifindex int) (up, known bool) {
	l := t.links[ifindex]
	if l == nil {
		return false, false
	}
	return l.up, true
}
