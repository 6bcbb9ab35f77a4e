// Package bench holds the benchmark suite's result format: every scenario
// writes its raw samples into a Run, one JSON file per machine or guest
// kernel under bench/results, and the report tool (test/bench/report)
// turns the files of one `make bench` into bench/REPORT.md and its plots.
package bench

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Run is one results file: the scenarios measured on one kernel.
type Run struct {
	// Date is when the run started (RFC 3339).
	Date string `json:"date"`
	// Where says where the figures were taken: "host" or "vm".
	Where string `json:"where"`
	// Kernel is the kernel release the scenarios ran on.
	Kernel     string `json:"kernel"`
	HostKernel string `json:"host_kernel"`
	Machine    string `json:"machine"` // CPU model and count
	GoVersion  string `json:"go_version"`
	Commit     string `json:"commit"`
	// Quick marks a bench-quick run: a few trials, figures not meant to
	// be read.
	Quick     bool       `json:"quick"`
	Scenarios []Scenario `json:"scenarios"`
}

// Scenario is one measured question with its contenders side by side.
type Scenario struct {
	// ID is stable ("bond-outage", "route-failover-veth", ...).
	ID    string `json:"id"`
	Title string `json:"title"`
	// Unit of every sample: "ms", "us", "Mbit/s", ...
	Unit string `json:"unit"`
	// LowerIsBetter is false for throughput-like figures.
	LowerIsBetter bool `json:"lower_is_better"`
	// Anchor names the contender the others are compared with.
	Anchor string `json:"anchor"`
	// Goal is the goal in words, e.g. "linkbeat p50 <= anchor p50 / 20".
	Goal string `json:"goal,omitempty"`
	// Goals are the goal as checks the report can evaluate; a scenario
	// with Goal but no Goals is reported as "not evaluated".
	Goals      []Goal      `json:"goals,omitempty"`
	Contenders []Contender `json:"contenders"`
	Notes      []string    `json:"notes,omitempty"`
}

// Contender is one tool or configuration's samples.
type Contender struct {
	Name    string    `json:"name"`
	Samples []float64 `json:"samples"`
	// Figures are single values that are not distributions (RSS, wakeups,
	// drops, "final state correct" as 0/1, ...), by name.
	Figures map[string]float64 `json:"figures,omitempty"`
	// Trials is how many trials were planned, one sample each; 0 when
	// the count is not planned (a time window, a subset of trials).
	Trials int `json:"trials,omitempty"`
	// Failed says, one line a trial, why a planned trial gave no sample
	// (a timeout, a prober error). A check fails on any.
	Failed []string `json:"failed,omitempty"`
}

// IsCorrectness says whether a figure is a 0/1 "ended in the right
// state" figure, which a check requires to be 1.
func IsCorrectness(figure string) bool { return figure == "final_correct" }

// Goal is one checkable goal: Contender's Stat compared by Op with a
// bound, either Value or, when Factor is set, Factor times the anchor's
// same Stat ("linkbeat p50 <= anchor p50 / 20" is Factor 0.05).
type Goal struct {
	Text      string `json:"text"`
	Contender string `json:"contender"`
	// Stat is "min", "p50", "p99" or "max" of the samples, or the name
	// of one of the contender's Figures.
	Stat   string  `json:"stat"`
	Op     string  `json:"op"` // "<=" or ">="
	Value  float64 `json:"value,omitempty"`
	Factor float64 `json:"factor,omitempty"`
	// Of names the contender a Factor or Plus goal is relative to
	// (default: the scenario's anchor); Plus is added to its stat times
	// Factor (1 when only Plus is set): "p50 <= the notice's p50 + 0.5".
	Of   string  `json:"of,omitempty"`
	Plus float64 `json:"plus,omitempty"`
}

// Stats summarises samples.
type Stats struct {
	N                  int
	Min, P50, P99, Max float64
}

// Summarize computes nearest-rank percentiles; zero Stats for no samples.
func Summarize(samples []float64) Stats {
	if len(samples) == 0 {
		return Stats{}
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	rank := func(p float64) float64 {
		i := int(p*float64(len(s))+0.999999) - 1
		return s[max(0, min(i, len(s)-1))]
	}
	return Stats{N: len(s), Min: s[0], P50: rank(0.50), P99: rank(0.99), Max: s[len(s)-1]}
}

// Contender returns the named contender, or nil.
func (s *Scenario) Contender(name string) *Contender {
	for i := range s.Contenders {
		if s.Contenders[i].Name == name {
			return &s.Contenders[i]
		}
	}
	return nil
}

// Write stores r as dir/<date>-<where>-<kernel>.json and returns the path.
func (r *Run) Write(dir string) (string, error) {
	if r.Date == "" {
		r.Date = time.Now().UTC().Format(time.RFC3339)
	}
	t, err := time.Parse(time.RFC3339, r.Date)
	if err != nil {
		return "", fmt.Errorf("run date %q: %w", r.Date, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("results dir: %w", err)
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", fmt.Errorf("encode run: %w", err)
	}
	p := filepath.Join(dir, fmt.Sprintf("%s-%s-%s.json", t.Format("2006-01-02"), r.Where, r.Kernel))
	return p, os.WriteFile(p, append(b, '\n'), 0o644)
}

// Read loads one results file.
func Read(path string) (*Run, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read results: %w", err)
	}
	var r Run
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &r, nil
}

// Describe fills the fields that say where the figures came from — the
// host's kernel, its CPU model and count, the Go version and the commit
// of the checkout at repoDir — where they are empty.
func (r *Run) Describe(repoDir string) {
	if r.HostKernel == "" {
		b, _ := os.ReadFile("/proc/sys/kernel/osrelease")
		r.HostKernel = strings.TrimSpace(string(b))
	}
	if r.Machine == "" {
		r.Machine = fmt.Sprintf("%s × %d", cpuModel(), runtime.NumCPU())
	}
	if r.GoVersion == "" {
		r.GoVersion = runtime.Version()
	}
	if r.Commit == "" {
		// -dirty marks uncommitted changes.
		out, err := exec.Command("git", "-C", repoDir, "describe", "--always", "--dirty").Output()
		if err == nil {
			r.Commit = strings.TrimSpace(string(out))
		}
	}
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}
