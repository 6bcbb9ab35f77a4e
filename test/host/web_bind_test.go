package host

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The exporter is a side part of a failover daemon: an
// address it cannot listen on must not stop failover. These tests start
// the real daemon in a netns where the bind fails, check that routes are
// still withdrawn and restored, that the failure is shown, and that the
// exporter serves once the address can be bound.

// exporterRetryWindow bounds the wait for a retried bind: linkbeat retries
// at most 30 s apart; twice that leaves room for a loaded machine.
const exporterRetryWindow = 60 * time.Second

// exporterListener is one listener of `status --json`'s daemon.exporter.
type exporterListener struct {
	Address   string `json:"address"`
	Listening bool   `json:"listening"`
	Error     string `json:"error"`
	Hint      string `json:"hint"`
	Failures  uint64 `json:"failures"`
}

// exporterStatus runs `linkbeat status --json` in ns and returns what it
// says of the running daemon's exporter.
func (ns netns) exporterStatus(t *testing.T, stateDir, pins string) []exporterListener {
	t.Helper()
	var r struct {
		Daemon struct {
			Running  bool               `json:"running"`
			Exporter []exporterListener `json:"exporter"`
		} `json:"daemon"`
	}
	out := ns.exec(t, binary(t), "status", "--json", "--state-dir", stateDir, "--bpffs-dir", pins)
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	if !r.Daemon.Running {
		t.Fatalf("status says the daemon is not running:\n%s", out)
	}
	return r.Daemon.Exporter
}

// tryScrape is one scrape from inside ns; ok false while nothing serves.
func (ns netns) tryScrape(addr string) (string, bool) {
	c := ns.client(nil)
	c.Timeout = 2 * time.Second
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		return "", false
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		b.WriteString(string(buf[:n]))
		if err != nil {
			break
		}
	}
	return b.String(), resp.StatusCode == 200 && strings.Contains(b.String(), "linkbeat_build_info{")
}

// awaitExporter polls addr until linkbeat serves there, and returns that
// scrape.
func (ns netns) awaitExporter(t *testing.T, d *daemon, addr string) string {
	t.Helper()
	var body string
	waitLong(t, exporterRetryWindow, "the exporter to serve on "+addr, func() bool {
		select {
		case <-d.done:
			t.Fatalf("linkbeat exited:\n%s", d.stderr.String())
		default:
		}
		var ok bool
		body, ok = ns.tryScrape(addr)
		return ok
	})
	return body
}

// checkListening: addr listens in the scrape and in status, after at least
// one failed attempt.
func checkListening(t *testing.T, ns netns, body, addr, stateDir, pins string) {
	t.Helper()
	if v, ok := sample(t, body, `linkbeat_web_listen_up{address="`+addr+`"}`); !ok || v != 1 {
		t.Errorf("linkbeat_web_listen_up for %s: %v (present %v), want 1", addr, v, ok)
	}
	if v, ok := sample(t, body, `linkbeat_web_listen_failures_total{address="`+addr+`"}`); !ok || v < 1 {
		t.Errorf("linkbeat_web_listen_failures_total for %s: %v (present %v), want the failed attempts", addr, v, ok)
	}
	for _, l := range ns.exporterStatus(t, stateDir, pins) {
		if l.Address == addr && (!l.Listening || l.Failures == 0) {
			t.Errorf("status once serving: %+v", l)
		}
	}
}

// awaitRetries waits until status shows n failed attempts on addr: the
// bind at start and n-1 retries, so that a single retry is not enough.
func awaitRetries(t *testing.T, ns netns, addr, stateDir, pins string, n uint64) {
	t.Helper()
	waitLong(t, exporterRetryWindow, "retries of "+addr, func() bool {
		for _, l := range ns.exporterStatus(t, stateDir, pins) {
			if l.Address == addr {
				if l.Listening {
					t.Fatalf("%s listens while it cannot be bound: %+v", addr, l)
				}
				return l.Failures >= n
			}
		}
		t.Fatalf("status shows no exporter listener %s", addr)
		return false
	})
}

// checkNotListening: status and features show addr's bind error.
func checkNotListening(t *testing.T, ns netns, addr, stateDir, pins, errText string) {
	t.Helper()
	found := false
	for _, l := range ns.exporterStatus(t, stateDir, pins) {
		if l.Address != addr {
			continue
		}
		found = true
		if l.Listening || !strings.Contains(l.Error, errText) || l.Hint == "" || l.Failures == 0 {
			t.Errorf("status of %s while it cannot be bound: %+v, want not listening with %q and a hint", addr, l, errText)
		}
	}
	if !found {
		t.Errorf("status shows no exporter listener %s", addr)
	}
	text := ns.exec(t, binary(t), "status", "--state-dir", stateDir, "--bpffs-dir", pins)
	if !strings.Contains(text, "metrics:   NOT listening on "+addr) {
		t.Errorf("status text does not show the bind error:\n%s", text)
	}
	ok, detail := ns.featuresVia(t, nil, "--state-dir", stateDir).check(t, "exporter")
	if ok || !strings.Contains(detail, "NOT listening on "+addr) || !strings.Contains(detail, errText) {
		t.Errorf("features' exporter check: ok=%v %q", ok, detail)
	}
}

// downLoopback takes loopback down with its addresses, as a netns whose
// lo was never configured: 127.0.0.1 and ::1 cannot be bound until lo is
// up again, which gives both back.
func downLoopback(t *testing.T, ns netns) {
	t.Helper()
	ns.ip(t, "link", "set", "lo", "down")
	ns.ip(t, "addr", "flush", "dev", "lo")
}

// TestExporterLoopbackDownFailoverRunsOn: loopback down, so the default
// address cannot be bound. The daemon runs, fails over, shows the error,
// and serves once lo is up.
func TestExporterLoopbackDownFailoverRunsOn(t *testing.T) {
	ns := newNetns(t)
	downLoopback(t, ns)
	routedVeth(t, ns, "lbe0", "lbe1", "10.71.0", "198.51.110.0/24")
	stateDir, pins := t.TempDir(), pinDir(t)
	const addr = defaultMetrics
	d := ns.start(t, "run", "--interfaces", "lbe0", "--bpffs-dir", pins, "--state-dir", stateDir, "--no-script-on-exit")
	waitLog(t, d, `level=ERROR msg="metrics exporter cannot listen: failover runs on without it; retrying" component=web address=`+addr, eventTimeout)
	if !strings.Contains(d.stderr.String(), "ip link set lo up") {
		t.Errorf("the error does not say what to do:\n%s", d.stderr.String())
	}
	checkNotListening(t, ns, addr, stateDir, pins, "cannot assign requested address")

	checkFailover(t, ns, "lbe1", "198.51.110.0/24")
	awaitRetries(t, ns, addr, stateDir, pins, 3)

	ns.ip(t, "link", "set", "lo", "up")
	body := ns.awaitExporter(t, d, addr)
	checkListening(t, ns, body, addr, stateDir, pins)
	waitLog(t, d, `msg="metrics exporter listening after failed attempts" component=web address=`+addr, eventTimeout)
	// Failover still works with the exporter up.
	checkFailover(t, ns, "lbe1", "198.51.110.0/24")
}

// TestExporterPortTakenFailoverRunsOn: another process holds the port.
// The daemon runs, fails over, shows the error (in status, features,
// systemd's STATUS= and, through a second address, the metrics), and
// binds once the port is freed.
func TestExporterPortTakenFailoverRunsOn(t *testing.T) {
	ns := newNetns(t)
	routedVeth(t, ns, "lbp0", "lbp1", "10.72.0", "198.51.111.0/24")
	const taken, other = "127.0.0.1:9089", "127.0.0.1:9090"
	var holder net.Listener
	ns.do(t, func() {
		var err error
		if holder, err = net.Listen("tcp", taken); err != nil {
			t.Fatal(err)
		}
	})
	defer holder.Close()
	stateDir, pins := t.TempDir(), pinDir(t)
	logPath := filepath.Join(t.TempDir(), "linkbeat.log")
	sock := listenNotify(t, ns, logPath)
	cmd := startNotified(t, ns, sock, logPath, 0, "--interfaces", "lbp0", "--bpffs-dir", pins, "--state-dir", stateDir,
		"--no-script-on-exit", "--web.listen-address", taken, "--web.listen-address", other)
	ready := sock.next(t, "READY=1", 20*time.Second)
	if !strings.Contains(ready.state, "STATUS=monitoring 1 interfaces;") ||
		!strings.Contains(ready.state, "; metrics NOT served on "+taken+": listen tcp "+taken+": bind: address already in use (retrying)") {
		t.Errorf("READY's STATUS= does not show the taken port: %q", ready.state)
	}
	if !strings.Contains(ready.log, "level=ERROR") || !strings.Contains(ready.log, "another process holds the port") {
		t.Errorf("the bind error was not logged with what to do:\n%s", ready.log)
	}
	checkNotListening(t, ns, taken, stateDir, pins, "address already in use")
	// The other address serves, and says the first does not listen.
	body, ok := ns.tryScrape(other)
	if !ok {
		t.Fatalf("no scrape on %s", other)
	}
	if v, ok := sample(t, body, `linkbeat_web_listen_up{address="`+taken+`"}`); !ok || v != 0 {
		t.Errorf("linkbeat_web_listen_up for the taken %s: %v (present %v), want 0", taken, v, ok)
	}

	checkFailover(t, ns, "lbp1", "198.51.111.0/24")
	awaitRetries(t, ns, taken, stateDir, pins, 3)

	holder.Close()
	waitLong(t, exporterRetryWindow, "STATUS= without the exporter's error", func() bool {
		select {
		case m := <-sock.msgs:
			return strings.Contains(m.state, "STATUS=monitoring 1 interfaces;") && !strings.Contains(m.state, "NOT served")
		case <-time.After(time.Second):
			return false
		}
	})
	body, ok = ns.tryScrape(taken)
	if !ok {
		t.Fatalf("STATUS= says %s serves, but no scrape there", taken)
	}
	checkListening(t, ns, body, taken, stateDir, pins)
	stopNotified(t, cmd, sock)
}

// TestExporterFailOnBindError: with --web.fail-on-bind-error an address
// that cannot be bound stops the start with a clear message, before
// linkbeat touches anything (no state recorded, routes as they were).
func TestExporterFailOnBindError(t *testing.T) {
	for _, tc := range []struct {
		name, addr, want string
		setup            func(t *testing.T, ns netns)
	}{
		{"port taken", "127.0.0.1:9089", "bind: address already in use; another process holds the port", func(t *testing.T, ns netns) {
			ns.do(t, func() {
				l, err := net.Listen("tcp", "127.0.0.1:9089")
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { l.Close() })
			})
		}},
		{"loopback down", "127.0.0.1:9089", "bind: cannot assign requested address; the address is on no interface that is up", downLoopback},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := newNetns(t)
			routedVeth(t, ns, "lbf0", "lbf1", "10.73.0", "198.51.112.0/24")
			tc.setup(t, ns)
			stateDir := t.TempDir()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, "ip", "netns", "exec", string(ns), binary(t), "run", "--interfaces", "lbf0",
				"--bpffs-dir", pinDir(t), "--state-dir", stateDir, "--web.listen-address", tc.addr, "--web.fail-on-bind-error")
			out, err := cmd.CombinedOutput()
			if ctx.Err() != nil {
				t.Fatalf("linkbeat kept running with --web.fail-on-bind-error:\n%s", out)
			}
			if cmd.ProcessState == nil || cmd.ProcessState.ExitCode() == 0 {
				t.Fatalf("exit %v, want non-zero:\n%s", err, out)
			}
			want := "linkbeat: listen for metrics on " + tc.addr + " (--web.listen-address): listen tcp " + tc.addr + ": " + tc.want
			if !strings.Contains(string(out), want) || !strings.Contains(string(out), "not starting, as --web.fail-on-bind-error asks") {
				t.Errorf("message: want %q and the flag named in:\n%s", want, out)
			}
			if _, err := os.Stat(filepath.Join(stateDir, "daemon.json")); err == nil {
				t.Errorf("linkbeat recorded a run it refused to start")
			}
			if !hasRoute(t, ns, "198.51.112.0/24") {
				t.Errorf("the route is gone after a refused start")
			}
		})
	}
}
