package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/linkbeat/linkbeat/test/testkit"
	dto "github.com/prometheus/client_model/go"
)

// env is what every scenario needs from the command line.
type env struct {
	linkbeat string // the binary
	tmp      string // scratch directory, removed at exit
	quick    bool
}

// proc is a process the benchmark started in a namespace.
type proc struct {
	name    string
	cmd     *exec.Cmd
	stderr  *testkit.Buffer
	done    chan struct{}
	cleanup func()
}

func startProc(name string, cleanup func(), argv ...string) (*proc, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	p := &proc{name: name, cmd: cmd, stderr: &testkit.Buffer{}, done: make(chan struct{}), cleanup: cleanup}
	cmd.Stdout = io.Discard
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() { cmd.Wait(); close(p.done) }()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// stop ends the process with sig, then SIGKILL after 5 s.
func (p *proc) stop(sig os.Signal) {
	testkit.Stop(p.cmd.Process, p.done, sig, 5*time.Second)
	if p.cleanup != nil {
		p.cleanup()
		p.cleanup = nil
	}
}

// waitLog waits until the process's stderr contains s.
func (p *proc) waitLog(ctx context.Context, s string, timeout time.Duration) error {
	return testkit.WaitLog(ctx, p.name, p.stderr.String, p.done, s, timeout, 10*time.Millisecond)
}

// daemon is `linkbeat run` in a namespace, with its defaults except for
// a private bpffs and state directory: pins and state of concurrent runs
// on this host must not meet.
type daemon struct {
	*proc
	ns     *namespace
	pinDir string
	mnt    string
	state  string // a tmpfs mount
	bin    string
	client *http.Client
}

func startLinkbeat(ctx context.Context, e *env, ns *namespace, extra ...string) (*daemon, error) {
	dir, err := os.MkdirTemp(e.tmp, "linkbeat-")
	if err != nil {
		return nil, fmt.Errorf("linkbeat dir: %w", err)
	}
	mnt := filepath.Join(dir, "bpffs")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		return nil, fmt.Errorf("bpffs dir: %w", err)
	}
	if out, err := exec.Command("mount", "-t", "bpf", "bpf", mnt).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("mount bpffs: %w: %s", err, out)
	}
	pinDir := filepath.Join(mnt, "linkbeat")
	// The state directory is on a tmpfs, as /run is where linkbeat is
	// deployed: the record must survive the daemon, not the machine.
	state := filepath.Join(dir, "state")
	if err := os.Mkdir(state, 0o700); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=256m,mode=0700", "tmpfs", state).CombinedOutput(); err != nil {
		exec.Command("umount", mnt).Run()
		return nil, fmt.Errorf("mount tmpfs: %w: %s", err, out)
	}
	args := append([]string{"netns", "exec", ns.name, e.linkbeat, "run", "--bpffs-dir", pinDir,
		"--state-dir", state}, extra...)
	p, err := startProc("linkbeat", nil, append([]string{"ip"}, args...)...)
	if err != nil {
		exec.Command("umount", mnt).Run()
		exec.Command("umount", state).Run()
		return nil, err
	}
	d := &daemon{proc: p, ns: ns, pinDir: pinDir, mnt: mnt, state: state, bin: e.linkbeat, client: ns.httpClient()}
	if err := p.waitLog(ctx, testkit.Ready, 20*time.Second); err != nil {
		d.stop()
		return nil, err
	}
	return d, nil
}

// stop ends the daemon and detaches its programs: they stay attached
// after a plain exit, and must not count the next scenario's traffic.
func (d *daemon) stop() error {
	d.proc.stop(os.Interrupt)
	if d.mnt == "" {
		return nil
	}
	out, err := exec.Command(d.bin, "cleanup", "--bpffs-dir", d.pinDir).CombinedOutput()
	if err == nil {
		if _, serr := os.Stat(d.pinDir); !errors.Is(serr, os.ErrNotExist) {
			err = fmt.Errorf("pin directory still there: %v", serr)
		}
	}
	exec.Command("umount", d.mnt).Run()
	exec.Command("umount", d.state).Run()
	d.mnt = ""
	if err != nil {
		return fmt.Errorf("linkbeat cleanup: %w: %s", err, out)
	}
	return nil
}

func (d *daemon) get(ctx context.Context) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:9089/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("scrape: %s", resp.Status)
	}
	return resp, nil
}

// scrape reads and parses the daemon's metrics endpoint.
func (d *daemon) scrape(ctx context.Context) (map[string]*dto.MetricFamily, error) {
	resp, err := d.get(ctx)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return testkit.Families(resp.Body)
}

// fetch reads a whole scrape without parsing it: the load is the
// daemon's to carry, not the benchmark's.
func (d *daemon) fetch(ctx context.Context) error {
	resp, err := d.get(ctx)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err == nil && n == 0 {
		err = errors.New("scrape: empty body")
	}
	return err
}

// metricSum adds up every series of a counter or gauge whose labels
// include match.
func metricSum(mf map[string]*dto.MetricFamily, name string, match map[string]string) float64 {
	var sum float64
	for _, m := range testkit.Series(mf, name, match) {
		switch {
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		}
	}
	return sum
}

// histogram is a cumulative histogram summed over all series.
type histogram struct {
	count   uint64
	bounds  []float64
	buckets []uint64 // cumulative, per bound
}

func histogramOf(mf map[string]*dto.MetricFamily, name string) histogram {
	var h histogram
	f := mf[name]
	if f == nil {
		return h
	}
	for _, m := range f.GetMetric() {
		hm := m.GetHistogram()
		if hm == nil {
			continue
		}
		h.count += hm.GetSampleCount()
		for i, b := range hm.GetBucket() {
			if len(h.bounds) <= i {
				h.bounds = append(h.bounds, b.GetUpperBound())
				h.buckets = append(h.buckets, 0)
			}
			h.buckets[i] += b.GetCumulativeCount()
		}
	}
	return h
}

// since is h minus an earlier snapshot of the same histogram.
func (h histogram) since(old histogram) histogram {
	d := histogram{count: h.count - old.count, bounds: h.bounds, buckets: make([]uint64, len(h.buckets))}
	for i := range h.buckets {
		d.buckets[i] = h.buckets[i]
		if i < len(old.buckets) {
			d.buckets[i] -= old.buckets[i]
		}
	}
	return d
}

// quantile interpolates linearly inside the bucket, like PromQL's
// histogram_quantile; NaN-free: 0 for an empty histogram.
func (h histogram) quantile(q float64) float64 {
	if h.count == 0 {
		return 0
	}
	rank := q * float64(h.count)
	lower, prev := 0.0, uint64(0)
	for i, c := range h.buckets {
		if float64(c) >= rank {
			in := float64(c - prev)
			if in == 0 {
				return h.bounds[i]
			}
			return lower + (h.bounds[i]-lower)*(rank-float64(prev))/in
		}
		lower, prev = h.bounds[i], c
	}
	return lower // in the +Inf bucket: the highest finite bound
}

// ifplugd is one ifplugd 0.28 instance per interface, with the seed's
// flags. Each runs in a private mount namespace with its own /run, so its
// pid file (/run/ifplugd.IFACE.pid) cannot meet another instance's.
type ifplugd struct {
	procs []*proc
	log   string // the action script appends "IFACE ACTION" here
}

// startIfplugd starts one instance per interface with script as the
// action script, and waits for each one's start-up "up" run.
func startIfplugd(ctx context.Context, e *env, ns *namespace, ifaces []string, script string) (*ifplugd, error) {
	dir, err := os.MkdirTemp(e.tmp, "ifplugd-")
	if err != nil {
		return nil, fmt.Errorf("ifplugd dir: %w", err)
	}
	ip := &ifplugd{log: filepath.Join(dir, "actions.log")}
	path := filepath.Join(dir, "action.sh")
	body := "#!/bin/sh\n# ifplugd action script: $1 is the interface, $2 up or down.\n" + script +
		"\necho \"$1 $2\" >> " + ip.log + "\nexit 0\n"
	if err := os.WriteFile(path, []byte(body), 0o755); err != nil {
		return nil, fmt.Errorf("action script: %w", err)
	}
	for _, ifc := range ifaces {
		// -n foreground, -s log to stderr, -f failures count as down,
		// -u0 -d0 no delays, -I ignore the script's exit code, -q no
		// script at quit (the seed's ARGS, less -w which only matters
		// when daemonizing). The poll stays at its default 1 s.
		inner := "mount -t tmpfs tmpfs /run && exec ifplugd -n -s -f -u0 -d0 -I -q -i " + ifc + " -r " + path
		p, err := startProc("ifplugd "+ifc, nil,
			"ip", "netns", "exec", ns.name, "unshare", "--mount", "--propagation", "private", "sh", "-c", inner)
		if err != nil {
			ip.stop()
			return nil, err
		}
		ip.procs = append(ip.procs, p)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, ifc := range ifaces {
		for ip.count(ifc+" up") == 0 {
			if time.Now().After(deadline) {
				ip.stop()
				return nil, fmt.Errorf("ifplugd on %s never ran its start-up script: %s", ifc, ip.procs[0].stderr.String())
			}
			select {
			case <-ctx.Done():
				ip.stop()
				return nil, ctx.Err()
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	return ip, nil
}

// count is how many action script runs matched line ("eth1 down").
func (ip *ifplugd) count(line string) int {
	b, _ := os.ReadFile(ip.log)
	n := 0
	for l := range strings.SplitSeq(string(b), "\n") {
		if l == line || (line == "" && l != "") {
			n++
		}
	}
	return n
}

func (ip *ifplugd) stop() {
	for _, p := range ip.procs {
		p.stop(syscall.SIGTERM)
	}
}

// procStat is what /proc says about a process and its threads.
type procStat struct {
	cpu      time.Duration // utime + stime, all threads
	switches int           // voluntary + nonvoluntary, all threads
	rssKB    int
	hwmKB    int
	threads  int
}

func readProcStat(pid int) (procStat, error) {
	var st procStat
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return st, fmt.Errorf("proc stat: %w", err)
	}
	// Fields after the command name, which may hold spaces.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	utime, _ := strconv.Atoi(f[11])
	stime, _ := strconv.Atoi(f[12])
	st.cpu = time.Duration(utime+stime) * time.Second / clockTicks
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return st, fmt.Errorf("proc status: %w", err)
	}
	st.rssKB = statusField(string(status), "VmRSS:")
	st.hwmKB = statusField(string(status), "VmHWM:")
	st.threads = statusField(string(status), "Threads:")
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	if err != nil {
		return st, err
	}
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue // the thread ended meanwhile
		}
		st.switches += statusField(string(b), "voluntary_ctxt_switches:") + statusField(string(b), "nonvoluntary_ctxt_switches:")
	}
	return st, nil
}

// clockTicks is USER_HZ, 100 on every Linux architecture Go supports.
const clockTicks = 100

func statusField(s, key string) int {
	for l := range strings.SplitSeq(s, "\n") {
		if rest, ok := strings.CutPrefix(l, key); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				n, _ := strconv.Atoi(f[0])
				return n
			}
		}
	}
	return 0
}
