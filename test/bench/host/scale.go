package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/linkbeat/linkbeat/test/bench"
)

// scaleTopology is a server with two links, sc0 (the one cut) and sc1, and
// n static /32 routes via sc0 plus n/2 ECMP /32 routes over both.
type scaleTopology struct {
	srv, sw *namespace
	n       int
	add     string // ip -batch file: every route
	cutDel  string // ip -batch file: what losing sc0 takes away
	putBack string // ip -batch file: cutDel undone
}

func newScaleTopology(nss *namespaces, tmp string, n int) (*scaleTopology, error) {
	srv, sw, _, err := nss.linkedPair("sc", "sp", 61, 2)
	if err != nil {
		return nil, err
	}
	t := &scaleTopology{srv: srv, sw: sw, n: n,
		add: filepath.Join(tmp, fmt.Sprintf("scale-add-%d", n)), cutDel: filepath.Join(tmp, fmt.Sprintf("scale-cut-%d", n)),
		putBack: filepath.Join(tmp, fmt.Sprintf("scale-back-%d", n))}
	var add, cut, back strings.Builder
	for i := range n {
		dst := fmt.Sprintf("100.%d.%d.%d/32", 64+i>>16, (i>>8)&255, i&255)
		fmt.Fprintf(&add, "route add %s via 10.61.0.1 dev sc0\n", dst)
		fmt.Fprintf(&cut, "route del %s via 10.61.0.1 dev sc0\n", dst)
		fmt.Fprintf(&back, "route add %s via 10.61.0.1 dev sc0\n", dst)
	}
	for i := range n / 2 {
		dst := fmt.Sprintf("101.%d.%d.%d/32", 64+i>>16, (i>>8)&255, i&255)
		fmt.Fprintf(&add, "route add %s nexthop via 10.61.0.1 dev sc0 nexthop via 10.61.1.1 dev sc1\n", dst)
		// Losing sc0 leaves the multipath route with its sc1 nexthop only.
		fmt.Fprintf(&cut, "route replace %s via 10.61.1.1 dev sc1\n", dst)
		fmt.Fprintf(&back, "route replace %s nexthop via 10.61.0.1 dev sc0 nexthop via 10.61.1.1 dev sc1\n", dst)
	}
	for f, b := range map[string]*strings.Builder{t.add: &add, t.cutDel: &cut, t.putBack: &back} {
		if err := os.WriteFile(f, []byte(b.String()), 0o644); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// batch times `ip -batch file` in the server namespace.
func (t *scaleTopology) batch(file string) (time.Duration, error) {
	start := time.Now()
	if out, err := exec.Command("ip", "-n", t.srv.name, "-batch", file).CombinedOutput(); err != nil {
		return 0, fmt.Errorf("ip -batch %s: %w: %.300s", filepath.Base(file), err, out)
	}
	return time.Since(start), nil
}

// flip sets the cut link's peer down or up and times it until the route
// count satisfies done.
func (t *scaleTopology) flip(ctx context.Context, rt *routeTracker, up bool, done func(int) bool, timeout time.Duration) (time.Duration, error) {
	state := map[bool]string{false: "down", true: "up"}[up]
	start := time.Now()
	if err := t.sw.ip("link", "set", "sp0", state); err != nil {
		return 0, err
	}
	at, err := rt.wait(ctx, done, timeout)
	if err != nil {
		return 0, err
	}
	return at.Sub(start), nil
}

// table is the server's whole IPv4 routing table, sorted, for comparing a
// restore with what was there before the cut.
func (t *scaleTopology) table() ([]string, error) {
	out, err := exec.Command("ip", "-n", t.srv.name, "-4", "route", "show", "table", "all").Output()
	if err != nil {
		return nil, fmt.Errorf("route dump: %w", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	slices.Sort(lines)
	return lines, nil
}

// scaleTrial is one measurement at one size.
type scaleTrial struct {
	floorWithdraw, floorRestore time.Duration
	withdraw, restore           time.Duration
	hwmKB                       int
	exact                       bool
}

func scaleRun(ctx context.Context, log *slog.Logger, e *env, nss *namespaces, n int) (scaleTrial, error) {
	var tr scaleTrial
	t, err := newScaleTopology(nss, e.tmp, n)
	if err != nil {
		return tr, err
	}
	defer nss.closeAll()
	if _, err := t.batch(t.add); err != nil {
		return tr, err
	}
	before, err := t.table()
	if err != nil {
		return tr, err
	}
	// The floor: the kernel's own batch doing what the cut needs, then
	// putting it back.
	if tr.floorWithdraw, err = t.batch(t.cutDel); err != nil {
		return tr, err
	}
	if tr.floorRestore, err = t.batch(t.putBack); err != nil {
		return tr, err
	}
	if again, err := t.table(); err != nil || !slices.Equal(again, before) {
		return tr, fmt.Errorf("the floor's own restore differs from the table before it (%v)", err)
	}

	d, err := startLinkbeat(ctx, e, t.srv, "--interfaces", "sc0,sc1")
	if err != nil {
		return tr, err
	}
	defer d.stop()
	idx, err := t.srv.ifindex("sc0")
	if err != nil {
		return tr, err
	}
	rt, err := trackRoutes(t.srv, idx)
	if err != nil {
		return tr, err
	}
	defer rt.close()
	want := n + n/2
	timeout := 10*time.Second + time.Duration(want)*time.Millisecond
	if _, err := rt.wait(ctx, func(c int) bool { return c == want }, timeout); err != nil {
		return tr, fmt.Errorf("initial route count: %w", err)
	}
	if tr.withdraw, err = t.flip(ctx, rt, false, func(c int) bool { return c == 0 }, timeout); err != nil {
		return tr, fmt.Errorf("withdrawal of %d+%d routes: %w", n, n/2, err)
	}
	if tr.restore, err = t.flip(ctx, rt, true, func(c int) bool { return c == want }, timeout); err != nil {
		return tr, fmt.Errorf("restore of %d+%d routes: %w", n, n/2, err)
	}
	st, err := readProcStat(d.pid())
	if err != nil {
		return tr, err
	}
	tr.hwmKB = st.hwmKB
	after, err := t.table()
	if err != nil {
		return tr, err
	}
	tr.exact = slices.Equal(after, before)
	if !tr.exact {
		log.Warn("route scale: the restored table differs", "routes", n, "before", len(before), "after", len(after))
	}
	return tr, nil
}

// scaleScenario measures withdrawal and restore of many routes on one
// dead link against the kernel's own ip -batch doing the same.
func scaleScenario(ctx context.Context, log *slog.Logger, e *env, nss *namespaces) ([]bench.Scenario, error) {
	sizes, trials := []int{1000, 10000, 100000}, 3
	if e.quick {
		sizes, trials = []int{1000, 10000}, 1
	}
	var out []bench.Scenario
	for _, n := range sizes {
		rssGoal := 40 + float64(n+n/2)/1024
		s := bench.Scenario{
			ID:    fmt.Sprintf("route-scale-%dk", n/1000),
			Title: fmt.Sprintf("Route scale: %d static routes on the cut link plus %d ECMP routes over it and a live link; cut → no route via the cut link", n, n/2),
			Unit:  "ms", LowerIsBetter: true, Anchor: "kernel ip -batch",
			Goal: fmt.Sprintf("linkbeat's withdrawal p50 <= 2 × the kernel's batch; peak RSS <= 40 MB + 1 KB per route (%.0f MB)", rssGoal),
			Goals: []bench.Goal{
				{Text: "withdrawal p50 <= 2 × ip -batch p50", Contender: "linkbeat", Stat: "p50", Op: "<=", Factor: 2},
				{Text: fmt.Sprintf("peak RSS <= %.0f MB", rssGoal), Contender: "linkbeat", Stat: "rss_peak_mb", Op: "<=", Value: rssGoal},
				{Text: "restored table identical", Contender: "linkbeat", Stat: "final_correct", Op: ">=", Value: 1},
			},
			Contenders: []bench.Contender{{Name: "kernel ip -batch", Trials: trials, Figures: map[string]float64{}},
				{Name: "linkbeat", Trials: trials, Figures: map[string]float64{}}},
		}
		floor, lb := s.Contender("kernel ip -batch"), s.Contender("linkbeat")
		var floorRestore, restore []float64
		exact, hwm := 1.0, 0
		for i := range trials {
			log.Info("route scale", "routes", n, "ecmp", n/2, "trial", i)
			tr, err := scaleRun(ctx, log, e, nss, n)
			if err != nil {
				return nil, err
			}
			floor.Samples = append(floor.Samples, ms(tr.floorWithdraw))
			lb.Samples = append(lb.Samples, ms(tr.withdraw))
			floorRestore = append(floorRestore, ms(tr.floorRestore))
			restore = append(restore, ms(tr.restore))
			hwm = max(hwm, tr.hwmKB)
			if !tr.exact {
				exact = 0
			}
		}
		floor.Figures["restore_p50_ms"] = bench.Summarize(floorRestore).P50
		lb.Figures["restore_p50_ms"] = bench.Summarize(restore).P50
		lb.Figures["rss_peak_mb"] = float64(hwm) / 1024
		lb.Figures["final_correct"] = exact
		s.Notes = append(s.Notes,
			fmt.Sprintf("%d trials. The floor is `ip -batch` in the same namespace deleting the static routes and replacing each ECMP route by its live nexthop, then adding everything back; its restore time is restore_p50_ms.", trials),
			"linkbeat's withdrawal is timed from the `ip link set down` of the peer to the route notice after which no route of the set uses sc0, directly or as a nexthop (counted from the kernel's own notices, no dump per check); its restore from the peer's `up` to the notice that brings the last one back. rss_peak_mb is the daemon's VmHWM after both; final_correct is 1 when the whole table after the restore equals the table before the cut.",
			"The daemon runs with its defaults, its state directory on a tmpfs as /run is in a deployment.")
		out = append(out, s)
	}
	return out, nil
}
