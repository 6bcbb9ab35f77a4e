//go:build vmguest

package guest

import (
	"testing"
	"time"
)

// Waits are generous: under TCG everything runs 10-30x slower than native.
const (
	readyTimeout = 3 * time.Minute
	eventTimeout = 60 * time.Second
)

// TestCarrierFentry pulls eth0's virtual cable and checks that linkbeat
// reports the carrier loss from fentry, earlier than the kernel's own
// RTNLGRP_LINK notification (which linkwatch may hold back for up to 1 s).
func TestCarrierFentry(t *testing.T) {
	setAdmin(t, "eth0", true)
	setLinks(t, true, "net0")
	restoreLinksOnCleanup(t, "net0")
	waitCarrier(t, "eth0", true, 30*time.Second)

	mon := startDaemon(t, "monitor", "--json", "--interfaces", "eth0")
	mon.WaitReady(readyTimeout)
	nlw := watchCarrier(t)

	before := monotonicNow()
	setLinks(t, false, "net0")
	down := mon.nextEvent(eventTimeout, "eth0 carrier down event", func(e monitorEvent) bool {
		return e.Ifname == "eth0" && e.Carrier == "down"
	})
	notice := nlw.next(t, "eth0", false, eventTimeout)
	t.Logf("monitor: %s", down.raw)
	t.Logf("%s event %s after the cut request; netlink notice %s after the event",
		down.Source, ms(down.TimeNS-before), ms(notice.At-down.TimeNS))

	if down.Source != "fentry" {
		t.Errorf("eth0 down event source = %q, want fentry", down.Source)
	}
	if down.TimeNS < before {
		t.Errorf("eth0 down event time_ns %d is before the cut was requested (%d): not CLOCK_MONOTONIC?", down.TimeNS, before)
	}
	if down.TimeNS >= notice.At {
		t.Errorf("%s event (time_ns %d) is not earlier than the netlink notice (received at %d, %s earlier)",
			down.Source, down.TimeNS, notice.At, ms(down.TimeNS-notice.At))
	}

	setLinks(t, true, "net0")
	up := mon.nextEvent(eventTimeout, "eth0 carrier up event", func(e monitorEvent) bool {
		return e.Ifname == "eth0" && e.Carrier == "up"
	})
	upNotice := nlw.next(t, "eth0", true, eventTimeout)
	t.Logf("monitor: %s", up.raw)
	t.Logf("restore: up event from %s, netlink notice %s after it", up.Source, ms(upNotice.At-up.TimeNS))
	if up.DownCount < 1 || up.UpCount < 1 {
		t.Errorf("after one down and one up, counts are up_count=%d down_count=%d", up.UpCount, up.DownCount)
	}
}

// TestBurstFentry cuts two NICs in one QMP batch. Both losses must arrive
// from fentry; linkwatch delays the second netlink notice (non-urgent event
// within a second of another), which is what this test makes visible.
func TestBurstFentry(t *testing.T) {
	ifs := map[string]string{"eth0": "net0", "eth1": "net1"}
	for ifname := range ifs {
		setAdmin(t, ifname, true)
	}
	setLinks(t, true, "net0", "net1")
	restoreLinksOnCleanup(t, "net0", "net1")
	for ifname := range ifs {
		waitCarrier(t, ifname, true, 30*time.Second)
	}

	mon := startDaemon(t, "monitor", "--json", "--interfaces", "eth0,eth1")
	mon.WaitReady(readyTimeout)
	nlw := watchCarrier(t)

	before := monotonicNow()
	setLinks(t, false, "net0", "net1")
	downs := map[string]monitorEvent{}
	for len(downs) < len(ifs) {
		ev := mon.nextEvent(eventTimeout, "carrier down events for eth0 and eth1", func(e monitorEvent) bool {
			_, want := ifs[e.Ifname]
			return want && e.Carrier == "down"
		})
		if prev, dup := downs[ev.Ifname]; dup {
			t.Errorf("second down event for %s: %s (first: %s)", ev.Ifname, ev.raw, prev.raw)
			continue
		}
		downs[ev.Ifname] = ev
		t.Logf("monitor: %s", ev.raw)
	}
	for _, ifname := range []string{"eth0", "eth1"} {
		ev := downs[ifname]
		n := nlw.next(t, ifname, false, eventTimeout)
		late := n.At - ev.TimeNS
		t.Logf("%s: %s event %s after the cut request, netlink notice %s after the event", ifname, ev.Source, ms(ev.TimeNS-before), ms(late))
		if ev.Source != "fentry" {
			t.Errorf("%s down event source = %q, want fentry", ifname, ev.Source)
		}
		if late < 0 {
			t.Errorf("%s: netlink notice came %s before linkbeat's %s event", ifname, ms(-late), ev.Source)
		}
	}
	t.Logf("down events %s apart", ms(abs(downs["eth1"].TimeNS-downs["eth0"].TimeNS)))

	setLinks(t, true, "net0", "net1")
	ups := map[string]bool{}
	for len(ups) < len(ifs) {
		ev := mon.nextEvent(eventTimeout, "carrier up events for eth0 and eth1", func(e monitorEvent) bool {
			_, want := ifs[e.Ifname]
			return want && e.Carrier == "up"
		})
		ups[ev.Ifname] = true
		t.Logf("monitor: %s", ev.raw)
	}
}

func abs(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}

// TestCarrierKprobe forces the second path of the fallback chain, which
// kernels that refuse fentry but have kprobes use, and checks it reports
// the driver's call too.
func TestCarrierKprobe(t *testing.T) {
	setAdmin(t, "eth0", true)
	setLinks(t, true, "net0")
	restoreLinksOnCleanup(t, "net0")
	waitCarrier(t, "eth0", true, 30*time.Second)

	mon := startDaemon(t, "monitor", "--json", "--interfaces", "eth0", "--carrier-source", "kprobe")
	mon.WaitReady(readyTimeout)
	nlw := watchCarrier(t)

	setLinks(t, false, "net0")
	down := mon.nextEvent(eventTimeout, "eth0 carrier down event", func(e monitorEvent) bool {
		return e.Ifname == "eth0" && e.Carrier == "down"
	})
	notice := nlw.next(t, "eth0", false, eventTimeout)
	t.Logf("monitor: %s; netlink notice %s after the event", down.raw, ms(notice.At-down.TimeNS))
	if down.Source != "kprobe" {
		t.Errorf("eth0 down event source = %q, want kprobe", down.Source)
	}
	if down.TimeNS >= notice.At {
		t.Errorf("kprobe event (time_ns %d) is not earlier than the netlink notice (%d)", down.TimeNS, notice.At)
	}
	setLinks(t, true, "net0")
	mon.nextEvent(eventTimeout, "eth0 carrier up event", func(e monitorEvent) bool {
		return e.Ifname == "eth0" && e.Carrier == "up" && e.Source == "kprobe"
	})
}
