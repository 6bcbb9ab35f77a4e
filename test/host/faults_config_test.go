package host

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Bad config input, through the real binary: `config
// check` and `run --config` refuse each with exit 1 and an error naming the
// file and the line. (A refused reload keeps the old config: reload_test.go.)
func TestBadConfigInput(t *testing.T) {
	ns := newNetns(t)
	cases := []struct{ name, doc, want string }{
		{"malformed YAML", "defaults:\n  routes: keep\n   up_delay: 1s\n", "line 3: mapping values are not allowed in this context"},
		{"unclosed flow", "interfaces:\n  eth0: {routes: keep\n", "line 1: did not find expected ',' or '}'"},
		{"wrong type", "interfaces:\n  eth0:\n    up_delay: [1, 2]\n", "line 3: want a duration such as 200ms or 2s"},
		{"wrong type for a map", "interfaces: [eth0, eth1]\n", "line 1: cannot unmarshal !!seq into a map of interface names to their settings"},
		{"unknown key", "defaults:\n  withdraw: true\n", "line 2: field withdraw is not a known key; allowed: routes, up_delay, down_delay"},
		{"negative delay", "interfaces:\n  eth0:\n    down_delay: -50ms\n", `line 3: "-50ms" is negative: durations must be 0 or more`},
		{"zero hold-down", "defaults:\n  dampening:\n    transitions: 4\n    window: 2s\n    hold_down: 0s\n", "line 5: defaults.dampening.hold_down must be more than 0 when dampening is on"},
		{"dampening with 0 transitions", "defaults:\n  dampening: {transitions: 0, window: 2s, hold_down: 10s}\n", "line 2: defaults.dampening.transitions is 0 or missing, which turns dampening off"},
		{"timeout of 0", "interfaces:\n  eth0:\n    script: /bin/true\n    script_timeout: 0\n", "line 4: interfaces.eth0.script_timeout: 0s is out of range: want more than 0"},
		{"absurd delay", "defaults:\n  up_delay: 36000000\n", "line 2: defaults.up_delay: 10h0m0s is too long: want at most 1h0m0s"},
		{"second document", "defaults: {}\n---\ndefaults: {routes: keep}\n", "line 3: a second YAML document"},
	}
	dir := t.TempDir()
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(dir, "bad"+itoa(i)+".yaml")
			os.WriteFile(p, []byte(c.doc), 0o644)
			for _, args := range [][]string{{"config", "check", p}, {"run", "--config", p, "--state-dir", t.TempDir(), "--bpffs-dir", pinDir(t)}} {
				code, out := ns.exitCode(t, args...)
				if want := p + ": " + c.want; code != 1 || !strings.Contains(out, want) {
					t.Errorf("linkbeat %s: exit %d, output %q\nwant exit 1 and %q", strings.Join(args[:2], " "), code, out, want)
				}
			}
		})
	}
}

func TestUnreadableConfig(t *testing.T) {
	ns := newNetns(t)
	dir := t.TempDir()
	os.Chmod(filepath.Dir(dir), 0o755)
	os.Chmod(dir, 0o755)
	secret := filepath.Join(dir, "linkbeat.yaml")
	os.WriteFile(secret, []byte("defaults: {}\n"), 0o600)
	// As a user who may not read it.
	argv := []string{"netns", "exec", string(ns), "setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", "--", binary(t)}
	for _, args := range [][]string{{"config", "check", secret}, {"run", "--config", secret, "--state-dir", dir}} {
		out, err := exec.Command("ip", append(argv, args...)...).CombinedOutput()
		ee, ok := err.(*exec.ExitError)
		if want := "read config: open " + secret + ": permission denied"; !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), want) {
			t.Errorf("linkbeat %s of an unreadable file: %v, %q; want exit 1 and %q", args[0], err, out, want)
		}
	}
	// A directory, and a file that is not there.
	for path, want := range map[string]string{dir: "is a directory", filepath.Join(dir, "missing.yaml"): "no such file or directory"} {
		code, out := ns.exitCode(t, "config", "check", path)
		if code != 1 || !strings.Contains(out, "read config: ") || !strings.Contains(out, want) {
			t.Errorf("config check %s: exit %d, %q; want exit 1 and %q", path, code, out, want)
		}
	}
}

// An interface the config lists but the host lacks is not an error: NICs
// are hot-plugged, VLANs and bonds made later. `config check` passes it
// (the file may be checked on another machine); `run` warns and watches
// for it (TestStartupBeforeConfiguredInterfacesExist).
func TestConfigWithAbsentInterfaceIsValid(t *testing.T) {
	ns := newNetns(t)
	p := filepath.Join(t.TempDir(), "linkbeat.yaml")
	os.WriteFile(p, []byte("interfaces:\n  nosuch0:\n    routes: keep\n"), 0o644)
	if code, out := ns.exitCode(t, "config", "check", p); code != 0 {
		t.Fatalf("config check: exit %d: %s", code, out)
	}
}
