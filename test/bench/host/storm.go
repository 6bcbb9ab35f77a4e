package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/linkbeat/linkbeat/test/bench"
)

// stormTopology is a server with n veth links s0..s<n-1>, each with a
// connected route and a static route 172.16.i.0/24 behind it; the peers
// p0.. sit in sw, where setting one down cuts the server link's carrier.
type stormTopology struct {
	srv, sw *namespace
	ifaces  []string
}

func newStormTopology(ctx context.Context, nss *namespaces, n int) (*stormTopology, error) {
	srv, sw, ifaces, err := nss.linkedPair("s", "p", 30, n)
	if err != nil {
		return nil, err
	}
	for i, dev := range ifaces {
		if err := srv.waitCarrier(ctx, dev, true, 5*time.Second); err != nil {
			return nil, err
		}
		if err := srv.ip("route", "add", fmt.Sprintf("172.16.%d.0/24", i), "via", fmt.Sprintf("10.30.%d.1", i), "dev", dev); err != nil {
			return nil, err
		}
	}
	return &stormTopology{srv: srv, sw: sw, ifaces: ifaces}, nil
}

// script is an ifplugd action script for the topology's routes.
func (t *stormTopology) script() string {
	return `n=${1#s}
case "$2" in
down) ip -batch - <<EOF
route del 172.16.$n.0/24 via 10.30.$n.1 dev $1
route del 10.30.$n.0/24 dev $1
EOF
;;
up) ip -batch - <<EOF
route replace 10.30.$n.0/24 dev $1 proto kernel scope link src 10.30.$n.2
route replace 172.16.$n.0/24 via 10.30.$n.1 dev $1
EOF
;;
esac`
}

// flap toggles the peers of ifaces[i] for i in which until stop closes,
// every period (0: as fast as netlink allows). It returns the toggles made.
func (t *stormTopology) flap(which []int, period time.Duration, stop <-chan struct{}) (int64, error) {
	var n atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, len(which))
	for _, i := range which {
		wg.Add(1)
		go func() {
			defer wg.Done()
			peer := fmt.Sprintf("p%d", i)
			next := time.Now()
			for up := false; ; up = !up {
				select {
				case <-stop:
					return
				default:
				}
				if err := t.sw.setLink(peer, up); err != nil {
					errs <- err
					return
				}
				n.Add(1)
				if period > 0 {
					next = next.Add(period)
					time.Sleep(time.Until(next))
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return n.Load(), <-errs
}

// settle sets the final carrier state, ifaces[0] down and the rest up,
// and returns the routes that state should leave: before, less ifaces[0]'s.
func (t *stormTopology) settle(before []string) ([]string, error) {
	for i := range t.ifaces {
		if err := t.sw.setLink(fmt.Sprintf("p%d", i), i != 0); err != nil {
			return nil, err
		}
	}
	var want []string
	for _, l := range before {
		if !strings.Contains(l, " dev "+t.ifaces[0]+" ") && !strings.HasSuffix(l, " dev "+t.ifaces[0]) {
			want = append(want, l)
		}
	}
	return want, nil
}

func (t *stormTopology) carrierChanges() (int, error) {
	sum := 0
	for _, d := range t.ifaces {
		n, err := t.srv.carrierChanges(d)
		if err != nil {
			return 0, err
		}
		sum += n
	}
	return sum, nil
}

// stormScenario flaps carrier on three links as fast as netlink allows,
// with route withdrawal on, for linkbeat and then for ifplugd.
func stormScenario(ctx context.Context, log *slog.Logger, e *env, nss *namespaces) ([]bench.Scenario, error) {
	const nIfaces = 3
	dur := 10 * time.Second
	if e.quick {
		dur = 2 * time.Second
	}
	s := bench.Scenario{
		ID:            "flap-storm",
		Title:         fmt.Sprintf("Flap storm: carrier flapped as fast as possible on %d veth links for %v, routes withdrawn and restored", nIfaces, dur),
		Unit:          "events/s",
		LowerIsBetter: false,
		Anchor:        ifplugdName,
		Goal:          "final carrier state and routes correct after the storm (final_correct = 1)",
		Goals: []bench.Goal{
			{Text: "linkbeat final_correct = 1", Contender: linkbeatName, Stat: "final_correct", Op: ">=", Value: 1},
		},
	}
	for _, c := range []string{linkbeatName, ifplugdName} {
		fig, notes, err := stormRun(ctx, log, e, nss, nIfaces, dur, c)
		nss.closeAll()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c, err)
		}
		s.Contenders = append(s.Contenders, bench.Contender{Name: c, Figures: fig})
		s.Notes = append(s.Notes, notes...)
	}
	s.Notes = append(s.Notes,
		"events_per_s: carrier changes the tool acted on per second of storm (linkbeat: linkbeat_interface_carrier_changes_total; ifplugd: action script runs); kernel_changes_per_s: the devices' own carrier_changes counters. Both span the storm and the final settling.",
		"final_correct: after the storm s0 is left down and the others up; 1 if within 5 s the main table equals the starting one less s0's routes (and, for linkbeat, linkbeat_interface_carrier agrees), else 0.",
		"On this host linkbeat's carrier source is netlink (no fentry or kprobes), so the BPF ring buffer carries no carrier events and cannot drop any; linkwatch coalesces changes of one device between its runs, and linkbeat's counter-gap resync covers what netlink folded.",
		"ifplugd polls once a second, so it sees at most about one change per interface per second by design.",
	)
	return []bench.Scenario{s}, nil
}

func stormRun(ctx context.Context, log *slog.Logger, e *env, nss *namespaces, n int, dur time.Duration, contender string) (map[string]float64, []string, error) {
	t, err := newStormTopology(ctx, nss, n)
	if err != nil {
		return nil, nil, err
	}
	before, err := t.srv.routeLines()
	if err != nil {
		return nil, nil, err
	}
	var (
		d  *daemon
		ip *ifplugd
	)
	if contender == linkbeatName {
		if d, err = startLinkbeat(ctx, e, t.srv); err != nil {
			return nil, nil, err
		}
		defer d.stop()
	} else {
		if ip, err = startIfplugd(ctx, e, t.srv, t.ifaces, t.script()); err != nil {
			return nil, nil, err
		}
		defer ip.stop()
	}
	k0, err := t.carrierChanges()
	if err != nil {
		return nil, nil, err
	}
	var m0 metricsSnap
	scriptRuns0 := 0
	if d != nil {
		if m0, err = snapMetrics(ctx, d); err != nil {
			return nil, nil, err
		}
	} else {
		scriptRuns0 = ip.count("")
	}
	log.Info("flap storm", "contender", contender, "duration", dur)
	stop := make(chan struct{})
	go func() { sleep(ctx, dur); close(stop) }()
	all := make([]int, n)
	for i := range all {
		all[i] = i
	}
	toggles, err := t.flap(all, 0, stop)
	if err != nil {
		return nil, nil, err
	}
	want, err := t.settle(before)
	if err != nil {
		return nil, nil, err
	}
	var notes []string
	correct := 1.0
	if err := t.srv.waitRoutes(ctx, want, 5*time.Second); err != nil {
		correct = 0
		notes = append(notes, fmt.Sprintf("%s: final routes wrong: %v", contender, err))
	}
	k1, err := t.carrierChanges()
	if err != nil {
		return nil, nil, err
	}
	fig := map[string]float64{
		"toggles_per_s":        float64(toggles) / dur.Seconds(),
		"kernel_changes_per_s": float64(k1-k0) / dur.Seconds(),
	}
	if d != nil {
		m1, err := snapMetrics(ctx, d)
		if err != nil {
			return nil, nil, fmt.Errorf("daemon unresponsive after the storm: %w", err)
		}
		for i, dev := range t.ifaces {
			wantCarrier := 1.0
			if i == 0 {
				wantCarrier = 0
			}
			if got := m1.carrier[dev]; got != wantCarrier {
				correct = 0
				notes = append(notes, fmt.Sprintf("linkbeat: linkbeat_interface_carrier{interface=%q} is %v after the storm, want %v", dev, got, wantCarrier))
			}
		}
		fig["events_per_s"] = (m1.changes - m0.changes) / dur.Seconds()
		fig["ringbuf_drops"] = m1.drops - m0.drops
		fig["resyncs"] = m1.resyncs - m0.resyncs
		fig["route_withdrawals"] = m1.withdrawals - m0.withdrawals
		for r, v := range m1.resyncsBy {
			if dv := v - m0.resyncsBy[r]; dv > 0 {
				fig["resyncs_"+r] = dv
			}
		}
	} else {
		fig["events_per_s"] = float64(ip.count("")-scriptRuns0) / dur.Seconds()
	}
	fig["final_correct"] = correct
	return fig, notes, nil
}

// metricsSnap is what the storm scenarios read from linkbeat's metrics.
type metricsSnap struct {
	changes, drops, resyncs, withdrawals float64
	resyncsBy                            map[string]float64
	carrier                              map[string]float64
	reaction                             histogram
}

func snapMetrics(ctx context.Context, d *daemon) (metricsSnap, error) {
	mf, err := d.scrape(ctx)
	if err != nil {
		return metricsSnap{}, err
	}
	s := metricsSnap{
		changes:     metricSum(mf, "linkbeat_interface_carrier_changes_total", nil),
		drops:       metricSum(mf, "linkbeat_ringbuf_drops_total", nil),
		resyncs:     metricSum(mf, "linkbeat_resyncs_total", nil),
		withdrawals: metricSum(mf, "linkbeat_route_withdrawals_total", nil),
		resyncsBy:   map[string]float64{},
		carrier:     map[string]float64{},
		reaction:    histogramOf(mf, "linkbeat_reaction_latency_seconds"),
	}
	if f := mf["linkbeat_resyncs_total"]; f != nil {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" {
					s.resyncsBy[l.GetValue()] += m.GetCounter().GetValue()
				}
			}
		}
	}
	if f := mf["linkbeat_interface_carrier"]; f != nil {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "interface" {
					s.carrier[l.GetValue()] = m.GetGauge().GetValue()
				}
			}
		}
	}
	return s, nil
}

// scrapeScenario measures event handling latency during a flap storm
// with and without 50 parallel scrapes a second: scrapes must not slow
// the reaction.
func scrapeScenario(ctx context.Context, log *slog.Logger, e *env, nss *namespaces) ([]bench.Scenario, error) {
	const scrapers = 50
	const stormPeriod = 10 * time.Millisecond // 100 toggles/s per link, as the fault suite's storm
	phase, rounds := 5*time.Second, 2
	if e.quick {
		phase, rounds = 2*time.Second, 1
	}
	t, err := newStormTopology(ctx, nss, 3)
	if err != nil {
		return nil, err
	}
	d, err := startLinkbeat(ctx, e, t.srv)
	if err != nil {
		return nil, err
	}
	defer d.stop()
	w, err := watch(t.srv)
	if err != nil {
		return nil, err
	}
	defer w.close()
	probe, err := t.srv.ifindex("s0")
	if err != nil {
		return nil, err
	}

	const none, loaded = "no scrapes", "50 parallel scrapes/s"
	s := bench.Scenario{
		ID:            "metrics-under-load",
		Title:         "Metrics under load: cut → routes gone on a probe link during a 100 Hz flap storm on two others, with and without 50 parallel scrapes a second",
		Unit:          "ms",
		LowerIsBetter: true,
		Anchor:        none,
		Goal:          "with scrapes, p50 and p99 at most 2x the no-scrape case",
		Goals: []bench.Goal{
			{Text: "loaded p50 <= 2 × no-scrape p50", Contender: loaded, Stat: "p50", Op: "<=", Factor: 2},
			{Text: "loaded p99 <= 2 × no-scrape p99", Contender: loaded, Stat: "p99", Op: "<=", Factor: 2},
		},
		Contenders: []bench.Contender{{Name: none, Figures: map[string]float64{}}, {Name: loaded, Figures: map[string]float64{}}},
	}
	hist := map[string]histogram{}
	var scrapesOK, scrapeErrs atomic.Int64
	for r := 0; r < rounds; r++ {
		for _, c := range []string{none, loaded} {
			m0, err := snapMetrics(ctx, d)
			if err != nil {
				return nil, err
			}
			stop := make(chan struct{})
			var wg sync.WaitGroup
			var flapErr error
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, flapErr = t.flap([]int{1, 2}, stormPeriod, stop)
			}()
			if c == loaded {
				wg.Add(1)
				go func() {
					defer wg.Done()
					scrapeBursts(ctx, d, scrapers, stop, &scrapesOK, &scrapeErrs)
				}()
			}
			log.Info("metrics under load", "phase", c, "round", r)
			lat, err := probeCycles(ctx, t, w, probe, phase)
			close(stop)
			wg.Wait()
			if err != nil {
				return nil, err
			}
			if flapErr != nil {
				return nil, flapErr
			}
			m1, err := snapMetrics(ctx, d)
			if err != nil {
				return nil, err
			}
			ct := s.Contender(c)
			ct.Samples = append(ct.Samples, lat...)
			hist[c] = hist[c].plus(m1.reaction.since(m0.reaction))
			if err := t.sw.setLink("p1", true); err != nil {
				return nil, err
			}
			if err := t.sw.setLink("p2", true); err != nil {
				return nil, err
			}
		}
	}
	for _, c := range []string{none, loaded} {
		h := hist[c]
		f := s.Contender(c).Figures
		f["reactions"] = float64(h.count)
		f["hist_p50_ms"] = h.quantile(0.5) * 1e3
		f["hist_p99_ms"] = h.quantile(0.99) * 1e3
	}
	s.Contender(loaded).Figures["scrapes_ok"] = float64(scrapesOK.Load())
	s.Contender(loaded).Figures["scrape_errors"] = float64(scrapeErrs.Load())
	s.Notes = []string{
		fmt.Sprintf("%d rounds of %v per phase, alternating (no scrapes, scrapes, ...). The samples are this benchmark's own cut → route-notice times on the probe link, cut and restored in a loop; reactions/hist_p50_ms/hist_p99_ms are linkbeat's own linkbeat_reaction_latency_seconds (kernel event → routes changed) over every link in the same phases, quantiles interpolated inside the buckets like histogram_quantile.", rounds, phase),
		fmt.Sprintf("Scrapes: every second, %d concurrent GETs of /metrics over kept-alive connections, each body read in full and not parsed. The scrapers run on the same CPUs as the daemon, as a co-located Prometheus agent would.", scrapers),
	}
	return []bench.Scenario{s}, nil
}

// plus adds two histograms of the same buckets.
func (h histogram) plus(o histogram) histogram {
	if h.bounds == nil {
		return o
	}
	r := histogram{count: h.count + o.count, bounds: h.bounds, buckets: make([]uint64, len(h.buckets))}
	for i := range h.buckets {
		r.buckets[i] = h.buckets[i]
		if i < len(o.buckets) {
			r.buckets[i] += o.buckets[i]
		}
	}
	return r
}

// scrapeBursts starts n scrapes at once every second until stop closes.
func scrapeBursts(ctx context.Context, d *daemon, n int, stop <-chan struct{}, ok, failed *atomic.Int64) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		var wg sync.WaitGroup
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := d.fetch(ctx); err != nil {
					failed.Add(1)
				} else {
					ok.Add(1)
				}
			}()
		}
		wg.Wait()
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// probeCycles cuts and restores the probe link's carrier for dur and
// returns each cut's time to its routes being gone, in ms.
func probeCycles(ctx context.Context, t *stormTopology, w *watcher, ifindex int, dur time.Duration) ([]float64, error) {
	var lat []float64
	for end := time.Now().Add(dur); time.Now().Before(end); {
		w.drain()
		t0 := time.Now()
		if err := t.sw.setLink("p0", false); err != nil {
			return nil, err
		}
		tt, err := w.waitGone(ctx, ifindex, 5*time.Second)
		if err != nil {
			return nil, fmt.Errorf("probe link: %w", err)
		}
		lat = append(lat, ms(tt.routesGone.Sub(t0)))
		if err := t.sw.setLink("p0", true); err != nil {
			return nil, err
		}
		for back := time.Now().Add(5 * time.Second); ; {
			used, err := w.routeUses(ifindex)
			if err != nil {
				return nil, err
			}
			if used {
				break
			}
			if time.Now().After(back) {
				return nil, fmt.Errorf("probe link's routes not restored after 5 s")
			}
			time.Sleep(time.Millisecond)
		}
		sleep(ctx, 20*time.Millisecond)
	}
	return lat, nil
}
