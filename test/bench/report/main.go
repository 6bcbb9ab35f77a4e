// Command report turns the results files of one benchmark run (package
// bench) into a Markdown report with SVG plots next to it, and checks
// that a run produced every scenario's figures, whole and sound.
//
//	cd test && go run ./bench/report -out bench -since 2026-11-21T10:00:00Z bench/results
//	cd test && go run ./bench/report -out bench/quick -check bench/quick
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/linkbeat/linkbeat/test/bench"
)

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(log); err != nil {
		log.Error("report failed", "err", err)
		os.Exit(1)
	}
}

func run(log *slog.Logger) error {
	out := flag.String("out", "bench", "directory for REPORT.md and its plots")
	since := flag.String("since", "", "only results of runs started at or after this time (RFC 3339, UTC): the files of this run")
	doCheck := flag.Bool("check", false, "fail unless every expected scenario produced figures: every planned trial, no failed one, finite values, correctness figures of 1 (timings are not judged)")
	expect := flag.String("expect", "host=1,vm=2", "with -check: results files wanted per where")
	flag.Parse()
	if flag.NArg() == 0 {
		return fmt.Errorf("no results given: usage is report [-out DIR] [-since TIME] [-check] RESULTS_DIR_OR_FILE")
	}
	runs, err := loadRuns(flag.Args(), *since)
	if err != nil {
		return err
	}
	if len(runs) == 0 {
		return fmt.Errorf("no results files in %s (since %q)", strings.Join(flag.Args(), " "), *since)
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return fmt.Errorf("report dir: %w", err)
	}
	plots, err := writePlots(*out, runs)
	if err != nil {
		return fmt.Errorf("plots: %w", err)
	}
	path := filepath.Join(*out, "REPORT.md")
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if err := writeReport(f, runs, plots); err != nil {
		f.Close()
		return fmt.Errorf("report: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	log.Info("report written", "path", path, "runs", len(runs), "plots", len(plots))
	if !*doCheck {
		return nil
	}
	want, err := parseExpect(*expect)
	if err != nil {
		return err
	}
	if problems := check(runs, want, bench.Expected()); len(problems) > 0 {
		return fmt.Errorf("benchmark figures missing or unsound:\n  %s", strings.Join(problems, "\n  "))
	}
	log.Info("every expected scenario produced figures", "runs", len(runs))
	return nil
}

// parseExpect reads "host=1,vm=2".
func parseExpect(s string) (map[string]int, error) {
	m := map[string]int{}
	for _, kv := range strings.Split(s, ",") {
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		n, err := strconv.Atoi(v)
		if !ok || err != nil || n < 0 {
			return nil, fmt.Errorf("-expect %q: want a list like host=1,vm=2", s)
		}
		m[k] = n
	}
	return m, nil
}
