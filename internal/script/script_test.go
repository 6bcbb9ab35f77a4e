package script

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func writeScript(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "action.sh")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestRunArgsAndEnvironment(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	p := writeScript(t, `echo "$1 $2 $3 prev=$IFPLUGD_PREVIOUS cur=$IFPLUGD_CURRENT idx=$LINKBEAT_IFINDEX src=$LINKBEAT_SOURCE" > `+out+"\n")
	r := NewRunner(context.Background(), quiet(), nil)
	res := r.Run(Job{Path: p, Extra: "x1", Ifname: "eth1", Up: false, Env: Env(4, "fentry", 99, "", "")}, "up")
	if res.Outcome != "success" {
		t.Fatalf("outcome %s: %v", res.Outcome, res.Err)
	}
	got, _ := os.ReadFile(out)
	if want := "eth1 down x1 prev=up cur=down idx=4 src=fentry\n"; string(got) != want {
		t.Fatalf("script saw %q, want %q", got, want)
	}
}

func TestTimeoutKillsProcessGroup(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "child-alive")
	// The child would touch the marker after the timeout if it survived.
	p := writeScript(t, "(sleep 2; touch "+marker+") &\nsleep 30\n")
	r := NewRunner(context.Background(), quiet(), nil)
	start := time.Now()
	res := r.Run(Job{Path: p, Ifname: "eth0", Up: true, Timeout: 300 * time.Millisecond}, "")
	if res.Outcome != "timeout" {
		t.Fatalf("outcome %s, want timeout", res.Outcome)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("timeout took %s", d)
	}
	time.Sleep(2500 * time.Millisecond)
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("the script's child survived the timeout")
	}
}

func TestFailureAndMissingScriptAreResults(t *testing.T) {
	r := NewRunner(context.Background(), quiet(), nil)
	if res := r.Run(Job{Path: writeScript(t, "exit 3\n"), Ifname: "eth0"}, ""); res.Outcome != "failure" || res.ExitCode != 3 {
		t.Fatalf("got %s/%d", res.Outcome, res.ExitCode)
	}
	if res := r.Run(Job{Path: "/nonexistent/script", Ifname: "eth0"}, ""); res.Outcome != "error" || res.Err == nil {
		t.Fatalf("got %s", res.Outcome)
	}
}

func TestSubmitCoalescesToFinalState(t *testing.T) {
	log := filepath.Join(t.TempDir(), "runs")
	p := writeScript(t, "echo $2 >> "+log+"\nsleep 0.3\n")
	var mu sync.Mutex
	var results []Result
	r := NewRunner(context.Background(), quiet(), func(res Result) { mu.Lock(); results = append(results, res); mu.Unlock() })
	// The first run (down) is slow; 19 more changes arrive meanwhile.
	for i := 0; i < 20; i++ {
		r.Submit(Job{Path: p, Ifname: "eth0", Up: i%2 == 1})
		time.Sleep(5 * time.Millisecond)
	}
	r.Submit(Job{Path: p, Ifname: "eth0", Up: true})
	r.Wait()
	runs, _ := os.ReadFile(log)
	lines := strings.Fields(string(runs))
	if len(lines) != 2 || lines[0] != "down" || lines[1] != "up" {
		t.Fatalf("runs %v, want [down up]", lines)
	}
	if len(results) != 2 {
		t.Fatalf("%d results", len(results))
	}
}

func TestFloodedOutputIsBounded(t *testing.T) {
	p := writeScript(t, "head -c 300000 /dev/zero | tr '\\0' 'a'\necho\nexit 0\n")
	r := NewRunner(context.Background(), quiet(), nil)
	if res := r.Run(Job{Path: p, Ifname: "eth0"}, ""); res.Outcome != "success" {
		t.Fatalf("outcome %s: %v", res.Outcome, res.Err)
	}
}
