package carrier

import (
	"testing"
	"time"
)

func bpfEv(idx int, up bool, upCnt, downCnt uint32) Event {
	return Event{Ifindex: idx, Ifname: "eth0", Up: up, Source: SourceFentry, UpCount: upCnt, DownCount: downCnt}
}

func nlState(idx int, up bool, upCnt, downCnt uint32) LinkState {
	return LinkState{Ifindex: idx, Ifname: "eth0", Carrier: up, UpCount: upCnt, DownCount: downCnt}
}

func TestTrackerBPFThenNetlinkDuplicateReportedOnce(t *testing.T) {
	tr := NewTracker()
	if _, ok := tr.Netlink(nlState(2, true, 1, 0), 0, SourceNetlink); ok {
		t.Fatal("first sight of a link must only record it")
	}
	report, gap := tr.Kernel(bpfEv(2, false, 1, 1))
	if !report || gap {
		t.Fatalf("BPF down: report=%v gap=%v, want report and no gap", report, gap)
	}
	if ev, ok := tr.Netlink(nlState(2, false, 1, 1), time.Second, SourceNetlink); ok {
		t.Fatalf("netlink duplicate of a BPF event was reported: %v", ev)
	}
	if up, _ := tr.Carrier(2); up {
		t.Fatal("carrier should be down")
	}
}

func TestTrackerNetlinkFirstThenLateBPFDropped(t *testing.T) {
	tr := NewTracker()
	tr.Netlink(nlState(2, true, 1, 0), 0, SourceNetlink)
	ev, ok := tr.Netlink(nlState(2, false, 1, 1), time.Second, SourceNetlink)
	if !ok || ev.Up || ev.Source != SourceNetlink || ev.Time != time.Second {
		t.Fatalf("netlink change: got %v ok=%v", ev, ok)
	}
	if report, _ := tr.Kernel(bpfEv(2, false, 1, 1)); report {
		t.Fatal("BPF event for a change netlink already reported must be dropped")
	}
}

func TestTrackerStaleNetlinkIgnored(t *testing.T) {
	tr := NewTracker()
	tr.Netlink(nlState(2, true, 1, 0), 0, SourceNetlink)
	tr.Kernel(bpfEv(2, false, 1, 1))
	tr.Kernel(bpfEv(2, true, 2, 1))
	// A notice built between the two transitions arrives late.
	if ev, ok := tr.Netlink(nlState(2, false, 1, 1), 0, SourceNetlink); ok {
		t.Fatalf("stale netlink notice reported: %v", ev)
	}
	if up, _ := tr.Carrier(2); !up {
		t.Fatal("stale notice must not change the state")
	}
}

func TestTrackerGapSignalsResync(t *testing.T) {
	tr := NewTracker()
	tr.Netlink(nlState(2, true, 1, 0), 0, SourceNetlink)
	// down (1,1) and up (2,1) were lost; now down (2,2).
	report, gap := tr.Kernel(bpfEv(2, false, 2, 2))
	if !report || !gap {
		t.Fatalf("report=%v gap=%v, want both", report, gap)
	}
	// Same final state after a lost flap: nothing to report, but a gap.
	report, gap = tr.Kernel(bpfEv(2, false, 3, 4))
	if report || !gap {
		t.Fatalf("report=%v gap=%v, want gap only", report, gap)
	}
}

func TestTrackerResyncReportsMissedChange(t *testing.T) {
	tr := NewTracker()
	tr.Netlink(nlState(3, true, 1, 0), 0, SourceNetlink)
	ev, ok := tr.Netlink(nlState(3, false, 1, 1), 5, SourceResync)
	if !ok || ev.Source != SourceResync || ev.Up {
		t.Fatalf("resync: got %v ok=%v", ev, ok)
	}
}

func TestTrackerCountlessKernelStillReports(t *testing.T) {
	tr := NewTracker()
	tr.Netlink(nlState(4, true, 0, 0), 0, SourceNetlink)
	if _, ok := tr.Netlink(nlState(4, false, 0, 0), 0, SourceNetlink); !ok {
		t.Fatal("a change must be reported even without counters")
	}
}

func TestTrackerForgetStartsAfresh(t *testing.T) {
	tr := NewTracker()
	tr.Netlink(nlState(5, true, 9, 8), 0, SourceNetlink)
	tr.Forget(5)
	if _, known := tr.Carrier(5); known {
		t.Fatal("forgotten link still known")
	}
	// A new device with the same ifindex starts with small counters.
	report, gap := tr.Kernel(bpfEv(5, true, 1, 0))
	if !report || gap {
		t.Fatalf("new device: report=%v gap=%v", report, gap)
	}
}

func TestParseSource(t *testing.T) {
	for _, s := range []string{"fentry", "kprobe", "netlink"} {
		got, err := ParseSource(s)
		if err != nil || got.String() != s {
			t.Fatalf("ParseSource(%q) = %v, %v", s, got, err)
		}
	}
	if _, err := ParseSource("resync"); err == nil {
		t.Fatal("resync is not a selectable source")
	}
}
