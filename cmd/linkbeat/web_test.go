package main

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/linkbeat/linkbeat/internal/status"
)

func quietLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

// takenPort holds a loopback port for the test.
func takenPort(t *testing.T) (net.Listener, string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l, l.Addr().String()
}

func TestListenHintAndBackoff(t *testing.T) {
	for err, want := range map[error]string{
		syscall.EADDRNOTAVAIL: "ip link set lo up",
		syscall.EADDRINUSE:    "another process holds the port",
		syscall.EACCES:        "CAP_NET_BIND_SERVICE",
		syscall.EINVAL:        "check --web.listen-address",
	} {
		if got := listenHint(&net.OpError{Op: "listen", Err: err}); !strings.Contains(got, want) {
			t.Errorf("hint for %v = %q, want %q in it", err, got, want)
		}
	}
	var waits []time.Duration
	for d := listenRetryMin; len(waits) < 8; d = nextRetry(d) {
		waits = append(waits, d)
	}
	want := []time.Duration{1, 2, 4, 8, 16, 30, 30, 30}
	for i := range want {
		if waits[i] != want[i]*time.Second {
			t.Fatalf("backoff %v, want %v seconds", waits, want)
		}
	}
}

// With --web.fail-on-bind-error a taken port stops the start, with a
// message naming the address and the flag, and nothing stays bound.
func TestListenAllStrictRefuses(t *testing.T) {
	_, taken := takenPort(t)
	free, freeAddr := takenPort(t)
	free.Close()
	tel, err := newTelemetry(&opsFlags{listen: []string{freeAddr, taken}, telemetryPath: "/metrics", failOnBind: true}, quietLog())
	if err == nil {
		tel.Close()
		t.Fatal("strict: a taken port did not stop the start")
	}
	for _, want := range []string{"listen for metrics on " + taken, "address already in use", "--web.fail-on-bind-error"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	l, err := net.Listen("tcp", freeAddr)
	if err != nil {
		t.Fatalf("the address bound before the failure was left open: %v", err)
	}
	l.Close()
}

// Without it, a taken port is recorded (metrics, state file, notify) and
// retried; once freed, the exporter serves there, under the web config.
func TestTelemetryRetriesATakenPort(t *testing.T) {
	holder, addr := takenPort(t)
	// bcrypt of "s3cret" (cost 4), made once: the binary's module
	// needs no bcrypt import of its own.
	const hash = "$2a$04$sA4Pn8ZrZc4k0mLwcdTHPu8sNVAOtAP39M4UMpRhWfN5jEiTYcnt."
	webCfg := filepath.Join(t.TempDir(), "web.yml")
	if err := os.WriteFile(webCfg, []byte("basic_auth_users:\n  prom: "+hash+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tel, err := newTelemetry(&opsFlags{listen: []string{addr}, telemetryPath: "/metrics", webConfig: webCfg}, quietLog())
	if err != nil {
		t.Fatalf("a taken port stopped the start: %v", err)
	}
	defer tel.Close()
	var (
		mu       sync.Mutex
		notified [][]status.Listener
	)
	dir := t.TempDir()
	tel.book.started(dir, func(ls []status.Listener) { mu.Lock(); notified = append(notified, ls); mu.Unlock() })
	rec, err := status.ReadExporter(dir)
	if err != nil || rec == nil || len(rec.Down()) != 1 || !strings.Contains(rec.Down()[0].Error, "address already in use") {
		t.Fatalf("state file while the port is taken: %+v, %v", rec, err)
	}
	tel.serve()
	holder.Close()
	var body string
	for deadline := time.Now().Add(3 * listenRetryMax); ; time.Sleep(50 * time.Millisecond) {
		if resp, err := http.Get("http://" + addr + "/metrics"); err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("the retried listener served without credentials: HTTP %d", resp.StatusCode)
			}
			req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/metrics", nil)
			req.SetBasicAuth("prom", "s3cret")
			if resp, err = http.DefaultClient.Do(req); err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if body = string(b); !strings.Contains(body, "linkbeat_web_listen_up") {
				t.Fatalf("authenticated scrape: HTTP %d\n%.300s", resp.StatusCode, body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the exporter never served on the freed port")
		}
	}
	for _, want := range []string{`linkbeat_web_listen_up{address="` + addr + `"} 1`, `linkbeat_web_listen_failures_total{address="` + addr + `"} `} {
		if !strings.Contains(body, want) {
			t.Errorf("scrape lacks %q", want)
		}
	}
	if strings.Contains(body, `linkbeat_web_listen_failures_total{address="`+addr+`"} 0`) {
		t.Error("the failed attempts were not counted")
	}
	rec, err = status.ReadExporter(dir)
	if err != nil || rec == nil || len(rec.Down()) != 0 || rec.Listeners[0].Failures == 0 {
		t.Fatalf("state file once listening: %+v, %v", rec, err)
	}
	mu.Lock()
	last := notified[len(notified)-1]
	mu.Unlock()
	if !last[0].Listening {
		t.Errorf("the last notification says not listening: %+v", last)
	}
}

func TestNotifierStatusCarriesTheExporter(t *testing.T) {
	n := &notifier{log: quietLog()}
	down := []status.Listener{{Address: "[::1]:9089", Error: "bind: cannot assign requested address"}}
	n.exporterChanged(down)
	if got := n.statusLocked(); got != "STATUS=starting; metrics NOT served on [::1]:9089: bind: cannot assign requested address (retrying)" {
		t.Errorf("while starting: %q", got)
	}
	n.running = "monitoring 2 interfaces; carrier source fentry; tc tcx"
	n.exporterChanged([]status.Listener{{Address: "[::1]:9089", Listening: true}})
	if got := n.statusLocked(); got != "STATUS=monitoring 2 interfaces; carrier source fentry; tc tcx" {
		t.Errorf("once listening: %q", got)
	}
}

// Close ends a retry loop in its backoff, and closes listeners never served.
func TestTelemetryCloseWhileRetrying(t *testing.T) {
	_, taken := takenPort(t)
	free, freeAddr := takenPort(t)
	free.Close()
	tel, err := newTelemetry(&opsFlags{listen: []string{taken, freeAddr}, telemetryPath: "/metrics"}, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	tel.serve()
	done := make(chan struct{})
	go func() { tel.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(listenRetryMax):
		t.Fatal("Close did not end the retry loop")
	}
	l, err := net.Listen("tcp", freeAddr)
	if err != nil {
		t.Fatalf("Close left %s bound: %v", freeAddr, err)
	}
	l.Close()

	// Never served: Close still frees what was bound at start.
	tel, err = newTelemetry(&opsFlags{listen: []string{freeAddr}, telemetryPath: "/metrics"}, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	tel.Close()
	if l, err = net.Listen("tcp", freeAddr); err != nil {
		t.Fatalf("Close before serve left %s bound: %v", freeAddr, err)
	}
	l.Close()
}
