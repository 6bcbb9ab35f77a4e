package vm

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/linkbeat/linkbeat/test/bench"
	"github.com/linkbeat/linkbeat/test/vm/guest/vmctl"
)

// TestVMBench runs the guest benchmarks (guest/bench_test.go: TestBench*)
// on each selected kernel and writes one results file per kernel in the
// format of test/bench, for the report. `make bench-vm` and `make
// bench-vm-quick` run it.
//
// Environment (besides TestVM's LINKBEAT_VM_KERNELS, LINKBEAT_VM_RUN,
// LINKBEAT_VM_TIMEOUT and LINKBEAT_BIN):
//
//	LINKBEAT_VM_BENCH=full|quick   run (otherwise skipped): full is
//	                               enough trials for the published figures,
//	                               quick a few trials to keep the code working
//	LINKBEAT_BENCH_OUT=dir         where the results go (default
//	                               bench/results; relative to the checkout)
func TestVMBench(t *testing.T) {
	mode := os.Getenv("LINKBEAT_VM_BENCH")
	var timeout time.Duration
	switch mode {
	case "":
		t.Skip("VM benchmarks are off; run them with `make bench-vm` or `make bench-vm-quick`")
	case "full":
		timeout = 75 * time.Minute
	case "quick":
		timeout = 14 * time.Minute
	default:
		t.Fatalf("LINKBEAT_VM_BENCH=%q: want full or quick", mode)
	}
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	outDir := os.Getenv("LINKBEAT_BENCH_OUT")
	if outDir == "" {
		outDir = filepath.Join("bench", "results")
	}
	if !filepath.IsAbs(outDir) {
		outDir = filepath.Join(root, outDir)
	}
	env := setupVM(t, true, timeout)
	one, cables := benchSplit(guestRunRegexp())
	date := time.Now().UTC().Format(time.RFC3339)
	for _, spec := range env.specs {
		t.Run("linux-"+spec.Series, func(t *testing.T) {
			var results []vmctl.Result
			for _, b := range []struct {
				run    *string
				skip   string
				cables bool
			}{{one, "Cables", false}, {cables, "", true}} {
				if b.run == nil {
					continue
				}
				res := env.boot(t, spec, env.guestArgs(*b.run, b.skip, "-linkbeat.bench="+mode), false, b.cables)
				rs, err := readResults(res.Results)
				if err != nil {
					t.Fatal(err)
				}
				results = append(results, rs...)
			}
			if len(results) == 0 {
				t.Fatal("the guest wrote no benchmark figures to its results port")
			}
			r := bench.Run{Date: date, Where: "vm", Kernel: results[0].Kernel, Quick: mode == "quick"}
			r.Describe(root)
			r.Scenarios = mergeScenarios(results)
			path, err := r.Write(outDir)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range r.Scenarios {
				t.Logf("%s", summary(s))
			}
			t.Logf("results: %s", path)
		})
	}
}

// readResults reads the guest's results port output: one vmctl.Result a
// line.
func readResults(path string) ([]vmctl.Result, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("guest results: %w", err)
	}
	defer f.Close()
	var out []vmctl.Result
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var r vmctl.Result
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			return nil, fmt.Errorf("%s: %w: %.200s", path, err, line)
		}
		out = append(out, r)
	}
	return out, sc.Err()
}

// mergeScenarios keeps the scenarios in the order the guest wrote them; a
// scenario written in several parts (one contender each) becomes one.
func mergeScenarios(results []vmctl.Result) []bench.Scenario {
	var out []bench.Scenario
	at := map[string]int{}
	for _, r := range results {
		s := r.Scenario
		i, ok := at[s.ID]
		if !ok {
			at[s.ID] = len(out)
			out = append(out, s)
			continue
		}
		out[i].Contenders = append(out[i].Contenders, s.Contenders...)
		out[i].Notes = append(out[i].Notes, s.Notes...)
	}
	return out
}

// summary is one scenario in a few lines, for the test log.
func summary(s bench.Scenario) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s (%s, anchor %s):", s.ID, s.Unit, s.Anchor)
	for _, c := range s.Contenders {
		st := bench.Summarize(c.Samples)
		fmt.Fprintf(&b, "\n  %-18s n=%-3d min %.3f p50 %.3f p99 %.3f max %.3f", c.Name, st.N, st.Min, st.P50, st.P99, st.Max)
	}
	return b.String()
}

// benchSplit is cablesSplit for the benchmarks: by default every guest
// TestBench*, those named *Cables* in the two-cable boot, whose figures
// join the kernel's results file.
func benchSplit(run string) (one, cables *string) {
	if run == "" {
		all, c := "^TestBench", "^TestBenchCables"
		return &all, &c
	}
	return cablesSplit(run, "")
}
