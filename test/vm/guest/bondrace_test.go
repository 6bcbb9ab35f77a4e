//go:build vmguest

package guest

import (
	"strings"
	"testing"
	"time"
)

// raceCuts is how many times TestBondMiimonRace cuts the active slave.
const raceCuts = 6

// TestBondMiimonRace checks a failover while the bonding driver itself
// is switching. With miimon=1 the bond looks at its
// slaves every millisecond, so it and linkbeat react to the same cut at
// about the same time; whoever wins, the bond must switch once, to the
// slave both choose (the first live one in the bond's order: eth0, eth1,
// eth3), and stay there. Checked per cut: exactly one "making interface
// the new active one" in the kernel log and one active-slave change on
// RTNLGRP_LINK, the active slave held for a second after the switch and
// again after the cut slave's return (no oscillation), and exactly one
// failover in linkbeat's log, naming the same slaves. Who won is logged.
func TestBondMiimonRace(t *testing.T) {
	requireLinkbeat(t)
	slaves := []string{"eth0", "eth1", "eth3"}
	n := newBondNet(t, bondConfig{Mode: "active-backup", Miimon: 1, Slaves: slaves})
	b := n.Bond
	s := n.startStream(t, streamRate)
	k := openKmsg(t)
	aw := watchActive(t, b.Index)
	lb := startBondRun(t)

	won := map[string]int{}
	for i := 0; i < raceCuts; i++ {
		from := b.Active()
		want := ""
		for _, sl := range slaves {
			if sl != from && SlaveAttr(sl, "mii_status") == "up" {
				want = sl
				break
			}
		}
		if from == "" || want == "" {
			t.Fatalf("cut %d: active slave %q, no live slave to fail over to\n%s", i+1, from, b.Dump())
		}
		k.Read()
		lm := lb.logMark()
		cutNs := monotonicNow()
		setLinks(t, false, netdevOf(from))
		cutDone := monotonicNow()
		waitFor(t, switchTimeout, "a new active slave after cutting "+from, func() bool {
			a := b.Active()
			return a != "" && a != from
		})
		if a := b.Active(); a != want {
			t.Errorf("cut %d of %s: %s became active, want %s (the first live slave in the bond's order)", i+1, from, a, want)
			want = a
		}
		b.holdActive(want, time.Second)
		s.waitResumed(cutDone, resumePackets, switchTimeout)

		rec := lb.waitLog(t, lm, 10*time.Second, "msg=\"bond failover\"", isFailoverLog(b.Name))
		won[rec["by"]]++
		t.Logf("cut %d: %s -> %s, switched by %s (%s)", i+1, from, want, rec["by"], rec["duration"])
		if recs := lb.findLogs(lm, isFailoverLog(b.Name)); len(recs) != 1 {
			t.Errorf("cut %d: linkbeat logged %d failovers, want 1: %v", i+1, len(recs), recs)
		}
		if rec["from"] != from || rec["to"] != want {
			t.Errorf("cut %d: linkbeat logged a failover from %s to %s; the bond went from %s to %s", i+1, rec["from"], rec["to"], from, want)
		}
		msgs := k.Read()
		if c := countMsgs(msgs, b.Name, "making interface the new active one"); c != 1 {
			t.Errorf("cut %d: the kernel made a new active slave %d times, want once:\n%s", i+1, c, strings.Join(msgs, "\n"))
		}
		if c := aw.changesSince(cutNs); len(c) != 1 {
			t.Errorf("cut %d: %d active-slave changes on RTNLGRP_LINK, want 1: %+v", i+1, len(c), c)
		}

		// The cut slave's return must not move anything: there is no
		// primary to go back to.
		lm = lb.logMark()
		back := monotonicNow()
		n.restoreSlave(t, from)
		b.holdActive(want, time.Second)
		if c := aw.changesSince(back); len(c) != 0 {
			t.Errorf("cut %d: %s's return changed the active slave: %+v", i+1, from, c)
		}
		if recs := lb.findLogs(lm, isFailoverLog(b.Name)); len(recs) != 0 {
			t.Errorf("cut %d: linkbeat logged failovers after %s came back: %v", i+1, from, recs)
		}
	}
	for _, rec := range lb.findLogs(0, func(r logRecord) bool { return r["msg"] == "bond switch left to the bond" }) {
		t.Logf("linkbeat left a switch to the bond: %v", rec)
	}
	t.Logf("%d cuts with miimon=1: switched by linkbeat %d, by the bond %d", raceCuts, won["linkbeat"], won["bond"])
}

// countMsgs counts the kernel log messages of bond that contain text.
func countMsgs(msgs []string, bond, text string) int {
	c := 0
	for _, m := range msgs {
		if strings.Contains(m, bond) && strings.Contains(m, text) {
			c++
		}
	}
	return c
}
