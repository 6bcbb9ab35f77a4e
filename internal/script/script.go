// Package script runs ifplugd-compatible action scripts: `PATH IFACE up|down
// [EXTRA]` with IFPLUGD_PREVIOUS/IFPLUGD_CURRENT and LINKBEAT_* variables.
// Runs are serialized per interface, bounded in time, and coalesced: while
// one runs, only the latest wanted state waits.
package script

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"
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
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, j.Path, args...)
	cmd.Env = append(cmd.Environ(), "IFPLUGD_PREVIOUS="+previous, "IFPLUGD_CURRENT="+stateName(j.Up))
	for k, v := range j.Env {
		cmd.Env = append(cmd.Env, "LINKBEAT_"+k+"="+v)
	}
	// Its own process group, so a timeout kills what it forked too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	// A child that outlives the script keeps our pipes open: stop waiting.
	cmd.WaitDelay = 2 * time.Second
	log := r.log.With("script", j.Path, "ifname", j.Ifname, "action", stateName(j.Up))

	stdout, err := cmd.StdoutPipe()
	if err == nil {
		cmd.Stderr = cmd.Stdout
	}
	if err == nil {
		err = cmd.Start()
	}
	res := Result{Job: j}
	if err != nil {
		res.Outcome, res.ExitCode, res.Err = "error", -1, fmt.Errorf("start action script %s: %w", j.Path, err)
		res.Duration = time.Since(start)
		log.Error("action script did not start", "err", err)
		return res
	}
	done := make(chan struct{})
	go func() { logLines(stdout, log); close(done) }()
	err = cmd.Wait()
	// Kill leftovers of the group either way: scripts must not leave
	// background children holding resources.
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	<-done
	res.Duration = time.Since(start)
	res.ExitCode = cmd.ProcessState.ExitCode()
	switch {
	case ctx.Err() == context.DeadlineExceeded:
		res.Outcome, res.Err = "timeout", fmt.Errorf("action script %s timed out after %s: killed its process group", j.Path, timeout)
		log.Error("action script timed out", "timeout", timeout)
	case err != nil && !errors.Is(err, exec.ErrWaitDelay) && res.ExitCode != 0:
		res.Outcome, res.Err = "failure", fmt.Errorf("action script %s exited %d", j.Path, res.ExitCode)
		log.Warn("action script failed", "exit_code", res.ExitCode, "duration", res.Duration)
	default:
		res.Outcome = "success"
		log.Info("action script done", "duration", res.Duration)
	}
	return res
}

// maxLine bounds memory when a script floods its output.
const maxLine = 4096

func logLines(r io.Reader, log *slog.Logger) {
	br := bufio.NewReaderSize(r, maxLine)
	for {
		line, isPrefix, err := br.ReadLine()
		if len(line) > 0 {
			msg := string(line)
			if isPrefix {
				msg += " …(truncated)"
				// Skip the rest of an over-long line.
				for isPrefix && err == nil {
					_, isPrefix, err = br.ReadLine()
				}
			}
			log.Info("action script output", "line", msg)
		}
		if err != nil {
			return
		}
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
