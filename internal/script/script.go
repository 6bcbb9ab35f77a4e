// Package script runs ifplugd-compatible action scripts: `PATH IFACE up|down
// [EXTRA]` with IFPLUGD_PREVIOUS/IFPLUGD_CURRENT and LINKBEAT_* variables.
// Runs are serialized per interface, bounded in time and output, and
// coalesced: while one runs, only the latest wanted state waits. A script
// gets a fixed environment and, by default, no capability but
// CAP_NET_ADMIN (docs/scripts.md).
package script

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Job is one wanted run.
type Job struct {
	Path    string
	Extra   string
	Timeout time.Duration
	Ifname  string
	Up      bool
	// Env adds LINKBEAT_* variables (without the prefix), e.g. "IFINDEX".
	Env map[string]string
	// Capabilities the script keeps; nil is DefaultCapabilities, empty
	// is none.
	Capabilities []string
}

// Result is what one run did.
type Result struct {
	Job      Job
	Outcome  string // "success", "failure", "timeout", "error"
	ExitCode int
	Duration time.Duration
	Err      error
}

// Runner owns one worker per interface.
type Runner struct {
	log      *slog.Logger
	onResult func(Result)
	ctx      context.Context
	mu       sync.Mutex
	workers  map[string]*worker
	wg       sync.WaitGroup
}

type worker struct {
	pending *Job
	running bool
	last    string // state of the last run: "up", "down" or "" (ifplugd's IFPLUGD_PREVIOUS)
}

// NewRunner makes a runner whose runs stop with ctx. onResult, if set, is
// called after each run, from the worker's goroutine.
func NewRunner(ctx context.Context, log *slog.Logger, onResult func(Result)) *Runner {
	return &Runner{ctx: ctx, log: log, onResult: onResult, workers: make(map[string]*worker)}
}

// Submit queues a run. It never blocks: the fast path calls it.
func (r *Runner) Submit(j Job) {
	r.mu.Lock()
	defer r.mu.Unlock()
	w := r.workers[j.Ifname]
	if w == nil {
		w = &worker{}
		r.workers[j.Ifname] = w
	}
	w.pending = &j
	if !w.running {
		w.running = true
		r.wg.Add(1)
		go r.work(w)
	}
}

// Wait blocks until every queued run has finished.
func (r *Runner) Wait() { r.wg.Wait() }

func (r *Runner) work(w *worker) {
	defer r.wg.Done()
	for {
		r.mu.Lock()
		j := w.pending
		w.pending = nil
		if j == nil || r.ctx.Err() != nil {
			w.running = false
			r.mu.Unlock()
			return
		}
		prev := w.last
		state := stateName(j.Up)
		r.mu.Unlock()
		if prev == state {
			// Flaps coalesced back to the state already run.
			continue
		}
		res := r.run(*j, prev)
		r.mu.Lock()
		w.last = state
		r.mu.Unlock()
		if r.onResult != nil {
			r.onResult(res)
		}
	}
}

func stateName(up bool) string {
	if up {
		return "up"
	}
	return "down"
}

// Run executes one job now and waits for it, for callers outside the
// worker (the quit-time run).
func (r *Runner) Run(j Job, previous string) Result { return r.run(j, previous) }

// SafePath is the PATH a script runs with, whatever the daemon's is.
const SafePath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// passedEnv says which of the daemon's variables a script sees: locale and
// time zone, so its messages and dates read as the host's. Nothing else of
// the daemon's environment (credentials, a systemd unit's settings) leaks.
func passedEnv(kv string) bool {
	k, _, _ := strings.Cut(kv, "=")
	return k == "LANG" || k == "LANGUAGE" || k == "TZ" || strings.HasPrefix(k, "LC_")
}

// environ builds a script's whole environment.
func environ(j Job, previous string) []string {
	env := []string{"PATH=" + SafePath}
	for _, kv := range os.Environ() {
		if passedEnv(kv) {
			env = append(env, kv)
		}
	}
	env = append(env, "IFPLUGD_PREVIOUS="+previous, "IFPLUGD_CURRENT="+stateName(j.Up))
	for k, v := range j.Env {
		env = append(env, "LINKBEAT_"+k+"="+v)
	}
	return env
}

// drainDelay bounds the wait for a script's output once the script has
// exited and its process group is killed: a descendant that left the
// group (setsid) may hold the pipe open for ever.
const drainDelay = 2 * time.Second

func (r *Runner) run(j Job, previous string) Result {
	start := time.Now()
	args := []string{j.Ifname, stateName(j.Up)}
	if j.Extra != "" {
		args = append(args, j.Extra)
	}
	if previous == "" {
		previous = "down"
	}
	timeout := j.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	log := r.log.With("script", j.Path, "ifname", j.Ifname, "action", stateName(j.Up))
	res := Result{Job: j, Outcome: "error", ExitCode: -1}
	fail := func(err error) Result {
		res.Err, res.Duration = err, time.Since(start)
		log.Error("action script did not start", "err", err)
		return res
	}
	keep, err := capMask(j.Capabilities)
	if err != nil {
		return fail(fmt.Errorf("action script %s: %w", j.Path, err))
	}

	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, j.Path, args...)
	cmd.Env = environ(j, previous)
	cmd.Dir = "/"
	// Its own process group, so a timeout kills what it forked too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	// Our own pipe, not exec's copying goroutine: Wait then returns when
	// the script exits, and the group is killed at once, before the
	// output is drained.
	pr, pw, err := os.Pipe()
	if err != nil {
		return fail(fmt.Errorf("action script %s: output pipe: %w", j.Path, err))
	}
	defer pr.Close()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := startLimited(cmd, keep); err != nil {
		pw.Close()
		return fail(explainStart(j.Path, err))
	}
	pw.Close()
	err = waitAndDrain(cmd, pr, log)
	res.Duration = time.Since(start)
	res.ExitCode = cmd.ProcessState.ExitCode()
	return judge(res, ctx.Err() == context.DeadlineExceeded, err, timeout, log)
}

// waitAndDrain waits for the script, kills what is left of its process
// group, and logs its output, read from pr until the writers are gone or
// drainDelay has passed.
func waitAndDrain(cmd *exec.Cmd, pr *os.File, log *slog.Logger) error {
	out := &outputLog{log: log}
	drained := make(chan struct{})
	go func() { out.readFrom(pr); close(drained) }()

	err := cmd.Wait()
	// Kill leftovers of the group either way: scripts must not leave
	// background children holding resources.
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-drained:
	case <-time.After(drainDelay):
		// A descendant outside the group holds the pipe: stop reading.
		pr.Close()
		<-drained
		log.Warn("action script left a process outside its process group holding its output open: stopped reading it", "waited", drainDelay)
	}
	out.finish()
	return err
}

// judge sets the outcome of a run that started: timed out, failed (err
// is Wait's) or succeeded.
func judge(res Result, timedOut bool, err error, timeout time.Duration, log *slog.Logger) Result {
	switch {
	case timedOut:
		res.Outcome, res.Err = "timeout", fmt.Errorf("action script %s timed out after %s: killed its process group", res.Job.Path, timeout)
		log.Error("action script timed out: killed its process group", "timeout", timeout)
	case err != nil && res.ExitCode != 0:
		res.Outcome, res.Err = "failure", fmt.Errorf("action script %s exited %d", res.Job.Path, res.ExitCode)
		if res.ExitCode < 0 {
			res.Err = fmt.Errorf("action script %s: %w", res.Job.Path, err)
		}
		log.Warn("action script failed", "exit_code", res.ExitCode, "err", err, "duration", res.Duration)
	default:
		res.Outcome = "success"
		log.Info("action script done", "duration", res.Duration)
	}
	return res
}

// startLimited starts cmd from a thread holding only the capabilities in
// keep, which the child inherits. The thread is never handed back to the
// Go runtime: the goroutine ends locked, and the runtime retires it.
func startLimited(cmd *exec.Cmd, keep uint64) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if unix.Gettid() == unix.Getpid() {
			// The main thread is not retired but parked, and its
			// credentials are what /proc/self/status shows: leave it
			// whole. Held here, it cannot take the next goroutine.
			defer runtime.UnlockOSThread()
			errc <- startLimited(cmd, keep)
			return
		}
		if err := limitThread(keep); err != nil {
			errc <- fmt.Errorf("limit capabilities: %w", err)
			return
		}
		errc <- cmd.Start()
	}()
	return <-errc
}

// explainStart says what to do about a script that cannot be executed.
func explainStart(path string, err error) error {
	var hint string
	switch {
	case errors.Is(err, fs.ErrPermission):
		hint = "it is not executable: chmod +x it (and check its file system is not mounted noexec)"
	case errors.Is(err, syscall.ENOEXEC):
		hint = "it is neither a binary nor a script with a #! line"
	case errors.Is(err, fs.ErrNotExist):
		hint = "it, or the interpreter its #! line names, does not exist"
	default:
		return fmt.Errorf("start action script %s: %w", path, err)
	}
	return fmt.Errorf("start action script %s: %s: %w", path, hint, err)
}

// Output is logged a line at a time, up to maxLine bytes a line, and
// maxOutput bytes or maxLines lines a run; the rest is counted, not kept.
const (
	maxLine   = 4096
	maxOutput = 64 << 10
	maxLines  = 200
)

type outputLog struct {
	log       *slog.Logger
	partial   []byte // the current line, up to maxLine
	cut       bool   // the current line went past maxLine
	logged    int
	lines     int
	discarded int64
}

func (o *outputLog) readFrom(f *os.File) {
	buf := make([]byte, 32<<10)
	for {
		n, err := f.Read(buf)
		o.write(buf[:n])
		if err != nil {
			return
		}
	}
}

func (o *outputLog) write(b []byte) {
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		chunk := b
		if i >= 0 {
			chunk = b[:i]
		}
		if room := maxLine - len(o.partial); len(chunk) > room {
			o.partial = append(o.partial, chunk[:room]...)
			o.cut = true
			o.discarded += int64(len(chunk) - room)
		} else {
			o.partial = append(o.partial, chunk...)
		}
		if i < 0 {
			return
		}
		o.line()
		b = b[i+1:]
	}
}

func (o *outputLog) line() {
	msg := string(o.partial)
	if o.cut {
		msg += " …(line truncated)"
	}
	o.partial, o.cut = o.partial[:0], false
	if o.logged+len(msg) > maxOutput || o.lines >= maxLines {
		o.discarded += int64(len(msg)) + 1
		return
	}
	o.logged += len(msg) + 1
	o.lines++
	o.log.Info("action script output", "line", msg)
}

// finish logs a last line without its newline, and what was cut.
func (o *outputLog) finish() {
	if len(o.partial) > 0 || o.cut {
		o.line()
	}
	if o.discarded > 0 {
		o.log.Warn("action script output truncated", "logged_lines", o.lines, "logged_bytes", o.logged, "discarded_bytes", o.discarded)
	}
}

// Env builds the LINKBEAT_* variables of an event.
func Env(ifindex int, source string, kernelNS int64, bond, slave string) map[string]string {
	env := map[string]string{
		"IFINDEX":        strconv.Itoa(ifindex),
		"SOURCE":         source,
		"KERNEL_TIME_NS": strconv.FormatInt(kernelNS, 10),
	}
	if bond != "" {
		env["BOND"] = bond
	}
	if slave != "" {
		env["SLAVE"] = slave
	}
	return env
}
