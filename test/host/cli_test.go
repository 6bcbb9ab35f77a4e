package host

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// exitCode runs linkbeat in ns and returns its exit status and output.
func (ns netns) exitCode(t *testing.T, args ...string) (int, string) {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", string(ns), binary(t)}, args...)...).CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &ee):
		return ee.ExitCode(), string(out)
	}
	t.Fatal(err)
	return 0, ""
}

func TestCheckExitCodesLikeIfplugd(t *testing.T) {
	ns := newNetns(t)
	ns.vethPair(t, "lbk0", "lbk1")
	waitFor(t, "lbk0 carrier", func() bool { return carrierOf(t, ns, "lbk0") })
	if code, out := ns.exitCode(t, "check", "lbk0"); code != 2 {
		t.Fatalf("check with carrier: exit %d, want 2: %s", code, out)
	}
	ns.ip(t, "link", "set", "lbk1", "down")
	waitFor(t, "lbk0 carrier loss", func() bool { return !carrierOf(t, ns, "lbk0") })
	if code, out := ns.exitCode(t, "check", "lbk0"); code != 3 {
		t.Fatalf("check without carrier: exit %d, want 3: %s", code, out)
	}
	if code, out := ns.exitCode(t, "check", "nosuch0"); code != 1 || !strings.Contains(out, "no interface nosuch0") {
		t.Fatalf("check of a missing interface: exit %d, want 1: %s", code, out)
	}
}

func TestBadConfigIsRefusedWithLineAndField(t *testing.T) {
	ns := newNetns(t)
	p := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(p, []byte("defaults:\n  routes: withdraw\ninterfaces:\n  eth0:\n    down_dely: 5ms\n"), 0o644)
	for _, args := range [][]string{{"config", "check", p}, {"run", "--config", p, "--state-dir", t.TempDir()}} {
		code, out := ns.exitCode(t, args...)
		want := p + ": line 5: field down_dely is not a known key; allowed: routes, up_delay, down_delay"
		if code != 1 || !strings.Contains(out, want) {
			t.Errorf("linkbeat %s: exit %d, output %q, want exit 1 and %q", strings.Join(args, " "), code, out, want)
		}
	}
}
