package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/linkbeat/linkbeat/test/bench"
)

// idleScenario runs linkbeat and ifplugd side by side on quiet links and
// reads their CPU time, context switches and memory from /proc.
func idleScenario(ctx context.Context, log *slog.Logger, e *env, nss *namespaces) ([]bench.Scenario, error) {
	const nIfaces = 4
	window, settle := 60*time.Second, 5*time.Second
	if e.quick {
		window, settle = 10*time.Second, 2*time.Second
	}
	srv, _, ifaces, err := nss.linkedPair("eth", "sw", 20, nIfaces)
	if err != nil {
		return nil, err
	}
	d, err := startLinkbeat(ctx, e, srv)
	if err != nil {
		return nil, err
	}
	defer d.stop()
	ip, err := startIfplugd(ctx, e, srv, ifaces, "")
	if err != nil {
		return nil, err
	}
	defer ip.stop()
	sleep(ctx, settle)

	contenders := []struct {
		name string
		pids []int
	}{{linkbeatName, []int{d.pid()}}}
	var ipPids []int
	for _, p := range ip.procs {
		ipPids = append(ipPids, p.pid())
	}
	contenders = append(contenders, struct {
		name string
		pids []int
	}{ifplugdName, ipPids})

	read := func(pids []int) (procStat, error) {
		var sum procStat
		for _, pid := range pids {
			st, err := readProcStat(pid)
			if err != nil {
				return sum, err
			}
			sum.cpu += st.cpu
			sum.switches += st.switches
			sum.rssKB += st.rssKB
			sum.hwmKB += st.hwmKB
			sum.threads += st.threads
		}
		return sum, nil
	}
	first := make([]procStat, len(contenders))
	prev := make([]procStat, len(contenders))
	samples := make([][]float64, len(contenders))
	for k, c := range contenders {
		if first[k], err = read(c.pids); err != nil {
			return nil, err
		}
		prev[k] = first[k]
	}
	log.Info("idle", "window", window)
	start := time.Now()
	for i := 1; time.Since(start) < window; i++ {
		sleep(ctx, time.Until(start.Add(time.Duration(i)*time.Second)))
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		for k, c := range contenders {
			st, err := read(c.pids)
			if err != nil {
				return nil, err
			}
			samples[k] = append(samples[k], float64(st.switches-prev[k].switches))
			prev[k] = st
		}
	}
	elapsed := time.Since(start).Seconds()
	s := bench.Scenario{
		ID:            "idle-cost",
		Title:         fmt.Sprintf("Idle cost on %d quiet veth links: context switches (wakeups) per second", nIfaces),
		Unit:          "wakeups/s",
		LowerIsBetter: true,
		Anchor:        ifplugdName,
		Goal:          "no polling wakeups from linkbeat (fewer than 1 wakeup/s on average: a poll of 1 Hz or faster would exceed it), RSS <= 40 MB",
		Goals: []bench.Goal{
			{Text: "linkbeat wakeups_per_s < 1", Contender: linkbeatName, Stat: "wakeups_per_s", Op: "<=", Value: 0.999},
			{Text: "linkbeat rss_mb <= 40", Contender: linkbeatName, Stat: "rss_mb", Op: "<=", Value: 40},
		},
		Notes: []string{
			fmt.Sprintf("Both idle at once for %.0f s after %v of settling; linkbeat with its defaults (every interface, routes on, metrics served but not scraped), ifplugd with the seed's flags, one process per interface (%d), figures summed.", elapsed, settle, nIfaces),
			"Wakeups are voluntary plus involuntary context switches of every thread (/proc/PID/task/*/status), per 1 s window; CPU is utime+stime from /proc/PID/stat (10 ms resolution); RSS and its peak are VmRSS and VmHWM.",
		},
	}
	for k, c := range contenders {
		last := prev[k]
		s.Contenders = append(s.Contenders, bench.Contender{
			Name:    c.name,
			Samples: samples[k],
			Figures: map[string]float64{
				"wakeups_per_s":  float64(last.switches-first[k].switches) / elapsed,
				"cpu_ms_per_min": float64((last.cpu - first[k].cpu).Milliseconds()) * 60 / elapsed,
				"rss_mb":         float64(last.rssKB) / 1024,
				"hwm_mb":         float64(last.hwmKB) / 1024,
				"processes":      float64(len(c.pids)),
				"threads":        float64(last.threads),
			},
		})
	}
	return []bench.Scenario{s}, nil
}
