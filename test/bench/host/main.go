// Command host runs the benchmark suite's host scenarios natively on this
// machine, in throwaway network namespaces, as root: route failover
// against the real ifplugd, datapath overhead, idle cost, the flap storm
// and metrics under load. It writes one results file (package bench) for
// the report tool.
//
//	go run ./test/bench/host -out bench/results            full trial counts
//	go run ./test/bench/host -quick -out bench/quick       a few trials each
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/linkbeat/linkbeat/test/bench"
)

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(log); err != nil {
		log.Error("benchmark failed", "err", err)
		os.Exit(1)
	}
}

// scenarioSet is a group of scenarios measured together.
type scenarioSet struct {
	name string
	run  func(context.Context, *slog.Logger, *env, *namespaces) ([]bench.Scenario, error)
}

func run(log *slog.Logger) error {
	out := flag.String("out", "bench/results", "directory for the results file")
	quick := flag.Bool("quick", false, "a few trials of each scenario (bench-quick): the figures are not meant to be read")
	only := flag.String("only", "", "comma-separated scenario groups to run: "+strings.Join(groupNames(), ","))
	lb := flag.String("linkbeat", os.Getenv("LINKBEAT_BIN"), "the linkbeat binary (default $LINKBEAT_BIN, else bin/linkbeat)")
	flag.Parse()

	if os.Geteuid() != 0 {
		return fmt.Errorf("the host benchmark creates network namespaces and loads BPF: run it as root")
	}
	for _, tool := range []string{"ip", "ifplugd", "iperf3", "unshare", "bpftool"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s missing: run scripts/install-deps.sh bench: %w", tool, err)
		}
	}
	bin := *lb
	if bin == "" {
		bin = "bin/linkbeat"
	}
	bin, err := filepath.Abs(bin)
	if err != nil {
		return err
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("linkbeat binary: %w (run make build)", err)
	}
	tmp, err := os.MkdirTemp("", "linkbeat-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	e := &env{linkbeat: bin, tmp: tmp, quick: *quick}
	nss := &namespaces{prefix: fmt.Sprintf("lbbench-%d", os.Getpid())}
	defer nss.closeAll()

	r := &bench.Run{Date: time.Now().UTC().Format(time.RFC3339), Where: "host", Quick: *quick}
	r.Describe(".")
	r.Kernel = r.HostKernel
	var want []string
	if *only != "" {
		want = strings.Split(*only, ",")
	}
	for _, s := range groups() {
		if want != nil && !slices.Contains(want, s.name) {
			continue
		}
		start, load0 := time.Now(), loadAverage()
		log.Info("scenario group", "name", s.name, "quick", *quick)
		sc, err := s.run(ctx, log, e, nss)
		nss.closeAll()
		if err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		// The machine is shared: say how busy it was.
		for i := range sc {
			sc[i].Notes = append(sc[i].Notes, fmt.Sprintf("Load average (1 min) on this %d-CPU machine: %s at the start of the measurement, %s at its end.", runtime.NumCPU(), load0, loadAverage()))
		}
		r.Scenarios = append(r.Scenarios, sc...)
		log.Info("scenario group done", "name", s.name, "took", time.Since(start).Round(time.Second))
	}
	path, err := r.Write(*out)
	if err != nil {
		return err
	}
	log.Info("results written", "path", path)
	return nil
}

func groups() []scenarioSet {
	return []scenarioSet{
		{name: "failover", run: failoverScenarios},
		{name: "datapath", run: datapathScenarios},
		{name: "idle", run: idleScenario},
		{name: "storm", run: stormScenario},
		{name: "scrape", run: scrapeScenario},
		{name: "scale", run: scaleScenario},
	}
}

func groupNames() []string {
	var n []string
	for _, g := range groups() {
		n = append(n, g.name)
	}
	return n
}

func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	if f := strings.Fields(string(b)); len(f) > 0 {
		return f[0]
	}
	return "unknown"
}
