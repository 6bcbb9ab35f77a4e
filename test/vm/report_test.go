package vm

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// guestTest is one guest test (or subtest) as reconstructed from the guest's
// -test.v=test2json output.
type guestTest struct {
	Name    string // full name, "TestX/sub"
	Action  string // pass, fail, skip; "" if it never finished
	Elapsed float64
	Output  []string
	Subs    []*guestTest
}

type guestReport struct {
	Tests     []*guestTest // top level, in run order
	PkgOutput []string     // output not attributed to a test
	PkgAction string       // the binary's overall pass/fail
	ExitCode  int          // -1 if the exit marker is missing
}

type t2jEvent struct {
	Action  string
	Test    string
	Output  string
	Elapsed float64
}

// parseGuestOutput splits off the exit marker written by /init and feeds the
// rest through `go tool test2json`, which understands the framing the guest
// binary emits under -test.v=test2json.
func parseGuestOutput(raw []byte) (*guestReport, error) {
	rep := &guestReport{ExitCode: -1}
	var body bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if v, ok := strings.CutPrefix(line, exitMarker); ok {
			if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
				rep.ExitCode = n
			}
			continue
		}
		body.WriteString(line + "\n")
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	cmd := exec.Command(goTool(), "tool", "test2json")
	cmd.Stdin = &body
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go tool test2json: %v: %s", err, stderr.String())
	}
	byName := map[string]*guestTest{}
	get := func(name string, action string) *guestTest {
		// A finished test that runs again (-test.count) is a new entry;
		// the host's t.Run numbers the duplicates (#01, ...).
		if gt, ok := byName[name]; ok && !(action == "run" && gt.Action != "") {
			return gt
		}
		gt := &guestTest{Name: name}
		byName[name] = gt
		if i := strings.LastIndex(name, "/"); i >= 0 {
			if parent, ok := byName[name[:i]]; ok {
				parent.Subs = append(parent.Subs, gt)
				return gt
			}
		}
		rep.Tests = append(rep.Tests, gt)
		return gt
	}
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var ev t2jEvent
		if err := dec.Decode(&ev); err != nil {
			return nil, fmt.Errorf("test2json output: %w", err)
		}
		if ev.Test == "" {
			switch ev.Action {
			case "output":
				rep.PkgOutput = append(rep.PkgOutput, ev.Output)
			case "pass", "fail", "skip":
				rep.PkgAction = ev.Action
			}
			continue
		}
		gt := get(ev.Test, ev.Action)
		switch ev.Action {
		case "output":
			gt.Output = append(gt.Output, ev.Output)
		case "pass", "fail", "skip":
			gt.Action = ev.Action
			gt.Elapsed = ev.Elapsed
			if gt.Elapsed == 0 {
				gt.Elapsed = elapsedFromOutput(gt)
			}
		}
	}
	return rep, nil
}

// resultLine matches "--- PASS: TestX (1.23s)"; test2json does not always
// carry Elapsed over from the framed output.
var resultLine = regexp.MustCompile(`--- (?:PASS|FAIL|SKIP): (\S+) \(([0-9.]+)s\)`)

func elapsedFromOutput(gt *guestTest) float64 {
	for i := len(gt.Output) - 1; i >= 0; i-- {
		if m := resultLine.FindStringSubmatch(gt.Output[i]); m != nil && m[1] == gt.Name {
			f, _ := strconv.ParseFloat(m[2], 64)
			return f
		}
	}
	return 0
}

// replay turns a guest test into a host subtest with the same result and
// the guest's output attached.
func replay(t *testing.T, gt *guestTest, onUnfinished func(t *testing.T)) {
	short := gt.Name[strings.LastIndex(gt.Name, "/")+1:]
	t.Run(short, func(t *testing.T) {
		if out := strings.TrimRight(strings.Join(gt.Output, ""), "\n"); out != "" {
			t.Log("guest output:\n" + out)
		}
		for _, s := range gt.Subs {
			replay(t, s, onUnfinished)
		}
		switch gt.Action {
		case "pass":
		case "skip":
			t.SkipNow()
		case "fail":
			t.Errorf("guest test %s failed (%.2fs in the guest)", gt.Name, gt.Elapsed)
		default:
			if p := panicLine(gt.Output); p != "" {
				t.Errorf("guest test %s panicked: %s", gt.Name, p)
			} else {
				t.Errorf("guest test %s started but never finished: the guest crashed, hung or timed out", gt.Name)
			}
			onUnfinished(t)
		}
	})
}

// panicLine is the "panic: ..." line of a test's output: a panic ends the
// guest binary before test2json sees the test's result.
func panicLine(output []string) string {
	for _, l := range output {
		if strings.HasPrefix(l, "panic: ") {
			return strings.TrimSpace(l)
		}
	}
	return ""
}

// tailFile returns the last n lines of a file for attaching to a failure.
func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
