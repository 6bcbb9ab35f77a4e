//go:build vmguest

package guest

import (
	"cmp"
	"flag"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/linkbeat/linkbeat/test/bench"
	"github.com/linkbeat/linkbeat/test/vm/guest/vmctl"
)

// The VM benchmarks: the bond outage (miimon alone, linkbeat with
// fentry, linkbeat with netlink) and the detection
// during a burst of carrier changes: fentry against netlink). They run
// only under the host's TestVMBench (`make bench-vm`, `make
// bench-vm-quick`), which sets -linkbeat.bench, and send their figures to
// the host through the results port (vmctl.WriteResult). Timings are
// figures, never assertions; what is asserted is that each trial did what
// it measures (the other slave took over, the stream resumed, the events
// came from the path named).

var benchMode = flag.String("linkbeat.bench", "", "benchmark mode, full or quick (set by the host's TestVMBench); without it the TestBench* tests skip")

// benchPlan is how many trials a mode runs.
type benchPlan struct {
	OutageTrials int // cuts per contender
	Bursts       int
}

func requireBench(t *testing.T) benchPlan {
	t.Helper()
	switch *benchMode {
	case "full":
		return benchPlan{OutageTrials: 30, Bursts: 10}
	case "quick":
		return benchPlan{OutageTrials: 3, Bursts: 2}
	case "":
		t.Skip("a benchmark: run by the host's TestVMBench (make bench-vm, make bench-vm-quick)")
	default:
		t.Fatalf("-linkbeat.bench=%q: want full or quick", *benchMode)
	}
	return benchPlan{}
}

// linkwatchQuiet is how long the links stay quiet before a measured cut.
// linkwatch holds a plain NIC's netlink notice back until a second after
// it last ran; waiting longer makes every cut the first change after a
// quiet spell, the common case in production.
const linkwatchQuiet = 1200 * time.Millisecond

const tcgNote = "QEMU TCG guest (2 vCPUs on a shared 2-core host), roughly 10-30x slower than native: compare contenders only as ratios within this run"

// TestBenchBondOutage measures the bond outage. An active-backup bond of
// eth0 and eth1 (virtio, miimon 100) carries a 1000 packets/s UDP stream
// with sequence numbers to the peer on the hub (bondnet_test.go); QMP cuts
// the active slave; the outage is the largest receive gap at the peer.
// Each contender gets the same procedure: links quiet for 1.2 s, a sleep
// of a uniformly random part of miimon's interval, the cut. Alongside,
// linkbeat's own failover duration (kernel event to confirmed switch,
// from its log) and the debug split of where that time went.
func TestBenchBondOutage(t *testing.T) {
	plan := requireBench(t)
	requireLinkbeat(t)
	n := newBondNet(t, bondConfig{Mode: "active-backup", Miimon: 100})
	s := n.startStream(t, streamRate)
	k := openKmsg(t)
	stalls := watchStalls(t)

	outage := bench.Scenario{
		ID:            "bond-outage",
		Title:         "Bond outage: active slave's cable cut (QMP), largest receive gap of a 1000 packets/s stream",
		Unit:          "ms",
		LowerIsBetter: true,
		Anchor:        "miimon alone",
		Goal:          "linkbeat p50 <= miimon-alone p50 / 20",
		Goals: []bench.Goal{{Text: "linkbeat (fentry) p50 <= miimon-alone p50 / 20",
			Contender: "linkbeat fentry", Stat: "p50", Op: "<=", Factor: 1.0 / 20}},
		Notes: []string{
			fmt.Sprintf("active-backup bond of two virtio NICs, miimon=100; %d cuts per contender, the active slave each time", plan.OutageTrials),
			"each cut falls at a uniformly random phase of miimon's 100 ms tick, as a real cable pull does: miimon alone costs on average half a tick plus the driver's work; linkbeat's cuts are timed the same way",
			"before each cut the links were quiet for 1.2 s, so linkwatch's 1 s hold does not delay the netlink notice; right after another link event, the netlink contender would wait up to 1 s and miimon would switch first",
			"outage = largest gap between arrivals at the peer (1 ms resolution at 1000 packets/s; the sender's pacing jitter under TCG included)",
			"figures switched_by_*: who made the new slave active, as linkbeat logged it",
			fmt.Sprintf("figure guest_stalls: trials in which the guest itself stopped running for more than %v (the largest oversleep of a 1 ms sleep loop; the emulator descheduled on the busy host): such a trial's outage includes the stall, and is kept", guestStallLimit),
			tcgNote,
		},
	}
	duration := bench.Scenario{
		ID:            "bond-failover-duration",
		Title:         "linkbeat's own failovers: kernel event to confirmed switch (its log's duration)",
		Unit:          "ms",
		LowerIsBetter: true,
		Anchor:        "linkbeat netlink",
		Notes: []string{
			"only the cuts linkbeat switched itself (see bond-outage's switched_by_* figures)",
			"fentry: the clock starts at the driver's netif_carrier_off call; netlink: when linkbeat read the notice, so linkwatch's delay before the notice is not in it (the outage shows it)",
			"figures from the debug log line \"bond failover timing\": decided_after (event to decision, delays included), set_took (the IFLA_BOND_ACTIVE_SLAVE request, which waits for RTNL), reads_took (reading the active slave before and after)",
			tcgNote,
		},
	}

	for _, c := range []struct{ name, source string }{
		{"miimon alone", ""},
		{"linkbeat fentry", "fentry"},
		{"linkbeat netlink", "netlink"},
	} {
		var lb *bondRun
		if c.source != "" {
			lb = startBondRun(t, "--carrier-source", c.source, "--log.level", "debug")
			lb.requireCarrierSource(t, c.source)
		}
		oc := bench.Contender{Name: c.name, Figures: map[string]float64{"switched_by_linkbeat": 0, "switched_by_bond": 0, "guest_stalls": 0}}
		dc := bench.Contender{Name: c.name, Figures: map[string]float64{}}
		var lost []float64
		split := map[string][]float64{}
		for i := 0; i < plan.OutageTrials; i++ {
			time.Sleep(linkwatchQuiet)
			n.randomPhase()
			lm := 0
			if lb != nil {
				lm = lb.logMark()
			}
			stalls.Reset()
			r := n.cutActive(t, s, k, "")
			stall := stalls.Max()
			if stall > guestStallLimit {
				oc.Figures["guest_stalls"]++
			}
			oc.Samples = append(oc.Samples, msOf(r.Outage.Gap))
			lost = append(lost, float64(r.Outage.Lost))
			by := "bond"
			if lb != nil {
				rec := lb.waitLog(t, lm, 10*time.Second, "msg=\"bond failover\"", isFailoverLog(n.Bond.Name))
				if rec["from"] != r.From || rec["to"] != r.To {
					t.Errorf("%s: linkbeat logged a failover from %s to %s; the cut moved %s to %s", c.name, rec["from"], rec["to"], r.From, r.To)
				}
				by = rec["by"]
				if by == "linkbeat" {
					us, err := strconv.ParseFloat(rec["duration_us"], 64)
					if err != nil {
						t.Fatalf("failover log line without duration_us: %v", rec)
					}
					dc.Samples = append(dc.Samples, us/1000)
					for _, tr := range lb.findLogs(lm, func(r logRecord) bool { return r["msg"] == "bond failover timing" }) {
						for _, key := range []string{"decided_after", "set_took", "reads_took"} {
							if d, err := time.ParseDuration(tr[key]); err == nil {
								split[key] = append(split[key], msOf(d))
							}
						}
					}
				}
			}
			oc.Figures["switched_by_"+by]++
			t.Logf("%s, cut %d: %s -> %s by %s; %s; guest stalled up to %v", c.name, i+1, r.From, r.To, by, r.Outage, stall.Round(time.Millisecond))
			n.restoreSlave(t, r.From)
		}
		oc.Figures["lost_packets_p50"] = bench.Summarize(lost).P50
		outage.Contenders = append(outage.Contenders, oc)
		if lb != nil {
			if err := lb.Stop(); err != nil {
				t.Errorf("%s: linkbeat run: %v", c.name, err)
			}
			for key, v := range split {
				dc.Figures[key+"_p50_ms"] = bench.Summarize(v).P50
			}
			duration.Contenders = append(duration.Contenders, dc)
		}
	}
	writeScenario(t, outage)
	writeScenario(t, duration)
}

// guestStallLimit is the oversleep beyond which a trial counts as one in
// which the guest stalled.
const guestStallLimit = 50 * time.Millisecond

// stallWatch records how long the guest stops running: the largest
// oversleep of a 1 ms sleep loop since the last Reset.
type stallWatch struct{ max atomic.Int64 }

func watchStalls(t *testing.T) *stallWatch {
	w := &stallWatch{}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			before := monotonicNow()
			time.Sleep(time.Millisecond)
			over := monotonicNow() - before - int64(time.Millisecond)
			for {
				cur := w.max.Load()
				if over <= cur || w.max.CompareAndSwap(cur, over) {
					break
				}
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
	return w
}

func (w *stallWatch) Reset()             { w.max.Store(0) }
func (w *stallWatch) Max() time.Duration { return time.Duration(w.max.Load()) }

// requireCarrierSource fails the test unless the daemon's features line
// names the carrier source the contender is about.
func (r *bondRun) requireCarrierSource(t *testing.T, want string) {
	t.Helper()
	rec := r.waitLog(t, 0, 10*time.Second, "msg=features", func(r logRecord) bool { return r["msg"] == "features" })
	if got := rec["carrier_source"]; got != want {
		t.Fatalf("linkbeat run --carrier-source %s runs with carrier source %q", want, got)
	}
}

// burstNICs are cut one after another in a burst (eth2 is left alone).
var burstNICs = []string{"eth0", "eth1", "eth3"}

// TestBenchBurstDetection measures detection during a burst. Three
// virtio NICs are cut in quick succession (one QMP request each, back to back) after the
// links were quiet for 1.2 s. Two monitors run side by side, one on fentry
// and one forced to netlink; for each change the delay is taken from the
// driver's netif_carrier_off call (the fentry event's time_ns) to the
// moment each monitor's event reached the test. linkwatch sends the first
// change's notice at once and holds the later ones until a second after
// it ran: the netlink path pays that hold, the fentry path does not.
func TestBenchBurstDetection(t *testing.T) {
	plan := requireBench(t)
	requireLinkbeat(t)
	var nds []string
	for _, nic := range burstNICs {
		setAdmin(t, nic, true)
		nds = append(nds, netdevOf(nic))
	}
	setLinks(t, true, nds...)
	restoreLinksOnCleanup(t, nds...)
	for _, nic := range burstNICs {
		waitCarrier(t, nic, true, 30*time.Second)
	}
	list := strings.Join(burstNICs, ",")
	fen := startDaemon(t, "monitor", "--json", "--interfaces", list, "--carrier-source", "fentry")
	nlm := startDaemon(t, "monitor", "--json", "--interfaces", list, "--carrier-source", "netlink")
	fen.WaitReady(readyTimeout)
	nlm.WaitReady(readyTimeout)
	raw := watchCarrier(t)

	type delays struct{ first, later []float64 }
	var fd, nd, kd delays
	add := func(d *delays, pos int, v float64) {
		if pos == 0 {
			d.first = append(d.first, v)
		} else {
			d.later = append(d.later, v)
		}
	}
	fc := bench.Contender{Name: "linkbeat fentry", Figures: map[string]float64{}}
	nc := bench.Contender{Name: "linkbeat netlink", Figures: map[string]float64{}}
	for b := 0; b < plan.Bursts; b++ {
		time.Sleep(linkwatchQuiet)
		before := monotonicNow()
		for _, d := range nds {
			setLinks(t, false, d)
		}
		fev := monitorEvents(t, fen, burstNICs, "down")
		nev := monitorEvents(t, nlm, burstNICs, "down")
		// Positions in the burst follow the driver's calls.
		order := slices.Clone(burstNICs)
		slices.SortFunc(order, func(a, b string) int { return cmp.Compare(fev[a].TimeNS, fev[b].TimeNS) })
		for pos, nic := range order {
			f, nlev := fev[nic], nev[nic]
			if f.Source != "fentry" {
				t.Fatalf("burst %d: %s down from %q on the fentry monitor: %s", b+1, nic, f.Source, f.raw)
			}
			if nlev.Source != "netlink" {
				t.Fatalf("burst %d: %s down from %q on the netlink monitor: %s", b+1, nic, nlev.Source, nlev.raw)
			}
			drv := f.TimeNS
			if drv < before {
				t.Fatalf("burst %d: %s fentry time_ns %d is before the cuts were requested (%d)", b+1, nic, drv, before)
			}
			notice := raw.next(t, nic, false, eventTimeout)
			if nlev.TimeNS < drv || notice.At < drv {
				t.Errorf("burst %d: %s netlink notice (linkbeat read it at %d, the test at %d) before the driver's call (%d)",
					b+1, nic, nlev.TimeNS, notice.At, drv)
			}
			fDelay, nDelay, kDelay := time.Duration(f.readAt-drv), time.Duration(nlev.readAt-drv), time.Duration(notice.At-drv)
			fc.Samples = append(fc.Samples, msOf(fDelay))
			nc.Samples = append(nc.Samples, msOf(nDelay))
			add(&fd, pos, msOf(fDelay))
			add(&nd, pos, msOf(nDelay))
			add(&kd, pos, msOf(kDelay))
			t.Logf("burst %d, change %d (%s): fentry event %v, netlink event %v, kernel notice %v after the driver's call",
				b+1, pos+1, nic, fDelay, nDelay, kDelay)
		}
		setLinks(t, true, nds...)
		monitorEvents(t, fen, burstNICs, "up")
		monitorEvents(t, nlm, burstNICs, "up")
		for _, nic := range burstNICs {
			raw.next(t, nic, true, eventTimeout)
		}
	}
	for _, x := range []struct {
		c *bench.Contender
		d delays
	}{{&fc, fd}, {&nc, nd}} {
		x.c.Figures["first_change_p50_ms"] = bench.Summarize(x.d.first).P50
		x.c.Figures["later_changes_p50_ms"] = bench.Summarize(x.d.later).P50
	}
	nc.Figures["kernel_notice_first_p50_ms"] = bench.Summarize(kd.first).P50
	nc.Figures["kernel_notice_later_p50_ms"] = bench.Summarize(kd.later).P50
	writeScenario(t, bench.Scenario{
		ID:            "burst-detection",
		Title:         "Detection during a burst: driver's carrier call to linkbeat's event, 3 NICs cut in quick succession",
		Unit:          "ms",
		LowerIsBetter: true,
		Anchor:        "linkbeat netlink",
		Contenders:    []bench.Contender{nc, fc},
		Notes: []string{
			fmt.Sprintf("%d bursts: eth0, eth1 and eth3 (virtio) cut by QMP one after another, one request each, after 1.2 s without link events", plan.Bursts),
			"delay from the driver's netif_carrier_off call (the fentry event's time_ns, CLOCK_MONOTONIC) to the moment the monitor's JSON line reached the consumer, for two `linkbeat monitor`s running side by side",
			"linkwatch sends a plain NIC's first change at once and holds later ones until a second after it last ran: compare the figures first_change_p50_ms and later_changes_p50_ms; kernel_notice_*: the RTNLGRP_LINK notice on the test's own socket",
			tcgNote,
		},
	})
}

// monitorEvents waits for one event of the given direction for each of
// nics and returns them by name.
func monitorEvents(t *testing.T, d *daemon, nics []string, carrier string) map[string]monitorEvent {
	t.Helper()
	got := map[string]monitorEvent{}
	for len(got) < len(nics) {
		ev := d.nextEvent(eventTimeout, fmt.Sprintf("carrier %s events for %v", carrier, nics), func(e monitorEvent) bool {
			_, seen := got[e.Ifname]
			return slices.Contains(nics, e.Ifname) && e.Carrier == carrier && !seen
		})
		got[ev.Ifname] = ev
	}
	return got
}

// writeScenario logs the scenario's distributions and sends it to the host.
func writeScenario(t *testing.T, s bench.Scenario) {
	t.Helper()
	for _, c := range s.Contenders {
		st := bench.Summarize(c.Samples)
		t.Logf("%s: %s n=%d min %.3f p50 %.3f p99 %.3f max %.3f %s; %v",
			s.ID, c.Name, st.N, st.Min, st.P50, st.P99, st.Max, s.Unit, c.Figures)
	}
	if err := vmctl.WriteResult(vmctl.Result{Kernel: kernelRelease(), Scenario: s}); err != nil {
		t.Fatal(err)
	}
}

func msOf(d time.Duration) float64 { return float64(d) / 1e6 }
