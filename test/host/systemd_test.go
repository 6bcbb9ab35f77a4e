package host

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// unitPath is the shipped unit, which `make install` installs.
const unitPath = "../../deploy/systemd/linkbeat.service"

// unit is a parsed unit file: every value of each Section.Key, in order.
type unit map[string][]string

func readUnit(t *testing.T) unit {
	t.Helper()
	f, err := os.Open(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u, section := unit{}, ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[':
			section = strings.Trim(line, "[]")
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("%s: not a key=value line: %q", unitPath, line)
			}
			key := section + "." + strings.TrimSpace(k)
			u[key] = append(u[key], strings.TrimSpace(v))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return u
}

// one is the single value of key; it fails when there is none or several.
func (u unit) one(t *testing.T, key string) string {
	t.Helper()
	if len(u[key]) != 1 {
		t.Fatalf("%s: want exactly one %s, have %q", unitPath, key, u[key])
	}
	return u[key][0]
}

// TestSystemdUnitVerifies runs systemd-analyze verify on the shipped unit.
// verify insists that ExecStart's binary exists, so it checks a copy whose
// ExecStart is the binary under test; nothing else is changed.
func TestSystemdUnitVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatalf("systemd-analyze missing (package systemd; scripts/install-deps.sh installs it): %v", err)
	}
	b, err := os.ReadFile(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	const shipped = "/usr/local/bin/linkbeat "
	if !strings.Contains(string(b), "ExecStart="+shipped) {
		t.Fatalf("the unit's ExecStart is not %s...", shipped)
	}
	dir := t.TempDir()
	copyPath := filepath.Join(dir, "linkbeat.service")
	if err := os.WriteFile(copyPath, []byte(strings.ReplaceAll(string(b), shipped, binary(t)+" ")), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(analyze, "verify", copyPath)
	var stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	// verify exits 0 on unknown keys and bad values, and only warns:
	// any output at all is a failure.
	if err := cmd.Run(); err != nil || stderr.Len() > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, stderr.String())
	}

	// The exposure score of the hardening, on systemd's 0-10 scale: 3.0
	// or less is its "OK"; a unit that loses hardening fails here.
	out, err := exec.Command(analyze, "security", "--offline=yes", "--threshold=30", copyPath).CombinedOutput()
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	t.Log(lines[len(lines)-1])
	if err != nil {
		t.Fatalf("systemd-analyze security: exposure above 3.0 (%v):\n%s", err, out)
	}

	u := readUnit(t)
	for key, want := range map[string]string{
		"Service.Type": "notify", "Service.NotifyAccess": "main", "Service.Restart": "on-failure",
		"Service.ExecReload": "/bin/kill -HUP $MAINPID", "Service.NoNewPrivileges": "yes",
		"Service.ProtectSystem": "strict", "Service.ProtectHome": "yes",
		"Service.RuntimeDirectory": "linkbeat", "Service.RuntimeDirectoryPreserve": "yes",
	} {
		if got := u.one(t, key); got != want {
			t.Errorf("%s=%s, want %s", key, got, want)
		}
	}
	if wd := u.one(t, "Service.WatchdogSec"); wd == "" || wd == "0" || wd == "infinity" {
		t.Errorf("WatchdogSec=%s: the watchdog is off", wd)
	}
	// The state directory the daemon uses by default is the one systemd
	// creates and preserves.
	if help := run(t, binary(t), "run", "--help"); !strings.Contains(help, "/run/linkbeat") {
		t.Errorf("run's --state-dir default is not /run/linkbeat:\n%s", help)
	}
}

// notifySocket is a service manager's end of the notify protocol: a
// unixgram socket whose datagrams arrive on msgs, each with what the
// daemon had logged and the routing table at the moment it was read.
type notifySocket struct {
	path string
	msgs chan notifyMsg
}

type notifyMsg struct {
	state  string
	log    string // the daemon's stderr so far
	routes string // `ip route show` in the daemon's netns
}

func listenNotify(t *testing.T, ns netns, logPath string) *notifySocket {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	s := &notifySocket{path: path, msgs: make(chan notifyMsg, 1024)}
	go func() {
		defer close(s.msgs)
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			m := notifyMsg{state: string(buf[:n])}
			// Taken before anything else can happen: READY's promises
			// must already hold when it is read.
			if strings.Contains(m.state, "READY=1") {
				b, _ := os.ReadFile(logPath)
				out, _ := exec.Command("ip", "-n", string(ns), "route", "show").CombinedOutput()
				m.log, m.routes = string(b), string(out)
			}
			s.msgs <- m
		}
	}()
	return s
}

// next returns the next datagram holding want, failing after timeout.
func (s *notifySocket) next(t *testing.T, want string, timeout time.Duration) notifyMsg {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case m, ok := <-s.msgs:
			if !ok {
				t.Fatalf("notify socket closed while waiting for %s", want)
			}
			if hasLine(m.state, want) {
				return m
			}
		case <-deadline:
			t.Fatalf("no %s on the notify socket within %s", want, timeout)
		}
	}
}

// count takes every datagram that arrives within d and counts those
// holding want.
func (s *notifySocket) count(want string, d time.Duration) int {
	n, deadline := 0, time.After(d)
	for {
		select {
		case m := <-s.msgs:
			if hasLine(m.state, want) {
				n++
			}
		case <-deadline:
			return n
		}
	}
}

func hasLine(state, want string) bool {
	for l := range strings.SplitSeq(state, "\n") {
		if l == want {
			return true
		}
	}
	return false
}

// startNotified runs `linkbeat run` in ns as systemd would: NOTIFY_SOCKET
// (and WATCHDOG_USEC if watchdog > 0) set, stderr into logPath.
func startNotified(t *testing.T, ns netns, sock *notifySocket, logPath string, watchdog time.Duration, args ...string) *exec.Cmd {
	t.Helper()
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command("ip", append([]string{"netns", "exec", string(ns), binary(t), "run"}, args...)...)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock.path)
	if watchdog > 0 {
		cmd.Env = append(cmd.Env, "WATCHDOG_USEC="+itoa(int(watchdog.Microseconds())))
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("linkbeat log:\n%s", b)
		}
	})
	return cmd
}

// stopNotified sends SIGTERM, as systemctl stop does, and waits.
func stopNotified(t *testing.T, cmd *exec.Cmd, sock *notifySocket) {
	t.Helper()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	m := sock.next(t, "STOPPING=1", 10*time.Second)
	t.Logf("at SIGTERM: %q", m.state)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			t.Fatalf("linkbeat exited with %v after SIGTERM", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("linkbeat did not exit after SIGTERM")
	}
}

// TestSystemdNotify: READY=1 comes after the daemon's "ready" and after
// the routes of a link found without carrier at start are withdrawn;
// without WATCHDOG_USEC no ping comes, with it pings keep coming; SIGTERM
// gives STOPPING=1.
func TestSystemdNotify(t *testing.T) {
	tp := seedSetup(t)
	// Many routes make the start-up withdrawal last long enough that a
	// READY sent ahead of it would be read before it ends.
	var batch strings.Builder
	for i := range 2000 {
		fmt.Fprintf(&batch, "route add 10.%d.%d.0/24 via 5.5.5.1 dev eth1\n", 100+i/256, i%256)
	}
	batchFile := filepath.Join(t.TempDir(), "routes.batch")
	must(t, os.WriteFile(batchFile, []byte(batch.String()), 0o644))
	tp.srv.ip(t, "-batch", batchFile)
	tp.sw.ip(t, "link", "set", "sw1", "down")
	waitFor(t, "eth1 to lose carrier", func() bool { return !carrierOf(t, tp.srv, "eth1") })
	if !strings.Contains(routeShow(t, tp.srv), "3.3.0.0/16") {
		t.Fatalf("the route to withdraw is missing before the start:\n%s", routeShow(t, tp.srv))
	}
	args := []string{"--interfaces", "eth0,eth1", "--bpffs-dir", pinDir(t), "--state-dir", t.TempDir()}

	t.Run("ready", func(t *testing.T) {
		logPath := filepath.Join(t.TempDir(), "linkbeat.log")
		sock := listenNotify(t, tp.srv, logPath)
		cmd := startNotified(t, tp.srv, sock, logPath, 0, args...)
		m := sock.next(t, "READY=1", 20*time.Second)
		t.Logf("READY datagram: %q", m.state)
		if !strings.Contains(m.log, "msg=ready") {
			t.Errorf("READY=1 before the daemon logged ready:\n%s", m.log)
		}
		if left := strings.Count(m.routes, "via 5.5.5.1"); left > 0 || !strings.Contains(m.log, `msg="link down" ifname=eth1`) {
			t.Errorf("READY=1 before eth1's routes were withdrawn: %d of them left then; log then:\n%s", left, m.log)
		}
		if !strings.Contains(m.state, "STATUS=monitoring 2 interfaces; carrier source ") {
			t.Errorf("no STATUS with the interface count and carrier source: %q", m.state)
		}
		// No watchdog asked for: no ping, and no timer behind one.
		if n := sock.count("WATCHDOG=1", 1500*time.Millisecond); n != 0 {
			t.Errorf("%d watchdog pings without WATCHDOG_USEC", n)
		}
		// systemctl reload: RELOADING=1 (with the monotonic time systemd
		// wants), then READY=1 again once the reload is done.
		must(t, cmd.Process.Signal(syscall.SIGHUP))
		if m := sock.next(t, "RELOADING=1", 10*time.Second); !strings.Contains(m.state, "MONOTONIC_USEC=") {
			t.Errorf("RELOADING=1 without MONOTONIC_USEC: %q", m.state)
		}
		if m := sock.next(t, "READY=1", 10*time.Second); !strings.Contains(m.log, `msg="config reloaded"`) {
			t.Errorf("READY=1 after SIGHUP before the reload was done; log then:\n%s", m.log)
		}
		stopNotified(t, cmd, sock)
	})

	t.Run("watchdog", func(t *testing.T) {
		const watchdog = 400 * time.Millisecond // pings every 200ms
		logPath := filepath.Join(t.TempDir(), "linkbeat.log")
		sock := listenNotify(t, tp.srv, logPath)
		cmd := startNotified(t, tp.srv, sock, logPath, watchdog, args...)
		sock.next(t, "READY=1", 20*time.Second)
		for i := range 5 {
			sock.next(t, "WATCHDOG=1", 10*time.Second)
			if i == 1 {
				// Events keep flowing between pings.
				tp.sw.ip(t, "link", "set", "sw1", "up")
			}
		}
		waitFor(t, "eth1's routes to come back", func() bool { return strings.Contains(routeShow(t, tp.srv), "3.3.0.0/16") })
		for range 3 {
			sock.next(t, "WATCHDOG=1", 10*time.Second)
		}
		// The liveness endpoint's limit is the watchdog's 400 ms: after
		// several of them it still answers 200 only because the event
		// loop's beats keep crossing the action queue.
		code, body := tp.srv.get(t, tp.srv.client(nil), "http://"+defaultMetrics+"/-/healthy", "", "")
		if code != http.StatusOK || !strings.HasPrefix(body, "healthy") {
			t.Errorf("/-/healthy with the loop running: HTTP %d %q, want 200 healthy", code, body)
		}
		stopNotified(t, cmd, sock)
	})
}
