//go:build vmguest

package guest

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/linkbeat/linkbeat/test/bench"
)

// TestBenchBondFastPath measures the outage a cut causes, with and without
// the fast path: for each bond kind, the active slave is cut (QMP) under a
// 1000 packets/s stream with sequence numbers, by four contenders with the
// same procedure (links quiet for 1.2 s, a random phase of the bond's
// monitor, the cut):
//
//   - no cut: the same measuring window with nothing cut: the stream's own
//     jitter and loss;
//   - bond alone: no linkbeat;
//   - linkbeat fast path off: linkbeat's user-space switch only;
//   - linkbeat fast path: the kernel redirects from the driver's call.
//
// Per contender: packets lost per cut, the largest receive gap, and for the
// fast path the time from the driver's netif_carrier_off to the first
// redirected frame (BPF timestamps, its log). 802.3ad needs the two-cable
// wiring: TestBenchCablesLACPFastPath.
func TestBenchBondFastPath(t *testing.T) {
	plan := requireBench(t)
	requireLinkbeat(t)
	for _, kind := range []struct {
		id, title string
		cfg       bondConfig
	}{
		{"ab-miimon", "active-backup, miimon=100", bondConfig{Mode: "active-backup", Miimon: 100}},
		{"ab-arp", "active-backup, arp_interval=500 arp_ip_target=<peer>", bondConfig{Mode: "active-backup", ArpInterval: 500, ArpTargets: []string{peerAddr.Addr().String()}}},
	} {
		t.Run(kind.id, func(t *testing.T) { benchFastPathKind(t, plan, kind.id, kind.title, kind.cfg) })
	}
}

// TestBenchCablesLACPFastPath is TestBenchBondFastPath's 802.3ad kind: an
// 802.3ad bond against an 802.3ad partner over two cables (newLACPNet),
// each cut taking both ends of the cable that carries the stream.
func TestBenchCablesLACPFastPath(t *testing.T) {
	plan := requireBench(t)
	requireLinkbeat(t)
	benchFastPathKind(t, plan, "lacp", "802.3ad, miimon=100 lacp_rate=fast, against an 802.3ad partner", lacpConfig())
}

// fastPathContenders are the benchmark's contenders, by name.
var fastPathContenders = []struct {
	name     string
	cut      bool
	linkbeat string // "": none; else the config's fast_path
}{
	{"no cut", false, ""},
	{"bond alone", true, ""},
	{"linkbeat fast path off", true, "off"},
	{"linkbeat fast path", true, "on"},
}

func benchFastPathKind(t *testing.T, plan benchPlan, id, title string, cfg bondConfig) {
	// 802.3ad has no active slave: the cut is the cable the bond's hash
	// gives the stream, both ends of it.
	lacp := cfg.Mode == "802.3ad"
	var n *bondNet
	what := "the active slave each time"
	if lacp {
		n = newLACPNet(t)
		what = "both ends of the cable carrying the stream each time"
	} else {
		n = newBondNet(t, cfg)
	}
	s := n.startStream(t, streamRate)
	k := openKmsg(t)
	stalls := watchStalls(t)
	notes := []string{
		fmt.Sprintf("%s over two virtio NICs; %d cuts per contender, %s, %d packets/s", title, plan.OutageTrials, what, streamRate),
		"lost = sequence numbers missing between the packet before the cut and the stream's recovery; packets sent between the QMP request and the guest driver's netif_carrier_off go into the cut cable, and no failover can save them (figure lost_before_driver_call_* for the fast path)",
		"no cut: the same window (until 200 packets sent after the mark arrived) with nothing cut",
		"figures switched_by_*: who made the new slave active, as linkbeat logged it; linkbeat_switch_ms_p50: its own switches, kernel event to confirmed switch, with the fast path off and on",
		fmt.Sprintf("figure guest_stalls: trials in which the guest stopped running for more than %v", guestStallLimit),
		tcgNote,
	}
	lost := bench.Scenario{ID: "bond-fastpath-lost-" + id, Title: "Bond fast path (" + title + "): packets lost per cut", Unit: "packets",
		LowerIsBetter: true, Anchor: "bond alone", Goal: "linkbeat fast path: p50 = 0 and p99 <= 2 packets lost per cut",
		Goals: []bench.Goal{
			{Text: "linkbeat fast path p50 <= 0 packets", Contender: "linkbeat fast path", Stat: "p50", Op: "<=", Value: 0},
			{Text: "linkbeat fast path p99 <= 2 packets", Contender: "linkbeat fast path", Stat: "p99", Op: "<=", Value: 2},
			// What the fast path can save: packets sent after the driver's
			// call. The ones before it went into the cut cable.
			{Text: "linkbeat fast path: at most 2 packets lost after the driver's call in any cut", Contender: "linkbeat fast path",
				Stat: "lost_after_driver_call_max", Op: "<=", Value: 2},
		}, Notes: notes}
	gap := bench.Scenario{ID: "bond-fastpath-gap-" + id, Title: "Bond fast path (" + title + "): largest receive gap per cut", Unit: "ms",
		LowerIsBetter: true, Anchor: "no cut", Goal: "linkbeat fast path p50 within 1 ms of the no-cut contender's p50",
		Goals: []bench.Goal{{Text: "linkbeat fast path p50 <= no cut p50 + 1 ms", Contender: "linkbeat fast path", Stat: "p50", Op: "<=", Of: "no cut", Plus: 1}},
		Notes: notes}
	first := bench.Scenario{ID: "bond-fastpath-first-redirect-" + id, Title: "Bond fast path (" + title + "): driver's netif_carrier_off to the first redirected frame",
		Unit: "ms", LowerIsBetter: true, Anchor: "linkbeat fast path",
		Notes: []string{"BPF timestamps: the carrier program's mark and the TC program's first redirect (fp_redirects.first_ns), from linkbeat's log line \"bond fast failover\"; cuts the bond switched before the stream handed the dead slave a frame have none", tcgNote}}

	for _, c := range fastPathContenders {
		var lb *bondRun
		if c.linkbeat != "" {
			lb = startBondRun(t, "--config", fastPathConfig(t, n.Bond.Name, c.linkbeat), "--log.level", "debug")
			want := map[string]string{"on": "bond fast path live", "off": "bond fast path off"}[c.linkbeat]
			lb.waitLog(t, 0, 30*time.Second, want, func(r logRecord) bool { return r["msg"] == want && r["bond"] == n.Bond.Name })
		}
		lc := bench.Contender{Name: c.name, Figures: map[string]float64{"guest_stalls": 0}}
		gc := bench.Contender{Name: c.name, Figures: map[string]float64{}}
		fc := bench.Contender{Name: c.name}
		var before, after, switches []float64
		for i := 0; i < plan.OutageTrials; i++ {
			time.Sleep(linkwatchQuiet)
			streamOn := ""
			if lacp {
				streamOn = streamSlave(t, n.Bond)
			}
			if cfg.Miimon > 0 {
				n.randomPhase()
			}
			lm := 0
			if lb != nil {
				lm = lb.logMark()
			}
			stalls.Reset()
			var o outage
			var from string
			mark := s.Mark()
			switch {
			case c.cut && lacp:
				r := n.cutCable(t, s, streamOn)
				o, from = r.Outage, r.From
			case c.cut:
				r := n.cutActive(t, s, k, "")
				o, from = r.Outage, r.From
			default:
				s.waitResumed(monotonicNow(), resumePackets, switchTimeout)
				o = s.Outage(mark)
			}
			if stalls.Max() > guestStallLimit {
				lc.Figures["guest_stalls"]++
			}
			lc.Samples = append(lc.Samples, float64(o.Lost))
			gc.Samples = append(gc.Samples, msOf(o.Gap))
			extra := ""
			if c.linkbeat == "on" {
				rec := lb.waitLog(t, lm, 10*time.Second, "a fast failover record", isFastFailoverEnd(n.Bond.Name))
				if us, err := strconv.ParseFloat(rec["first_redirect_us"], 64); err == nil {
					fc.Samples = append(fc.Samples, us/1000)
					dead, _ := strconv.ParseInt(rec["kernel_ns"], 10, 64)
					b, a := s.lostAround(mark, dead)
					before, after = append(before, float64(b)), append(after, float64(a))
					extra = fmt.Sprintf("; first redirect %sus, lost %d before the driver's call, %d after", rec["first_redirect_us"], b, a)
				} else {
					extra = "; no frame to redirect"
				}
			}
			if lb != nil && !lacp {
				// Whether the fast path slows linkbeat's own switch:
				// the same figure with it off and on, in one run.
				rec := lb.waitLog(t, lm, 10*time.Second, "msg=\"bond failover\"", isFailoverLog(n.Bond.Name))
				lc.Figures["switched_by_"+rec["by"]]++
				if us, err := strconv.ParseFloat(rec["duration_us"], 64); err == nil && rec["by"] == "linkbeat" {
					switches = append(switches, us/1000)
				}
			}
			t.Logf("%s, %s %d: %s%s", id, c.name, i+1, o, extra)
			switch {
			case c.cut && lacp:
				n.restoreCable(t, from)
			case c.cut:
				n.restoreSlave(t, from)
			}
		}
		if lb != nil {
			if err := lb.Stop(); err != nil {
				t.Errorf("%s: linkbeat run: %v", c.name, err)
			}
		}
		if len(switches) > 0 {
			lc.Figures["linkbeat_switch_ms_p50"] = bench.Summarize(switches).P50
		}
		if len(after) > 0 {
			lc.Figures["lost_before_driver_call_p50"] = bench.Summarize(before).P50
			lc.Figures["lost_after_driver_call_p50"] = bench.Summarize(after).P50
			lc.Figures["lost_after_driver_call_max"] = bench.Summarize(after).Max
		}
		lost.Contenders = append(lost.Contenders, lc)
		gap.Contenders = append(gap.Contenders, gc)
		if c.linkbeat == "on" {
			first.Contenders = append(first.Contenders, fc)
		}
	}
	writeScenario(t, lost)
	writeScenario(t, gap)
	if len(first.Contenders) > 0 && len(first.Contenders[0].Samples) > 0 {
		writeScenario(t, first)
	}
}

// fastPathConfig writes a config that monitors everything with the
// bond's fast_path set to val.
func fastPathConfig(t *testing.T, bond, val string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "linkbeat.yaml")
	body := fmt.Sprintf("monitor_all: true\nbonds:\n  %s:\n    fast_path: %s\n", bond, val)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
