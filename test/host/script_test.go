package host

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// waitFile waits until path holds at least n lines and returns them.
func waitLines(t *testing.T, path string, n int, timeout time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		b, _ := os.ReadFile(path)
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if len(b) > 0 && len(lines) >= n {
			return lines
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s has %q after %s, want %d lines", path, b, timeout, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func writeScript(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "action.sh")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestActionScriptArgumentsAndEnvironment(t *testing.T) {
	ns := newNetns(t)
	ns.vethPair(t, "lbs0", "lbs1")
	out := filepath.Join(t.TempDir(), "calls")
	sc := writeScript(t, `echo "$# $1 $2 prev=$IFPLUGD_PREVIOUS cur=$IFPLUGD_CURRENT idx=$LINKBEAT_IFINDEX src=$LINKBEAT_SOURCE t=${LINKBEAT_KERNEL_TIME_NS:+set}" >> `+out+"\n")
	ns.start(t, "run", "--interfaces", "lbs0", "--action-script", sc, "--bpffs-dir", pinDir(t), "--state-dir", t.TempDir(), "--no-script-on-exit")
	src := expectedSource(t, ns)
	idx := ns.ifindex(t, "lbs0")

	ns.ip(t, "link", "set", "lbs1", "down")
	lines := waitLines(t, out, 1, eventTimeout)
	want := "2 lbs0 down prev=down cur=down idx=" + itoa(idx) + " src=" + src + " t=set"
	if lines[0] != want {
		t.Fatalf("script call %q, want %q", lines[0], want)
	}
	ns.ip(t, "link", "set", "lbs1", "up")
	lines = waitLines(t, out, 2, eventTimeout)
	if want := "2 lbs0 up prev=down cur=up idx=" + itoa(idx) + " src=" + src + " t=set"; lines[1] != want {
		t.Fatalf("script call %q, want %q", lines[1], want)
	}
}

func TestHangingScriptIsKilledAndLaterEventsStillRun(t *testing.T) {
	ns := newNetns(t)
	ns.vethPair(t, "lbh0", "lbh1")
	dir := t.TempDir()
	out := filepath.Join(dir, "calls")
	// The down run hangs past its timeout; the up run must still happen.
	sc := writeScript(t, `echo "$2" >> `+out+"\n"+`[ "$2" = down ] && exec sleep 60`+"\nexit 0\n")
	cfg := filepath.Join(dir, "linkbeat.yaml")
	os.WriteFile(cfg, []byte("interfaces:\n  lbh0:\n    script: "+sc+"\n    script_timeout: 500ms\n"), 0o644)
	d := ns.start(t, "run", "--config", cfg, "--bpffs-dir", pinDir(t), "--state-dir", dir, "--no-script-on-exit")

	ns.ip(t, "link", "set", "lbh1", "down")
	waitLines(t, out, 1, eventTimeout)
	ns.ip(t, "link", "set", "lbh1", "up")
	lines := waitLines(t, out, 2, eventTimeout)
	if lines[0] != "down" || lines[1] != "up" {
		t.Fatalf("runs %v, want [down up]", lines)
	}
	deadline := time.Now().Add(eventTimeout)
	for !strings.Contains(d.stderr.String(), "action script timed out") {
		if time.Now().After(deadline) {
			t.Fatalf("no timeout logged:\n%s", d.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestFlapStormWithDampening(t *testing.T) {
	ns := newNetns(t)
	// veth, not tap: linkwatch sends a veth's notices at once, so the
	// netlink source sees each flap (a tap's are batched for up to 1s).
	ns.vethPair(t, "lbf0", "lbf1")
	dir := t.TempDir()
	out := filepath.Join(dir, "calls")
	sc := writeScript(t, `echo "$2" >> `+out+"\n")
	cfg := filepath.Join(dir, "linkbeat.yaml")
	os.WriteFile(cfg, []byte("interfaces:\n  lbf0:\n    script: "+sc+"\n    dampening: {transitions: 4, window: 1s, hold_down: 1s}\n"), 0o644)
	d := ns.start(t, "run", "--config", cfg, "--bpffs-dir", pinDir(t), "--state-dir", dir, "--no-script-on-exit")

	// 20 flaps (40 changes) within about a second, ending with carrier up.
	for i := 0; i < 40; i++ {
		state := "down"
		if i%2 == 1 {
			state = "up"
		}
		ns.ip(t, "link", "set", "lbf1", state)
		time.Sleep(20 * time.Millisecond)
	}
	// The hold-down ends 1s after the last flap; the link is then up.
	waitLines(t, out, 2, 15*time.Second)
	time.Sleep(1500 * time.Millisecond)
	b, _ := os.ReadFile(out)
	lines := strings.Fields(string(b))
	t.Logf("script runs for 20 flaps: %v", lines)
	if len(lines) >= 20 {
		t.Fatalf("script ran %d times for 20 flaps: dampening did not hold", len(lines))
	}
	if lines[len(lines)-1] != "up" {
		t.Fatalf("last script run %q, want up (carrier ended up)", lines[len(lines)-1])
	}
	if !strings.Contains(d.stderr.String(), "reason=hold_down_end") {
		t.Fatalf("the link never came back through the hold-down's end:\n%s", d.stderr.String())
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestFailingScriptDoesNotStopLaterEvents(t *testing.T) {
	ns := newNetns(t)
	ns.vethPair(t, "lbx0", "lbx1")
	out := filepath.Join(t.TempDir(), "calls")
	sc := writeScript(t, `echo "$2" >> `+out+"\nexit 1\n")
	d := ns.start(t, "run", "--interfaces", "lbx0", "--action-script", sc, "--bpffs-dir", pinDir(t), "--state-dir", t.TempDir(), "--no-script-on-exit")
	for i, state := range []string{"down", "up", "down"} {
		ns.ip(t, "link", "set", "lbx1", state)
		if lines := waitLines(t, out, i+1, eventTimeout); lines[i] != state {
			t.Fatalf("run %d: %q, want %q", i, lines[i], state)
		}
	}
	if n := strings.Count(d.stderr.String(), "action script failed"); n < 2 {
		t.Fatalf("%d failures logged, want each run's:\n%s", n, d.stderr.String())
	}
}
