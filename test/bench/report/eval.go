package main

import (
	"cmp"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/linkbeat/linkbeat/test/bench"
)

// stat is a contender's named figure: min, p50, p99 or max of its
// samples, or one of its Figures.
func stat(c *bench.Contender, name string) (float64, bool) {
	if len(c.Samples) > 0 {
		st := bench.Summarize(c.Samples)
		switch name {
		case "min":
			return st.Min, true
		case "p50":
			return st.P50, true
		case "p99":
			return st.P99, true
		case "max":
			return st.Max, true
		}
	}
	v, ok := c.Figures[name]
	return v, ok
}

// goalResult is one goal judged against the figures.
type goalResult struct {
	Goal     bench.Goal
	Measured float64
	Bound    float64
	Met      bool
	// Why is set when the goal could not be judged (and so is not met).
	Why string
}

func evaluate(s *bench.Scenario, g bench.Goal) goalResult {
	r := goalResult{Goal: g}
	c := s.Contender(g.Contender)
	if c == nil {
		r.Why = fmt.Sprintf("contender %q not measured", g.Contender)
		return r
	}
	v, ok := stat(c, g.Stat)
	if !ok {
		r.Why = fmt.Sprintf("%s has no %s", g.Contender, g.Stat)
		return r
	}
	r.Measured = v
	r.Bound = g.Value
	if g.Factor != 0 || g.Plus != 0 {
		of := cmp.Or(g.Of, s.Anchor)
		a := s.Contender(of)
		if a == nil {
			r.Why = fmt.Sprintf("reference %q not measured", of)
			return r
		}
		av, ok := stat(a, g.Stat)
		if !ok {
			r.Why = fmt.Sprintf("reference %s has no %s", of, g.Stat)
			return r
		}
		r.Bound = cmp.Or(g.Factor, 1)*av + g.Plus
	}
	switch g.Op {
	case "<=":
		r.Met = v <= r.Bound
	case ">=":
		r.Met = v >= r.Bound
	default:
		r.Why = fmt.Sprintf("unknown comparison %q", g.Op)
	}
	return r
}

// ratio is a contender's p50 over the anchor's, and false when either is
// missing or the anchor's is 0.
func ratio(s *bench.Scenario, c *bench.Contender) (float64, bool) {
	a := s.Contender(s.Anchor)
	if a == nil || len(a.Samples) == 0 || len(c.Samples) == 0 {
		return 0, false
	}
	ap := bench.Summarize(a.Samples).P50
	if ap == 0 {
		return 0, false
	}
	return bench.Summarize(c.Samples).P50 / ap, true
}

// ratioText says how a contender compares with the anchor in words the
// reader does not have to invert: "412× faster" for a time, "0.98×" for
// a rate.
func ratioText(s *bench.Scenario, c *bench.Contender) string {
	if c.Name == s.Anchor {
		return "anchor"
	}
	r, ok := ratio(s, c)
	if !ok {
		return "–"
	}
	txt := fmt.Sprintf("%s×", num(r))
	if s.LowerIsBetter && r > 0 {
		switch {
		case r < 1:
			txt += fmt.Sprintf(" (%s× faster)", num(1/r))
		case r > 1:
			txt += fmt.Sprintf(" (%s× slower)", num(r))
		}
	}
	return txt
}

// num formats with three significant digits, without exponents for the
// ranges benchmarks produce.
func num(v float64) string {
	switch a := math.Abs(v); {
	case v == math.Trunc(v) && a < 1e9:
		return fmt.Sprintf("%.0f", v) // counts, and values that are whole
	case a >= 1000:
		return fmt.Sprintf("%.0f", v)
	case a >= 100:
		return fmt.Sprintf("%.1f", v)
	case a >= 10:
		return fmt.Sprintf("%.2f", v)
	case a >= 0.01:
		return fmt.Sprintf("%.3f", v)
	default:
		return fmt.Sprintf("%.2g", v)
	}
}

// loadRuns reads the results files among paths (files, or directories of
// *.json) whose run started at or after since (RFC 3339; "" for all).
// When a where/kernel appears more than once, each scenario comes from the
// latest run that has it (a run of a few scenarios, `-only`, does not hide
// the others); a run left with none is dropped. Each run keeps its own
// date, commit and load in the report.
func loadRuns(paths []string, since string) ([]*bench.Run, error) {
	var files []string
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("results: %w", err)
		}
		if !st.IsDir() {
			files = append(files, p)
			continue
		}
		m, err := filepath.Glob(filepath.Join(p, "*.json"))
		if err != nil {
			return nil, err
		}
		files = append(files, m...)
	}
	byKey := map[string][]*bench.Run{}
	for _, f := range files {
		r, err := bench.Read(f)
		if err != nil {
			return nil, err
		}
		// RFC 3339 in UTC sorts as text.
		if since != "" && r.Date < since {
			continue
		}
		key := r.Where + "/" + r.Kernel
		byKey[key] = append(byKey[key], r)
	}
	var runs []*bench.Run
	for _, group := range byKey {
		runs = append(runs, newestScenarios(group)...)
	}
	// Host first, then the guests by kernel.
	slices.SortFunc(runs, func(a, b *bench.Run) int {
		if a.Where != b.Where {
			if a.Where == "host" {
				return -1
			}
			if b.Where == "host" {
				return 1
			}
			return strings.Compare(a.Where, b.Where)
		}
		return cmp.Or(strings.Compare(a.Kernel, b.Kernel), strings.Compare(b.Date, a.Date))
	})
	return runs, nil
}

// check says what makes a run set fail "every scenario produced
// figures": each expected where with its number of kernels, each
// expected scenario of it, and for every contender samples or figures,
// as many samples as trials planned, no failed trial, finite values and
// correctness figures of 1. Timing values are not judged.
func check(runs []*bench.Run, expect map[string]int, ids map[string][]string) []string {
	var problems []string
	count := map[string]int{}
	for _, r := range runs {
		count[r.Where]++
		have := map[string]bool{}
		for _, s := range r.Scenarios {
			have[s.ID] = true
			at := fmt.Sprintf("%s %s: scenario %s", r.Where, r.Kernel, s.ID)
			if len(s.Contenders) == 0 {
				problems = append(problems, at+" has no contenders")
			}
			for _, c := range s.Contenders {
				for _, p := range checkContender(&c) {
					problems = append(problems, fmt.Sprintf("%s, contender %q %s", at, c.Name, p))
				}
			}
		}
		for _, id := range ids[r.Where] {
			if !have[id] {
				problems = append(problems, fmt.Sprintf("%s %s: scenario %s missing", r.Where, r.Kernel, id))
			}
		}
	}
	var wheres []string
	for w := range expect {
		wheres = append(wheres, w)
	}
	slices.Sort(wheres)
	for _, w := range wheres {
		if count[w] < expect[w] {
			problems = append(problems, fmt.Sprintf("%d results file(s) from %s, want %d", count[w], w, expect[w]))
		}
	}
	return problems
}

// checkContender is check for one contender: what is wrong with its
// figures, each as the end of a sentence naming it.
func checkContender(c *bench.Contender) []string {
	var problems []string
	if len(c.Samples) == 0 && len(c.Figures) == 0 {
		problems = append(problems, "has neither samples nor figures")
	}
	if c.Trials > 0 && len(c.Samples) != c.Trials {
		problems = append(problems, fmt.Sprintf("has %d samples of %d trials planned", len(c.Samples), c.Trials))
	}
	for _, f := range c.Failed {
		problems = append(problems, "failed a trial: "+f)
	}
	for i, v := range c.Samples {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			problems = append(problems, fmt.Sprintf("sample %d is %v", i, v))
		}
	}
	names := slices.Sorted(maps.Keys(c.Figures))
	for _, k := range names {
		v := c.Figures[k]
		switch {
		case math.IsNaN(v) || math.IsInf(v, 0):
			problems = append(problems, fmt.Sprintf("figure %s is %v", k, v))
		case bench.IsCorrectness(k) && v != 1:
			problems = append(problems, fmt.Sprintf("figure %s is %v, want 1", k, v))
		}
	}
	return problems
}

// newestScenarios keeps, of runs of one where/kernel, each scenario from
// the latest run that measured it.
func newestScenarios(group []*bench.Run) []*bench.Run {
	slices.SortFunc(group, func(a, b *bench.Run) int { return strings.Compare(b.Date, a.Date) })
	seen := map[string]bool{}
	var out []*bench.Run
	for _, r := range group {
		var kept []bench.Scenario
		for _, s := range r.Scenarios {
			if !seen[s.ID] {
				kept = append(kept, s)
			}
		}
		for _, s := range r.Scenarios {
			seen[s.ID] = true
		}
		if len(kept) > 0 {
			r.Scenarios = kept
			out = append(out, r)
		}
	}
	return out
}
