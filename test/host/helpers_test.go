// Package host holds linkbeat's privileged integration tests: each runs the
// real binary in a throwaway network namespace on this host's kernel.
package host

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/linkbeat/linkbeat/test/testkit"
)

// binary is bin/linkbeat, built by `make test-host`.
func binary(t *testing.T) string {
	t.Helper()
	bin, err := testkit.Binary("test-host")
	return testkit.Must(t, bin, err)
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("these tests create network namespaces and load BPF: run them as root (make test-host)")
	}
}

// netns is a named network namespace removed at the end of the test.
type netns string

var nsSeq struct {
	sync.Mutex
	n int
}

func newNetns(t *testing.T) netns {
	t.Helper()
	requireRoot(t)
	nsSeq.Lock()
	nsSeq.n++
	name := fmt.Sprintf("lbt-%d-%d", os.Getpid(), nsSeq.n)
	nsSeq.Unlock()
	run(t, "ip", "netns", "add", name)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	ns := netns(name)
	ns.ip(t, "link", "set", "lo", "up")
	return ns
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := testkit.Run(name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (ns netns) ip(t *testing.T, args ...string) string {
	t.Helper()
	return run(t, "ip", append([]string{"-n", string(ns)}, args...)...)
}

func (ns netns) exec(t *testing.T, name string, args ...string) string {
	t.Helper()
	return run(t, "ip", append([]string{"netns", "exec", string(ns), name}, args...)...)
}

func (ns netns) ifindex(t *testing.T, dev string) int {
	t.Helper()
	var links []struct {
		Ifindex int `json:"ifindex"`
	}
	if err := json.Unmarshal([]byte(ns.ip(t, "-j", "link", "show", "dev", dev)), &links); err != nil || len(links) != 1 {
		t.Fatalf("ifindex of %s: %v", dev, err)
	}
	return links[0].Ifindex
}

// daemon is a running linkbeat process inside a netns.
type daemon struct {
	cmd    *exec.Cmd
	lines  chan string
	stderr *testkit.Buffer
	cancel context.CancelFunc
	done   chan struct{}
}

// start runs `linkbeat args...` in ns and waits until it logs ready.
func (ns netns) start(t *testing.T, args ...string) *daemon {
	t.Helper()
	return ns.startWith(t, nil, binary(t), args...)
}

// startWith runs `pre... bin args...` in ns (pre: a wrapper such as
// setpriv or unshare), and waits until linkbeat logs ready.
func (ns netns) startWith(t *testing.T, pre []string, bin string, args ...string) *daemon {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	argv := append(append(append([]string{"netns", "exec", string(ns)}, pre...), bin), args...)
	cmd := exec.CommandContext(ctx, "ip", argv...)
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 5 * time.Second
	d := &daemon{cmd: cmd, lines: make(chan string, 256), stderr: &testkit.Buffer{}, cancel: cancel, done: make(chan struct{})}
	cmd.Stderr = d.stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			d.lines <- sc.Text()
		}
		close(d.lines)
	}()
	go func() { cmd.Wait(); close(d.done) }()
	t.Cleanup(func() {
		d.stop()
		if t.Failed() {
			t.Logf("linkbeat stderr:\n%s", d.stderr.String())
		}
	})
	if err := testkit.WaitLog(context.Background(), "linkbeat", d.stderr.String, d.done, testkit.Ready, 20*time.Second, 20*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	return d
}

func (d *daemon) stop() {
	d.cancel()
	<-d.done
}

// event is one line of `monitor --json`.
type event = testkit.MonitorEvent

// next returns the next event of ifname, failing after timeout.
func (d *daemon) next(t *testing.T, ifname string, timeout time.Duration) event {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case line, ok := <-d.lines:
			if !ok {
				t.Fatalf("linkbeat stdout closed while waiting for an event of %s", ifname)
			}
			var ev event
			if err := json.Unmarshal([]byte(line), &ev); err != nil {
				t.Fatalf("monitor printed a line that is not JSON: %q: %v", line, err)
			}
			if ev.Ifname == ifname {
				return ev
			}
		case <-deadline:
			t.Fatalf("no event for %s within %s", ifname, timeout)
		}
	}
}

// features runs `linkbeat features --json` in ns.
func (ns netns) features(t *testing.T) (carrierSource, tc string) {
	t.Helper()
	var f struct {
		CarrierSource string `json:"carrier_source"`
		TCMechanism   string `json:"tc_mechanism"`
	}
	out := ns.exec(t, binary(t), "features", "--json", "--log.level", "error")
	if err := json.Unmarshal([]byte(out), &f); err != nil {
		t.Fatalf("features --json: %v\n%s", err, out)
	}
	return f.CarrierSource, f.TCMechanism
}

func execQuiet(name string, args ...string) error {
	return exec.Command(name, args...).Run()
}

// do runs fn on a thread switched into ns: sockets and devices it creates
// belong to ns.
func (ns netns) do(t *testing.T, fn func()) {
	t.Helper()
	if err := testkit.Within(string(ns), fn); err != nil {
		t.Fatal(err)
	}
}

// vethPair creates a veth pair inside ns with both ends up: setting the
// peer down then drops a's carrier, like a pulled cable.
func (ns netns) vethPair(t *testing.T, a, peer string) {
	t.Helper()
	if err := testkit.VethPair(string(ns), a, peer); err != nil {
		t.Fatal(err)
	}
}
