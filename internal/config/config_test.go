package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestDefaultsWithNoFile(t *testing.T) {
	c, err := Parse(nil)
	if err != nil {
		t.Fatal(err)
	}
	s := c.For("eth0")
	if !s.WithdrawRoutes || s.Rules.UpDelay != 0 || s.Rules.DownDelay != 0 || s.Rules.Transitions != 0 || s.ScriptTimeout != 30*time.Second || !c.RunScriptOnExit() {
		t.Fatalf("defaults %+v", s)
	}
}

func TestInterfaceOverridesDefaults(t *testing.T) {
	c, err := Parse([]byte(`
defaults:
  down_delay: 100ms
  script: /etc/linkbeat/action.sh
  dampening: {transitions: 5, window: 1s, hold_down: 10s}
interfaces:
  eth1:
    routes: keep
    up_delay: 1500
script_on_exit: false
`))
	if err != nil {
		t.Fatal(err)
	}
	s := c.For("eth1")
	if s.WithdrawRoutes || s.Rules.UpDelay != 1500*time.Millisecond || s.Rules.DownDelay != 100*time.Millisecond ||
		s.Script != "/etc/linkbeat/action.sh" || s.Rules.Transitions != 5 || s.Rules.HoldDown != 10*time.Second || c.RunScriptOnExit() {
		t.Fatalf("eth1 %+v", s)
	}
	if !c.For("eth0").WithdrawRoutes {
		t.Fatal("eth0 should keep the default")
	}
}

func TestErrorsNameLineFieldAndAllowed(t *testing.T) {
	cases := []struct{ doc, want string }{
		{"defaults:\n  up_dealy: 5s\n", "line 2: field up_dealy is not a known key; allowed: routes, up_delay"},
		{"interfaces:\n  eth0:\n    routes: drop\n", `line 3: interfaces.eth0.routes: "drop" is not allowed: want withdraw or keep`},
		{"defaults:\n  down_delay: -5ms\n", `line 2: "-5ms" is negative`},
		{"defaults:\n  down_delay: soon\n", `line 2: "soon" is not a duration`},
		{"defaults:\n  dampening:\n    transitions: 3\n    window: 1s\n    hold_down: 0s\n", "line 5: defaults.dampening.hold_down must be more than 0"},
		{"defaults:\n  dampening: {transitions: 1, window: 1s, hold_down: 1s}\n", "transitions: 1 is too few"},
		{"interfaces:\n  eth0:\n    up_delay: [1]\n", "line 3: want a duration"},
		{"monitor_all: maybe\n", "line 1: cannot unmarshal"},
		{"defaults: [\n", "yaml: line"},
		{"interfaces:\n  eth0:\n    script: relative.sh\n", "must be an absolute path"},
	}
	for _, c := range cases {
		_, err := Parse([]byte(c.doc))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("config %q: error %v, want it to contain %q", c.doc, err, c.want)
		}
	}
}

func TestLoadNamesTheFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "linkbeat.yaml")
	os.WriteFile(p, []byte("bogus: 1\n"), 0o644)
	_, err := Load(p)
	if err == nil || !strings.HasPrefix(err.Error(), p+": line 1: field bogus") {
		t.Fatalf("error %v", err)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml")); err == nil || !strings.Contains(err.Error(), "read config") {
		t.Fatalf("missing file: %v", err)
	}
}

func TestShippedExampleIsValid(t *testing.T) {
	c, err := Load("../../docs/linkbeat.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if s := c.For("eth1"); s.Rules.Transitions != 6 || s.Rules.UpDelay != 500*time.Millisecond {
		t.Fatalf("eth1 %+v", s)
	}
}

func TestBonds(t *testing.T) {
	c, err := Parse([]byte("bonds:\n  bond0:\n    fast_failover: false\n    arp_targets: [192.0.2.1, 192.0.2.2]\n    arp_interval: 50ms\n    missed_max: 5\n"))
	if err != nil {
		t.Fatal(err)
	}
	s := c.ForBond("bond0")
	if s.FastFailover || len(s.ARPTargets) != 2 || s.ARPTargets[1].String() != "192.0.2.2" || s.ARPInterval != 50*time.Millisecond || s.MissedMax != 5 {
		t.Fatalf("bond0 settings %+v", s)
	}
	if d := c.ForBond("bond1"); !d.FastFailover || d.ARPTargets != nil || d.ARPInterval != 100*time.Millisecond || d.MissedMax != 3 {
		t.Fatalf("default settings %+v", d)
	}
	for _, bad := range []struct{ yaml, want string }{
		{"bonds:\n  bond0:\n    arp_targets: [2001:db8::1]\n", "line 3: bonds.bond0.arp_targets"},
		{"bonds:\n  bond0:\n    arp_targets: [nope]\n", "not a unicast IPv4"},
		{"bonds:\n  bond0:\n    arp_interval: 1ms\n", "line 3: bonds.bond0.arp_interval: 1ms is too short"},
		{"bonds:\n  bond0:\n    missed_max: 0\n", "line 3: bonds.bond0.missed_max: 0 is out of range"},
		{"bonds:\n  bond0:\n    primary: eth0\n", "allowed: fast_failover, arp_targets, arp_interval, missed_max"},
	} {
		_, err := Parse([]byte(bad.yaml))
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%q: error %v, want it to contain %q", bad.yaml, err, bad.want)
		}
	}
}

func TestMonitored(t *testing.T) {
	c, err := Parse([]byte("interfaces:\n  eth1: {}\n  eth0: {}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Monitored(nil); strings.Join(got, ",") != "eth0,eth1" {
		t.Errorf("listed: %v", got)
	}
	if got := c.Monitored([]string{"bond0"}); strings.Join(got, ",") != "bond0" {
		t.Errorf("the flag wins: %v", got)
	}
	c.MonitorAll = true
	if got := c.Monitored(nil); len(got) != 0 {
		t.Errorf("monitor_all: %v, want every interface", got)
	}
}
