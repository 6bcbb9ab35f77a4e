package script

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
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

// recordingLogger keeps what a run logged, to check the lines a user sees.
type recordingLogger struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *recordingLogger) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *recordingLogger) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func recording() (*slog.Logger, *recordingLogger) {
	rec := &recordingLogger{}
	return slog.New(slog.NewTextHandler(rec, nil)), rec
}

func TestFloodedOutputIsBoundedAndSaysSo(t *testing.T) {
	// 300 kB on one line, then 20 MB in short lines.
	p := writeScript(t, "head -c 300000 /dev/zero | tr '\\0' 'a'\necho\nyes 0123456789 | head -c 20000000\nexit 0\n")
	log, rec := recording()
	r := NewRunner(context.Background(), log, nil)
	res := r.Run(Job{Path: p, Ifname: "eth0"}, "")
	if res.Outcome != "success" {
		t.Fatalf("outcome %s: %v", res.Outcome, res.Err)
	}
	out := rec.String()
	if n := strings.Count(out, "msg=\"action script output\""); n < 2 || n > maxLines {
		t.Errorf("%d output lines logged, want between 2 and %d", n, maxLines)
	}
	if !strings.Contains(out, "…(line truncated)") {
		t.Error("the 300 kB line was not marked truncated")
	}
	if len(out) > 2*maxOutput {
		t.Errorf("logged %d bytes for a flood: not bounded", len(out))
	}
	if !strings.Contains(out, "msg=\"action script output truncated\"") || !strings.Contains(out, "discarded_bytes=") {
		t.Errorf("no truncation notice:\n%s", out[max(0, len(out)-500):])
	}
}

func TestOutputKeepsLastLineWithoutNewline(t *testing.T) {
	log, rec := recording()
	r := NewRunner(context.Background(), log, nil)
	r.Run(Job{Path: writeScript(t, "echo one\nprintf two\n"), Ifname: "eth0"}, "")
	if out := rec.String(); !strings.Contains(out, "line=one") || !strings.Contains(out, "line=two") {
		t.Fatalf("output lines missing:\n%s", out)
	}
}

// A child that puts itself in a new session escapes the process group
// kill; it must not hold the runner beyond the drain bound.
func TestEscapedChildDoesNotHoldTheRunner(t *testing.T) {
	log, rec := recording()
	r := NewRunner(context.Background(), log, nil)
	pidFile := filepath.Join(t.TempDir(), "pid")
	p := writeScript(t, "setsid sleep 30 &\necho $! > "+pidFile+"\necho started\nsleep 0.3\nexit 0\n")
	start := time.Now()
	res := r.Run(Job{Path: p, Ifname: "eth0"}, "")
	took := time.Since(start)
	if res.Outcome != "success" {
		t.Fatalf("outcome %s: %v", res.Outcome, res.Err)
	}
	if took > drainDelay+5*time.Second {
		t.Fatalf("run took %s: the escaped child held it", took)
	}
	if !strings.Contains(rec.String(), "holding its output open") {
		t.Fatalf("no log line about the escaped child:\n%s", rec.String())
	}
	b, _ := os.ReadFile(pidFile)
	if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
		syscall.Kill(pid, syscall.SIGKILL) // the escaped child, by its id
	}
}

// A child that stays in the group is killed when the script exits.
func TestBackgroundChildIsKilledWhenScriptExits(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "child-alive")
	p := writeScript(t, "(sleep 1; touch "+marker+") >/dev/null 2>&1 &\nexit 0\n")
	r := NewRunner(context.Background(), quiet(), nil)
	if res := r.Run(Job{Path: p, Ifname: "eth0"}, ""); res.Outcome != "success" {
		t.Fatalf("outcome %s: %v", res.Outcome, res.Err)
	}
	time.Sleep(1500 * time.Millisecond)
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("the script's background child outlived it")
	}
}

func TestNotExecutableIsAnErrorThatSaysWhy(t *testing.T) {
	p := filepath.Join(t.TempDir(), "action.sh")
	os.WriteFile(p, []byte("#!/bin/sh\nexit 0\n"), 0o644)
	noShebang := filepath.Join(t.TempDir(), "action.txt")
	os.WriteFile(noShebang, []byte("exit 0\n"), 0o755)
	for _, c := range []struct{ path, want string }{
		{p, "not executable: chmod +x"},
		{noShebang, "neither a binary nor a script with a #! line"},
		{"/nonexistent/script", "does not exist"},
	} {
		log, rec := recording()
		r := NewRunner(context.Background(), log, nil)
		res := r.Run(Job{Path: c.path, Ifname: "eth0"}, "")
		if res.Outcome != "error" || res.Err == nil || !strings.Contains(res.Err.Error(), c.want) {
			t.Errorf("%s: outcome %s, err %v, want error containing %q", c.path, res.Outcome, res.Err, c.want)
		}
		if !strings.Contains(rec.String(), "action script did not start") || !strings.Contains(rec.String(), c.want) {
			t.Errorf("%s: log %q lacks the reason", c.path, rec.String())
		}
	}
}

func TestEnvironmentIsFixedAndAllowListed(t *testing.T) {
	t.Setenv("LINKBEAT_TEST_SECRET", "s3cret")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "s3cret")
	t.Setenv("PATH", "/tmp/evil:"+os.Getenv("PATH"))
	t.Setenv("LANG", "C.UTF-8")
	t.Setenv("TZ", "UTC")
	out := filepath.Join(t.TempDir(), "env")
	p := writeScript(t, "env > "+out+"\n")
	r := NewRunner(context.Background(), quiet(), nil)
	if res := r.Run(Job{Path: p, Ifname: "eth0", Up: true, Env: Env(3, "netlink", 5, "bond0", "eth0")}, "down"); res.Outcome != "success" {
		t.Fatalf("outcome %s: %v", res.Outcome, res.Err)
	}
	b, _ := os.ReadFile(out)
	got := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		k, v, _ := strings.Cut(l, "=")
		got[k] = v
	}
	want := map[string]string{
		"PATH": SafePath, "LANG": "C.UTF-8", "TZ": "UTC",
		"IFPLUGD_PREVIOUS": "down", "IFPLUGD_CURRENT": "up",
		"LINKBEAT_IFINDEX": "3", "LINKBEAT_SOURCE": "netlink", "LINKBEAT_KERNEL_TIME_NS": "5",
		"LINKBEAT_BOND": "bond0", "LINKBEAT_SLAVE": "eth0",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s=%q, want %q", k, got[k], v)
		}
	}
	// The shell itself adds PWD, SHLVL and _.
	shell := map[string]bool{"PWD": true, "SHLVL": true, "_": true, "OLDPWD": true}
	for k := range got {
		if _, ok := want[k]; !ok && !shell[k] {
			t.Errorf("daemon variable %s leaked into the script", k)
		}
	}
}

// capSets reads the capability sets of /proc/self/status as the script saw
// them.
func capSets(t *testing.T, status string) map[string]uint64 {
	t.Helper()
	sets := map[string]uint64{}
	for _, l := range strings.Split(status, "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		switch k {
		case "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs":
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				t.Fatalf("%s: %v", l, err)
			}
			sets[k] = n
		}
	}
	return sets
}

func TestCapabilitiesAreLimited(t *testing.T) {
	const netAdmin, netRaw = 1 << 12, 1 << 13
	for _, c := range []struct {
		name string
		caps []string
		want uint64
	}{{"default", nil, netAdmin}, {"configured", []string{"CAP_NET_ADMIN", "net_raw"}, netAdmin | netRaw}, {"none", []string{}, 0}} {
		t.Run(c.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "status")
			p := writeScript(t, "cat /proc/self/status > "+out+"\n")
			r := NewRunner(context.Background(), quiet(), nil)
			if res := r.Run(Job{Path: p, Ifname: "eth0", Capabilities: c.caps}, ""); res.Outcome != "success" {
				t.Fatalf("outcome %s: %v", res.Outcome, res.Err)
			}
			b, _ := os.ReadFile(out)
			sets := capSets(t, string(b))
			if sets["NoNewPrivs"] != 1 {
				t.Errorf("NoNewPrivs %d, want 1", sets["NoNewPrivs"])
			}
			want := c.want
			if os.Geteuid() != 0 {
				want = 0 // a non-root test process holds none to pass on
			} else if sets["CapBnd"] != want {
				t.Errorf("CapBnd %#x, want %#x", sets["CapBnd"], want)
			}
			for _, k := range []string{"CapEff", "CapPrm", "CapAmb", "CapInh"} {
				if sets[k] != want {
					t.Errorf("%s %#x, want %#x", k, sets[k], want)
				}
			}
		})
	}
	// The daemon's own thread pool is untouched.
	b, _ := os.ReadFile("/proc/self/status")
	if sets := capSets(t, string(b)); os.Geteuid() == 0 && sets["CapEff"]&(1<<21) == 0 {
		t.Errorf("the test process lost CAP_SYS_ADMIN: CapEff %#x", sets["CapEff"])
	}
}

func TestUnknownCapabilityIsRefused(t *testing.T) {
	r := NewRunner(context.Background(), quiet(), nil)
	res := r.Run(Job{Path: writeScript(t, "exit 0\n"), Ifname: "eth0", Capabilities: []string{"CAP_NET_ADMNI"}}, "")
	if res.Outcome != "error" || !strings.Contains(res.Err.Error(), `"CAP_NET_ADMNI" is not a capability`) {
		t.Fatalf("outcome %s, err %v", res.Outcome, res.Err)
	}
}
