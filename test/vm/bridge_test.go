package vm

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The guest-to-host bridge (parseGuestOutput, replay, report) against
// canned guest transcripts (testdata/transcripts/README): no VM needed.

// outline is a parsed report's tests, one "name=action" a test in run
// order, subtests after their parent.
func outline(ts []*guestTest) string {
	var b []string
	var walk func([]*guestTest)
	walk = func(ts []*guestTest) {
		for _, gt := range ts {
			b = append(b, gt.Name+"="+gt.Action)
			walk(gt.Subs)
		}
	}
	walk(ts)
	return strings.Join(b, " ")
}

func readTranscript(t *testing.T, name string) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", "transcripts", name+".txt"))
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func findTest(ts []*guestTest, name string) *guestTest {
	for _, gt := range ts {
		if gt.Name == name {
			return gt
		}
		if s := findTest(gt.Subs, name); s != nil {
			return s
		}
	}
	return nil
}

func TestParseGuestOutput(t *testing.T) {
	for _, c := range []struct {
		transcript string
		outline    string
		exit       int
		pkg        string
		// output: a test's output must contain this line ("" for none).
		test, output string
	}{
		{"fail", "TestPass=pass TestPass/sub=pass TestFail=fail TestFail/ok=pass TestFail/bad=fail TestSkip=skip", 1, "fail",
			"TestFail/bad", "    g_test.go:16: eth1 never became active\n"},
		{"pass", "TestPass=pass TestPass/sub=pass TestSkip=skip", 0, "pass", "TestSkip", "    g_test.go:19: no bonding module\n"},
		{"pass-no-exit", "TestPass=pass TestPass/sub=pass TestSkip=skip", -1, "pass", "", ""},
		// The binary dies in the panic: no result for the test, no
		// package result, the stack with the test that panicked.
		{"panic", "TestPass=pass TestPass/sub=pass TestSkip=skip TestPanic=", 2, "",
			"TestPanic", "panic: assignment to entry in nil map [recovered, repanicked]\n"},
		{"hang", "TestPass=pass TestPass/sub=pass TestHang=", -1, "", "TestHang", "    g_test.go:28: waiting for the peer\n"},
	} {
		t.Run(c.transcript, func(t *testing.T) {
			rep, err := parseGuestOutput(readTranscript(t, c.transcript))
			if err != nil {
				t.Fatal(err)
			}
			if got := outline(rep.Tests); got != c.outline {
				t.Errorf("tests %q, want %q", got, c.outline)
			}
			if rep.ExitCode != c.exit || rep.PkgAction != c.pkg {
				t.Errorf("exit status %d, package result %q; want %d, %q", rep.ExitCode, rep.PkgAction, c.exit, c.pkg)
			}
			if c.test == "" {
				return
			}
			gt := findTest(rep.Tests, c.test)
			if gt == nil {
				t.Fatalf("no %s", c.test)
			}
			if !strings.Contains(strings.Join(gt.Output, ""), c.output) {
				t.Errorf("%s output %q lacks %q", c.test, gt.Output, c.output)
			}
		})
	}
}

// bridgeEnv hands TestGuestBridgeProcess the transcript to report.
const bridgeEnv = "LINKBEAT_VM_BRIDGE_TRANSCRIPT"

// TestGuestBridge reports each transcript as the VM tests do, in a test
// binary of its own (a failing replay must fail that binary, not this
// one), and checks what it said: every guest result carried over, and
// every abnormal end a failure.
func TestGuestBridge(t *testing.T) {
	for _, c := range []struct {
		transcript string
		ok         bool
		want       []string
	}{
		{"pass", true, []string{
			"--- PASS: TestGuestBridgeProcess/TestPass/sub", "--- PASS: TestGuestBridgeProcess/TestPass ",
			"--- SKIP: TestGuestBridgeProcess/TestSkip", "g_test.go:19: no bonding module",
		}},
		{"fail", false, []string{
			"--- PASS: TestGuestBridgeProcess/TestFail/ok", "--- FAIL: TestGuestBridgeProcess/TestFail/bad",
			"guest test TestFail/bad failed", "g_test.go:16: eth1 never became active",
			"--- FAIL: TestGuestBridgeProcess/TestFail ", "--- SKIP: TestGuestBridgeProcess/TestSkip",
		}},
		{"pass-no-exit", false, []string{
			"--- PASS: TestGuestBridgeProcess/TestPass ", "the guest never reported an exit status", "guest console",
		}},
		{"panic", false, []string{
			"--- SKIP: TestGuestBridgeProcess/TestSkip", "--- FAIL: TestGuestBridgeProcess/TestPanic",
			"guest test TestPanic panicked: panic: assignment to entry in nil map", "g_test.go:24",
			"the guest test binary exited with status 2", "guest console",
		}},
		{"hang", false, []string{
			"--- PASS: TestGuestBridgeProcess/TestPass ", "--- FAIL: TestGuestBridgeProcess/TestHang",
			"guest test TestHang started but never finished", "the guest never reported an exit status",
			"guest console", "linkbeat-vm: running /guest.test",
		}},
	} {
		t.Run(c.transcript, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestGuestBridgeProcess$", "-test.v")
			cmd.Env = append(os.Environ(), bridgeEnv+"="+filepath.Join("testdata", "transcripts", c.transcript+".txt"))
			b, err := cmd.CombinedOutput()
			out := string(b)
			switch {
			case c.ok && err != nil:
				t.Errorf("reporting %s: %v, want it to pass", c.transcript, err)
			case !c.ok && err == nil:
				t.Errorf("reporting %s passed, want it to fail", c.transcript)
			}
			if strings.Contains(out, "--- SKIP: TestGuestBridgeProcess ") {
				t.Fatalf("the bridge process did not get its transcript:\n%s", out)
			}
			for _, w := range c.want {
				if !strings.Contains(out, w) {
					t.Errorf("the report of %s lacks %q", c.transcript, w)
				}
			}
			if t.Failed() {
				t.Logf("the report:\n%s", out)
			}
		})
	}
}

// TestGuestBridgeProcess is TestGuestBridge's other process: it reports
// one transcript with a console log of its own, as report does after a
// boot. Run directly it has no transcript and skips.
func TestGuestBridgeProcess(t *testing.T) {
	path := os.Getenv(bridgeEnv)
	if path == "" {
		t.Skip("the other process of TestGuestBridge: it runs there, with a transcript in " + bridgeEnv)
	}
	console := filepath.Join(t.TempDir(), "console.log")
	log := "[    1.0] Run /init as init process\nlinkbeat-vm: running /guest.test -test.v=test2json\n"
	if err := os.WriteFile(console, []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	report(t, &vmResult{GuestOut: path, ConsoleLog: console})
}
