// Package soak runs one linkbeat daemon for a long time under random
// faults (carrier flaps, links deleted and re-created, renamed, config
// reloads, the odd SIGKILL and restart) and samples what would show a
// leak: goroutines, open fds, RSS and the daemon's BPF objects. It fails
// when any of them grows after warm-up. Run it with `make soak` (10 min,
// DURATION=…) or `make soak-short` (60 s); it needs root.
package soak

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/linkbeat/linkbeat/test/testkit"
)

var (
	duration = flag.Duration("soak.duration", 10*time.Minute, "how long to run the faults")
	interval = flag.Duration("soak.interval", 10*time.Second, "time between samples")
	seedFlag = flag.Uint64("soak.seed", 0, "seed of the fault sequence (0: from the clock)")
)

const metricsAddr = "127.0.0.1:9089"

// links are the veths under test: link i is s<i> in srv with 10.(60+i).0.1/24
// and a route to 203.0.(110+i).0/24; its peer s<i>p sits in sw.
const links = 4

func TestSoak(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("the soak creates network namespaces and loads BPF: run it as root (make soak)")
	}
	seed := *seedFlag
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (replay with -soak.seed=%d); %s of faults, a sample every %s", seed, seed, *duration, *interval)
	// A hang must not outlive the soak by much: `make soak` runs go test
	// without its own timeout, since DURATION varies.
	watchdog := time.AfterFunc(*duration+5*time.Minute, func() { panic("soak: still running 5 minutes past its duration") })
	defer watchdog.Stop()

	s := setup(t)
	s.start(t)
	rng := rand.New(rand.NewPCG(seed, 6))

	var samples []sample
	take := func() {
		smp := s.sample(t)
		samples = append(samples, smp)
		t.Logf("sample %2d: %s", len(samples)-1, smp)
	}
	take()
	end := time.Now().Add(*duration)
	nextSample := time.Now().Add(*interval)
	killAt := time.Now().Add(*duration * 7 / 10) // at least one SIGKILL per run
	counts := map[string]int{}
	for time.Now().Before(end) {
		kind := s.fault(t, rng, time.Now().After(killAt))
		counts[kind]++
		if kind == "sigkill" {
			killAt = end.Add(time.Hour)
		}
		time.Sleep(time.Duration(100+rng.IntN(300)) * time.Millisecond)
		if time.Now().After(nextSample) {
			take()
			nextSample = nextSample.Add(*interval)
		}
	}
	t.Logf("faults: %v; route re-adds refused and tried again: %d", counts, s.refused)
	if !s.alive() {
		t.Fatalf("the daemon died (%s) after the fault %q:\n%s", s.cmd.ProcessState, s.last, s.tail())
	}
	s.checkEndState(t)
	take()
	report(t, samples)
}

type soak struct {
	bin, srv, sw     string
	pins, state, dir string
	script           string

	mu       sync.Mutex
	cmd      *exec.Cmd
	done     chan struct{}
	logPath  string
	restarts int
	last     string // the latest fault
	refused  int    // route re-adds the kernel refused (and were tried again)
	began    time.Time
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// try runs a command whose failure is part of the chaos (a link already
// gone, say), not the test's.
func try(name string, args ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = exec.CommandContext(ctx, name, args...).Run()
}

func batch(t *testing.T, ns string, cmds ...string) {
	t.Helper()
	cmd := exec.Command("ip", "-n", ns, "-batch", "-")
	cmd.Stdin = strings.NewReader(strings.Join(cmds, "\n") + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ip -batch: %v\n%s", err, out)
	}
}

func setup(t *testing.T) *soak {
	bin, err := testkit.Binary("soak")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := exec.LookPath("bpftool"); err != nil {
		t.Fatal("bpftool missing: run scripts/install-deps.sh (make soak does)")
	}
	s := &soak{bin: bin, dir: t.TempDir(), state: t.TempDir(), began: time.Now()}
	s.srv, s.sw = fmt.Sprintf("lbsoak-%d-srv", os.Getpid()), fmt.Sprintf("lbsoak-%d-sw", os.Getpid())
	for _, ns := range []string{s.srv, s.sw} {
		t.Cleanup(func() { try("ip", "netns", "del", ns) })
		if err := testkit.AddNetns(ns, true); err != nil {
			t.Fatal(err)
		}
	}
	mnt := t.TempDir()
	run(t, "mount", "-t", "bpf", "bpf", mnt)
	t.Cleanup(func() { try("umount", mnt) })
	s.pins = filepath.Join(mnt, "linkbeat")
	s.script = filepath.Join(s.dir, "action.sh")
	if err := os.WriteFile(s.script, []byte("#!/bin/sh\necho \"$1 $2\" >> "+filepath.Join(s.dir, "runs")+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range links {
		s.addLink(t, i)
	}
	return s
}

func name(i int) string { return fmt.Sprintf("s%d", i) }

// addLink creates link i with its address and route.
func (s *soak) addLink(t *testing.T, i int) {
	t.Helper()
	batch(t, s.srv, fmt.Sprintf("link add %s type veth peer name %sp netns %s", name(i), name(i), s.sw),
		fmt.Sprintf("addr add 10.%d.0.1/24 dev %s", 60+i, name(i)), "link set "+name(i)+" up")
	batch(t, s.sw, "link set "+name(i)+"p up")
	s.addRoute(i)
}

// addRoute puts link i's route back once its carrier is there: a link
// set down (to be renamed) loses its routes to the kernel. Without carrier
// (its peer left down by a flap) the route is left to linkbeat, which
// withdrew it when the carrier went and restores it when it returns:
// adding it here would put a route on a dead link behind the daemon's back.
func (s *soak) addRoute(i int) {
	carrier := func() bool {
		up, _ := testkit.Carrier(s.srv, name(i))
		return up
	}
	for k := 0; !carrier(); k++ {
		if k == 50 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The kernel refuses the route while linkbeat, still handling the
	// carrier loss of the rename, has the gateway's connected route
	// withdrawn for a moment; an admin would try again, and so does this,
	// for as long as a loaded machine may make that moment last.
	for range 500 {
		if exec.Command("ip", "-n", s.srv, "route", "replace", fmt.Sprintf("203.0.%d.0/24", 110+i), "via", fmt.Sprintf("10.%d.0.2", 60+i), "dev", name(i)).Run() == nil || !carrier() {
			return
		}
		s.refused++
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *soak) start(t *testing.T) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.logPath = filepath.Join(s.dir, fmt.Sprintf("linkbeat-%d.log", s.restarts))
	logf, err := os.Create(s.logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", s.srv, s.bin, "run", "--action-script", s.script,
		"--bpffs-dir", s.pins, "--state-dir", s.state, "--no-script-on-exit")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(done) }()
	s.cmd, s.done = cmd, done
	if s.restarts == 0 {
		t.Cleanup(func() {
			s.mu.Lock()
			cmd, done := s.cmd, s.done
			s.mu.Unlock()
			testkit.Stop(cmd.Process, done, syscall.SIGTERM, 10*time.Second)
			if t.Failed() {
				t.Logf("last daemon log (tail):\n%s", s.tail())
			}
		})
	}
	log := func() string { b, _ := os.ReadFile(s.logPath); return string(b) }
	if err := testkit.WaitLog(context.Background(), "linkbeat", log, done, testkit.Ready, 30*time.Second, 50*time.Millisecond); err != nil {
		t.Fatal(err)
	}
}

func (s *soak) alive() bool {
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

func (s *soak) tail() string {
	b, _ := os.ReadFile(s.logPath)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// fault makes one random fault and says which.
func (s *soak) fault(t *testing.T, rng *rand.Rand, kill bool) string {
	t.Helper()
	if !s.alive() {
		t.Fatalf("the daemon died (%s) after the fault %q:\n%s", s.cmd.ProcessState, s.last, s.tail())
	}
	kind := s.oneFault(t, rng, kill)
	s.last = kind
	return kind
}

func (s *soak) oneFault(t *testing.T, rng *rand.Rand, kill bool) string {
	t.Helper()
	i := rng.IntN(links)
	dev := name(i)
	switch p := rng.IntN(100); {
	case kill || p < 1:
		s.cmd.Process.Signal(syscall.SIGKILL)
		<-s.done
		s.restarts++
		s.start(t)
		return "sigkill"
	case p < 65:
		// A burst of flaps at 10-100 Hz, ending up or down.
		n, period := 2+rng.IntN(19), time.Second/time.Duration(2*(10+rng.IntN(91)))
		for k := range n {
			state := "down"
			if k%2 == 1 {
				state = "up"
			}
			try("ip", "-n", s.sw, "link", "set", dev+"p", state)
			time.Sleep(period)
		}
		return "flap"
	case p < 78:
		try("ip", "-n", s.srv, "link", "del", dev)
		s.addLink(t, i)
		return "recreate"
	case p < 91:
		tmp := dev + "r"
		try("ip", "-n", s.srv, "link", "set", dev, "down")
		try("ip", "-n", s.srv, "link", "set", dev, "name", tmp)
		try("ip", "-n", s.srv, "link", "set", tmp, "up")
		time.Sleep(100 * time.Millisecond)
		try("ip", "-n", s.srv, "link", "set", tmp, "down")
		try("ip", "-n", s.srv, "link", "set", tmp, "name", dev)
		try("ip", "-n", s.srv, "link", "set", dev, "up")
		s.addRoute(i)
		return "rename"
	default:
		s.cmd.Process.Signal(syscall.SIGHUP)
		select {
		case <-s.done:
			// run reloads its config on SIGHUP: an exit is a crash.
			t.Fatalf("the daemon exited (%s) on SIGHUP:\n%s", s.cmd.ProcessState, s.tail())
		case <-time.After(200 * time.Millisecond):
		}
		return "sighup"
	}
}

// sample is one row of the table.
type sample struct {
	At              time.Duration
	PID             int
	Goroutines, FDs int
	RSSKiB          int
	// Held open by the process (fds), and as bpftool lists them.
	Progs, Maps, BPFLinks   int
	AttachedLinks, ProgMaps int
	Pinned                  int
}

func (smp sample) String() string {
	return fmt.Sprintf("t=%-6s pid=%d goroutines=%d fds=%d rss=%dKiB held: progs=%d maps=%d links=%d; bpftool: links=%d maps=%d; pins=%d",
		smp.At.Round(time.Second), smp.PID, smp.Goroutines, smp.FDs, smp.RSSKiB, smp.Progs, smp.Maps, smp.BPFLinks, smp.AttachedLinks, smp.ProgMaps, smp.Pinned)
}

func (s *soak) sample(t *testing.T) sample {
	t.Helper()
	s.mu.Lock()
	pid := s.cmd.Process.Pid
	s.mu.Unlock()
	smp := sample{At: time.Since(s.began), PID: pid}
	smp.Goroutines = s.goroutines(t)
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatalf("fds of %d: %v", pid, err)
	}
	smp.FDs = len(fds)
	st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(st), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			smp.RSSKiB, _ = strconv.Atoi(f[1])
		}
	}
	var progIDs map[int]bool
	smp.Progs, smp.Maps, smp.BPFLinks, progIDs = bpfHeld(t, pid)
	smp.AttachedLinks, smp.ProgMaps = bpftoolObjects(t, progIDs)
	filepath.WalkDir(s.pins, func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			smp.Pinned++
		}
		return nil
	})
	return smp
}

// bpfHeld counts the BPF programs, maps and links the process holds
// open (its fds), and returns the IDs of the programs.
func bpfHeld(t *testing.T, pid int) (progs, maps, links int, progIDs map[int]bool) {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	fds, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("fds of %d: %v", pid, err)
	}
	progIDs = map[int]bool{}
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join(dir, fd.Name()))
		if err != nil {
			continue
		}
		switch target {
		case "anon_inode:bpf-prog":
			progs++
			info, _ := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%s", pid, fd.Name()))
			for _, l := range strings.Split(string(info), "\n") {
				if v, ok := strings.CutPrefix(l, "prog_id:"); ok {
					id, _ := strconv.Atoi(strings.TrimSpace(v))
					progIDs[id] = true
				}
			}
		case "anon_inode:bpf-map":
			maps++
		case "anon_inode:bpf_link", "anon_inode:bpf-link":
			// A link the process made is "bpf_link" (bpf_link_prime); one
			// it opened from a pin is "bpf-link" (bpf_link_new_fd). Counting
			// only the first made a restarted daemon, which holds adopted
			// links, look like it leaked as it re-created them.
			links++
		}
	}
	return progs, maps, links, progIDs
}

// bpftoolObjects counts, as bpftool lists them, the links that run the
// daemon's programs (attached ones, pinned or not) and the maps those
// programs use. (Debian's bpftool is built without the "pids" feature, so
// it cannot tell which process holds what.)
func bpftoolObjects(t *testing.T, progIDs map[int]bool) (links, maps int) {
	t.Helper()
	var ls []struct {
		ProgID int `json:"prog_id"`
	}
	bpftoolJSON(t, &ls, "link", "show")
	for _, l := range ls {
		if progIDs[l.ProgID] {
			links++
		}
	}
	var ps []struct {
		ID     int   `json:"id"`
		MapIDs []int `json:"map_ids"`
	}
	bpftoolJSON(t, &ps, "prog", "show")
	seen := map[int]bool{}
	for _, p := range ps {
		if progIDs[p.ID] {
			for _, m := range p.MapIDs {
				seen[m] = true
			}
		}
	}
	return links, len(seen)
}

func bpftoolJSON(t *testing.T, v any, args ...string) {
	t.Helper()
	out, err := exec.Command("bpftool", append([]string{"-j"}, args...)...).Output()
	if err != nil {
		t.Fatalf("bpftool %v: %v", args, err)
	}
	if err := json.Unmarshal(out, v); err != nil {
		t.Fatalf("bpftool -j %v: %v", args, err)
	}
}

// goroutines reads go_goroutines from the daemon's metrics.
func (s *soak) goroutines(t *testing.T) int {
	t.Helper()
	for _, l := range strings.Split(s.scrape(t), "\n") {
		if v, ok := strings.CutPrefix(l, "go_goroutines "); ok {
			n, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return int(n)
		}
	}
	t.Fatal("no go_goroutines in the scrape")
	return 0
}

// scrape reads the daemon's metrics from inside its netns.
func (s *soak) scrape(t *testing.T) string {
	t.Helper()
	var body []byte
	err := testkit.InNamed(s.srv, func() error {
		c, err := net.DialTimeout("tcp", metricsAddr, 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		req, _ := http.NewRequest(http.MethodGet, "http://"+metricsAddr+"/metrics", nil)
		req.Close = true
		if err := req.Write(c); err != nil {
			return err
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, err = io.ReadAll(resp.Body)
		return err
	})
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	return string(body)
}

// report prints the samples and fails on growth after warm-up: within the
// longest-lived daemon process, the mean of the last third of its samples
// after warm-up against the first third, with a tolerance per quantity.
func report(t *testing.T, samples []sample) {
	t.Helper()
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "t\tpid\tgoroutines\tfds\trss KiB\theld progs\theld maps\theld links\tbpftool links\tbpftool maps\tpins\t")
	for _, s := range samples {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t\n", s.At.Round(time.Second), s.PID, s.Goroutines, s.FDs, s.RSSKiB,
			s.Progs, s.Maps, s.BPFLinks, s.AttachedLinks, s.ProgMaps, s.Pinned)
	}
	tw.Flush()
	t.Logf("samples:\n%s", b.String())

	// The longest run of one process.
	var best []sample
	for i := 0; i < len(samples); {
		j := i
		for j < len(samples) && samples[j].PID == samples[i].PID {
			j++
		}
		if j-i > len(best) {
			best = samples[i:j]
		}
		i = j
	}
	// Warm-up: the first fifth of it, and at least its first sample.
	warm := max(1, len(best)/5)
	steady := best[warm:]
	if len(steady) < 3 {
		t.Fatalf("only %d samples after warm-up in the longest-lived process: run longer or sample more often", len(steady))
	}
	third := max(1, len(steady)/3)
	first, last := steady[:third], steady[len(steady)-third:]
	mean := func(xs []sample, f func(sample) int) float64 {
		sum := 0
		for _, x := range xs {
			sum += f(x)
		}
		return float64(sum) / float64(len(xs))
	}
	for _, q := range []struct {
		name     string
		f        func(sample) int
		abs, rel float64 // allowed growth: the larger of the two
	}{
		{"goroutines", func(s sample) int { return s.Goroutines }, 5, 0.2},
		{"open fds", func(s sample) int { return s.FDs }, 5, 0.2},
		{"RSS (KiB)", func(s sample) int { return s.RSSKiB }, 8 << 10, 0.25},
		{"BPF programs", func(s sample) int { return s.Progs }, 2, 0},
		{"BPF maps", func(s sample) int { return s.Maps }, 2, 0},
		{"BPF links", func(s sample) int { return s.BPFLinks }, 2, 0},
		{"attached links", func(s sample) int { return s.AttachedLinks }, 2, 0},
		{"their maps", func(s sample) int { return s.ProgMaps }, 2, 0},
		{"pinned objects", func(s sample) int { return s.Pinned }, 2, 0},
	} {
		a, z := mean(first, q.f), mean(last, q.f)
		allowed := max(q.abs, a*q.rel)
		verdict := "ok"
		if z-a > allowed {
			verdict = "GROWTH"
			t.Errorf("%s grew from a mean of %.1f to %.1f (allowed +%.1f) in pid %d", q.name, a, z, allowed, best[0].PID)
		}
		t.Logf("%-15s first third %10.1f  last third %10.1f  allowed +%.1f  %s", q.name, a, z, allowed, verdict)
	}
}
