package main

import (
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/linkbeat/linkbeat/test/bench"
)

func fixtures(t *testing.T) []*bench.Run {
	t.Helper()
	runs, err := loadRuns([]string{"testdata"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 2 || runs[0].Where != "host" || runs[1].Where != "vm" {
		t.Fatalf("fixtures: want host then vm, got %d runs", len(runs))
	}
	return runs
}

func scenario(t *testing.T, r *bench.Run, id string) *bench.Scenario {
	t.Helper()
	for i := range r.Scenarios {
		if r.Scenarios[i].ID == id {
			return &r.Scenarios[i]
		}
	}
	t.Fatalf("fixture has no scenario %s", id)
	return nil
}

func TestStatAndRatio(t *testing.T) {
	runs := fixtures(t)
	s := scenario(t, runs[0], "route-failover-seed-veth")
	lb := s.Contender("linkbeat")
	for _, c := range []struct {
		stat string
		want float64
	}{{"min", 1}, {"p50", 3}, {"p99", 5}, {"max", 5}} {
		if got, ok := stat(lb, c.stat); !ok || got != c.want {
			t.Errorf("linkbeat %s = %v, %v; want %v", c.stat, got, ok, c.want)
		}
	}
	if _, ok := stat(lb, "rss_mb"); ok {
		t.Error("a figure the contender does not have was found")
	}
	if r, ok := ratio(s, lb); !ok || r != 3.0/500 {
		t.Errorf("ratio = %v, %v; want 3/500", r, ok)
	}
	if got := ratioText(s, lb); got != "0.006× (166.7× faster)" {
		t.Errorf("ratio text %q", got)
	}
	if got := ratioText(s, s.Contender("ifplugd 0.28")); got != "anchor" {
		t.Errorf("the anchor's ratio text is %q", got)
	}
	// Higher is better: a plain ratio, no "faster".
	d := scenario(t, runs[0], "datapath-tcp")
	if got := ratioText(d, d.Contender("with linkbeat")); got != "0.980×" {
		t.Errorf("throughput ratio text %q", got)
	}
	// No samples (figures only): no ratio.
	i := scenario(t, runs[0], "idle-cost")
	if _, ok := ratio(i, i.Contender("linkbeat")); ok {
		t.Error("a ratio for a contender without samples")
	}
}

func TestEvaluateGoals(t *testing.T) {
	runs := fixtures(t)
	for _, c := range []struct {
		run             int
		id              string
		goal            int
		measured, bound float64
		met             bool
	}{
		{0, "route-failover-seed-veth", 0, 3, 5, true},  // factor: 0.01 × ifplugd's p50 of 500
		{0, "route-failover-seed-veth", 1, 5, 2, false}, // absolute: p99 5 ms > 2 ms
		{0, "idle-cost", 0, 25.5, 40, true},             // a figure
		{0, "datapath-tcp", 0, 9.8, 9.7, true},          // >=, factor
		{1, "bond-outage", 0, 7, 5, false},              // 1/20 of miimon's 100
	} {
		s := scenario(t, runs[c.run], c.id)
		r := evaluate(s, s.Goals[c.goal])
		if r.Why != "" || r.Measured != c.measured || r.Met != c.met || r.Bound < c.bound-1e-9 || r.Bound > c.bound+1e-9 {
			t.Errorf("%s goal %d: %+v; want measured %v bound %v met %v", c.id, c.goal, r, c.measured, c.bound, c.met)
		}
	}
	s := scenario(t, runs[0], "route-failover-seed-veth")
	for _, g := range []bench.Goal{
		{Contender: "nobody", Stat: "p50", Op: "<=", Value: 1},
		{Contender: "linkbeat", Stat: "rss_mb", Op: "<=", Value: 1},
		{Contender: "linkbeat", Stat: "p50", Op: "<", Value: 1},
	} {
		if r := evaluate(s, g); r.Why == "" || r.Met {
			t.Errorf("goal %+v was judged: %+v", g, r)
		}
	}
	// Relative to another contender than the anchor, plus an offset.
	plus := bench.Goal{Contender: "linkbeat", Stat: "p50", Op: "<=", Of: "ifplugd 0.28", Plus: 0.5}
	if r := evaluate(s, plus); r.Why != "" || r.Bound != 500.5 || !r.Met {
		t.Errorf("p50 <= ifplugd's p50 + 0.5: %+v, want bound 500.5, met", r)
	}
	plus.Of = "nobody"
	if r := evaluate(s, plus); r.Why == "" || r.Met {
		t.Errorf("a goal relative to a missing contender was judged: %+v", r)
	}
	noAnchor := *s
	noAnchor.Anchor = "missing"
	if r := evaluate(&noAnchor, s.Goals[0]); r.Why == "" || r.Met {
		t.Errorf("a factor goal without its anchor was judged: %+v", r)
	}
}

func TestLoadRunsKeepsThisRun(t *testing.T) {
	dir := t.TempDir()
	write := func(date, kernel string, n int) {
		r := &bench.Run{Date: date, Where: "vm", Kernel: kernel}
		for i := 0; i < n; i++ {
			r.Scenarios = append(r.Scenarios, bench.Scenario{ID: "s"})
		}
		// Runs of the same day share a file name: keep them apart.
		sub := filepath.Join(dir, strings.ReplaceAll(date, ":", ""))
		if _, err := r.Write(sub); err != nil {
			t.Fatal(err)
		}
	}
	write("2026-11-20T09:00:00Z", "6.1", 1)
	write("2026-11-21T09:00:00Z", "6.1", 2)
	write("2026-11-21T09:30:00Z", "6.1", 3)
	write("2026-11-21T09:10:00Z", "6.12", 4)
	paths, _ := filepath.Glob(filepath.Join(dir, "*"))
	runs, err := loadRuns(paths, "2026-11-21T09:00:00Z")
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	for _, r := range runs {
		got = append(got, len(r.Scenarios))
	}
	// 6.1: the latest of the two since the cut; 6.12: its only one.
	if !slices.Equal(got, []int{3, 4}) {
		t.Fatalf("runs kept: %v, want [3 4]", got)
	}
}

// A run of some scenarios (-only) replaces those of an earlier run of the
// same kernel and leaves the others, each shown with its own run.
func TestLoadRunsMergesPartialRuns(t *testing.T) {
	dir := t.TempDir()
	write := func(date string, ids ...string) {
		r := &bench.Run{Date: date, Where: "host", Kernel: "6.18", Commit: date}
		for _, id := range ids {
			r.Scenarios = append(r.Scenarios, bench.Scenario{ID: id})
		}
		if _, err := r.Write(filepath.Join(dir, strings.ReplaceAll(date, ":", ""))); err != nil {
			t.Fatal(err)
		}
	}
	write("2026-11-21T09:00:00Z", "a", "b", "c")
	write("2026-11-22T09:00:00Z", "b")
	write("2026-11-23T09:00:00Z", "c", "d")
	paths, _ := filepath.Glob(filepath.Join(dir, "*"))
	runs, err := loadRuns(paths, "")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range runs {
		for _, s := range r.Scenarios {
			got = append(got, r.Commit[:10]+":"+s.ID)
		}
	}
	slices.Sort(got)
	want := []string{"2026-11-21:a", "2026-11-22:b", "2026-11-23:c", "2026-11-23:d"}
	if !slices.Equal(got, want) {
		t.Fatalf("scenarios kept: %v, want %v", got, want)
	}
}

func TestCheck(t *testing.T) {
	runs := fixtures(t)
	ids := map[string][]string{"host": {"route-failover-seed-veth", "idle-cost"}, "vm": {"bond-outage"}}
	if p := check(runs, map[string]int{"host": 1, "vm": 1}, ids); len(p) != 0 {
		t.Fatalf("complete fixtures failed the check: %v", p)
	}
	p := check(runs, map[string]int{"host": 1, "vm": 2}, map[string][]string{"host": {"flap-storm"}})
	if len(p) != 2 || !strings.Contains(p[0], "flap-storm missing") || !strings.Contains(p[1], "1 results file(s) from vm, want 2") {
		t.Fatalf("problems: %q", p)
	}
	empty := *runs[0]
	empty.Scenarios = []bench.Scenario{{ID: "idle-cost", Contenders: []bench.Contender{{Name: "linkbeat"}}}}
	p = check([]*bench.Run{&empty}, nil, nil)
	if len(p) != 1 || !strings.Contains(p[0], `contender "linkbeat" has neither samples nor figures`) {
		t.Fatalf("problems: %q", p)
	}
}

// TestCheckJudgesSoundness: figures that are present but unsound fail
// the check, each with a message naming the scenario and contender.
func TestCheckJudgesSoundness(t *testing.T) {
	for _, c := range []struct {
		name string
		c    bench.Contender
		want string // "" for no problem
	}{
		{"every planned trial", bench.Contender{Name: "lb", Samples: []float64{1, 2, 3}, Trials: 3}, ""},
		{"unplanned samples", bench.Contender{Name: "lb", Samples: []float64{1}}, ""},
		{"a trial short", bench.Contender{Name: "lb", Samples: []float64{1, 2}, Trials: 3}, `contender "lb" has 2 samples of 3 trials planned`},
		{"no samples of planned trials", bench.Contender{Name: "lb", Figures: map[string]float64{"x": 1}, Trials: 3}, "has 0 samples of 3 trials planned"},
		{"a failed trial", bench.Contender{Name: "lb", Samples: []float64{1, 2}, Trials: 2, Failed: []string{"trial 3: prober: EBADF"}}, "failed a trial: trial 3: prober: EBADF"},
		{"NaN sample", bench.Contender{Name: "lb", Samples: []float64{1, math.NaN()}}, "sample 1 is NaN"},
		{"infinite figure", bench.Contender{Name: "lb", Figures: map[string]float64{"hist_p99_ms": math.Inf(1)}}, "figure hist_p99_ms is +Inf"},
		{"storm wrong at the end", bench.Contender{Name: "lb", Figures: map[string]float64{"final_correct": 0, "events_per_s": 10}}, "figure final_correct is 0, want 1"},
		{"storm right", bench.Contender{Name: "lb", Figures: map[string]float64{"final_correct": 1}}, ""},
		{"timings unjudged", bench.Contender{Name: "lb", Samples: []float64{0, 1e9}, Figures: map[string]float64{"hist_p50_ms": 0}}, ""},
	} {
		r := &bench.Run{Where: "host", Kernel: "k", Scenarios: []bench.Scenario{{ID: "s", Contenders: []bench.Contender{c.c}}}}
		p := check([]*bench.Run{r}, nil, nil)
		switch {
		case c.want == "" && len(p) != 0:
			t.Errorf("%s: problems %q, want none", c.name, p)
		case c.want != "" && (len(p) != 1 || !strings.Contains(p[0], c.want) || !strings.HasPrefix(p[0], "host k: scenario s, contender \"lb\"")):
			t.Errorf("%s: problems %q, want one with %q", c.name, p, c.want)
		}
	}
}

func TestWriteReportAndPlots(t *testing.T) {
	runs := fixtures(t)
	dir := t.TempDir()
	stale := filepath.Join(dir, plotPrefix+"old.svg")
	if err := os.WriteFile(stale, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	plots, err := writePlots(dir, runs)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("the last report's plot is still there: %v", err)
	}
	// Samples: a distribution; time units: also a CDF.
	for key, want := range map[string][2]bool{
		"host-6-18-0-test-route-failover-seed-veth": {true, true},
		"host-6-18-0-test-datapath-tcp":             {true, false},
		"vm-6-1-0-test-bond-outage":                 {true, true},
	} {
		ref := plots[key]
		for i, f := range []string{ref.box, ref.cdf} {
			if (f != "") != want[i] {
				t.Errorf("%s: plot %d is %q", key, i, f)
				continue
			}
			if f == "" {
				continue
			}
			b, err := os.ReadFile(filepath.Join(dir, f))
			if err != nil || !strings.Contains(string(b), "<svg") {
				t.Errorf("%s: %s is not an SVG: %v", key, f, err)
			}
		}
	}
	if _, ok := plots["host-6-18-0-test-idle-cost"]; ok {
		t.Error("a plot for a scenario without samples")
	}
	var b strings.Builder
	if err := writeReport(&b, runs, plots); err != nil {
		t.Fatal(err)
	}
	md := b.String()
	for _, want := range []string{
		"| host | 6.18.0-test | 2026-11-21T10:00:00Z | Test CPU × 2 | 6.18.0-test | go1.26.8 | abc1234 |",
		"| linkbeat | 5 | 1 | 3 | 5 | 5 | 0.006× (166.7× faster) |",
		"linkbeat p99 <= 2 ms | 5 ms | <= 2 ms | **not met** |",
		"linkbeat p50 <= ifplugd p50 / 100 | 3 ms | <= 5 ms | met |",
		"linkbeat (fentry) p50 <= miimon-alone p50 / 20 | 7 ms | <= 5 ms | **not met** |",
		"| contender | rss_mb | wakeups_per_s |",
		"| ifplugd 0.28 | 6.700 | 4 |",
		"What TCG does to the VM figures",
		"](" + plots["vm-6-1-0-test-bond-outage"].cdf + ")",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if strings.Contains(md, "Quick run") {
		t.Error("a full run reported as quick")
	}
}
