package config

import (
	"fmt"
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
		{"defaults: [\n", "line 1: did not find expected node content"},
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
	if !s.FastPath {
		t.Fatalf("bond0: fast_path is on unless set: %+v", s)
	}
	for yaml, want := range map[string]bool{"off": false, "on": true, "false": false} {
		c, err := Parse([]byte("bonds:\n  bond0:\n    fast_path: " + yaml + "\n"))
		if err != nil {
			t.Fatalf("fast_path: %s: %v", yaml, err)
		}
		if got := c.ForBond("bond0").FastPath; got != want {
			t.Errorf("fast_path: %s gave %v", yaml, got)
		}
	}
	if d := c.ForBond("bond1"); !d.FastPath || !d.FastFailover || d.ARPTargets != nil || d.ARPInterval != 100*time.Millisecond || d.MissedMax != 3 {
		t.Fatalf("default settings %+v", d)
	}
	for _, bad := range []struct{ yaml, want string }{
		{"bonds:\n  bond0:\n    arp_targets: [2001:db8::1]\n", "line 3: bonds.bond0.arp_targets"},
		{"bonds:\n  bond0:\n    arp_targets: [nope]\n", "not a unicast IPv4"},
		{"bonds:\n  bond0:\n    arp_interval: 1ms\n", "line 3: bonds.bond0.arp_interval: 1ms is too short"},
		{"bonds:\n  bond0:\n    missed_max: 0\n", "line 3: bonds.bond0.missed_max: 0 is out of range"},
		{"bonds:\n  bond0:\n    primary: eth0\n", "allowed: fast_failover, fast_path, arp_targets, ns_targets, arp_interval, missed_max"},
		{"bonds:\n  bond0:\n    fast_path: maybe\n", "line 3: \"maybe\": want on or off"},
	} {
		_, err := Parse([]byte(bad.yaml))
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%q: error %v, want it to contain %q", bad.yaml, err, bad.want)
		}
	}
}

// TestNSTargets: ns_targets takes what bonding's ns_ip6_target takes, and
// every refusal names the key's line.
func TestNSTargets(t *testing.T) {
	c, err := Parse([]byte("bonds:\n  bond0:\n    arp_targets: [192.0.2.1]\n    ns_targets: [2001:db8::1, fe80::1]\n"))
	if err != nil {
		t.Fatal(err)
	}
	s := c.ForBond("bond0")
	if got := fmt.Sprint(s.NSTargets); got != "[2001:db8::1 fe80::1]" {
		t.Fatalf("ns targets %s", got)
	}
	if got := fmt.Sprint(s.Targets()); got != "[192.0.2.1 2001:db8::1 fe80::1]" {
		t.Fatalf("all targets %s", got)
	}
	many := make([]string, 17)
	for i := range many {
		many[i] = fmt.Sprintf("2001:db8::%x", i+1)
	}
	for _, bad := range []struct{ yaml, want string }{
		{"bonds:\n  bond0:\n    missed_max: 3\n    ns_targets: [192.0.2.1]\n", "line 4: bonds.bond0.ns_targets: \"192.0.2.1\" is not an IPv6 address"},
		{"bonds:\n  bond0:\n    ns_targets: [\"::ffff:192.0.2.1\"]\n", "line 3: bonds.bond0.ns_targets: \"::ffff:192.0.2.1\" is not an IPv6"},
		{"bonds:\n  bond0:\n    ns_targets: [nope]\n", "line 3: bonds.bond0.ns_targets: \"nope\" is not an IPv6"},
		{"bonds:\n  bond0:\n    ns_targets: [\"fe80::1%eth0\"]\n", "line 3: bonds.bond0.ns_targets: \"fe80::1%eth0\" has a zone"},
		{"bonds:\n  bond0:\n    ns_targets: [\"ff02::1\"]\n", "line 3: bonds.bond0.ns_targets: \"ff02::1\" is not a global or link-local unicast"},
		{"bonds:\n  bond0:\n    ns_targets: [\"::\"]\n", "is not a global or link-local unicast"},
		{"bonds:\n  bond0:\n    ns_targets: [\"::1\"]\n", "is not a global or link-local unicast"},
		{"bonds:\n  bond0:\n    ns_targets: [\"2001:db8::1\", \"2001:db8:0::1\"]\n", "line 3: bonds.bond0.ns_targets: \"2001:db8:0::1\" is listed twice"},
		{"bonds:\n  bond0:\n    ns_targets: [" + strings.Join(many, ", ") + "]\n", "line 3: bonds.bond0.ns_targets: 17 targets, at most 16"},
		{"bonds:\n  bond0:\n    ns_targets: 2001:db8::1\n", "line 3"},
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

// Bad input of every kind gets an error that names its line.
func TestBadInputNamesTheLine(t *testing.T) {
	cases := []struct{ name, doc, want string }{
		{"malformed", "defaults:\n  routes: keep\n   up_delay: 1s\n", "line 3: mapping values are not allowed"},
		{"unclosed flow", "interfaces: {eth0: {routes: keep}\n", "line 1: did not find expected ',' or '}'"},
		{"tab indent", "defaults:\n\troutes: keep\n", "line 2: found character that cannot start any token"},
		{"wrong type list for map", "interfaces: [eth0, eth1]\n", "line 1: cannot unmarshal !!seq into a map of interface names to their settings"},
		{"wrong type map for bool", "monitor_all: {a: 1}\n", "line 1: cannot unmarshal !!map into true or false"},
		{"wrong type string for int", "defaults:\n  dampening: {transitions: many, window: 1s, hold_down: 1s}\n", "line 2: cannot unmarshal !!str `many` into an integer"},
		{"wrong type scalar for settings", "interfaces:\n  eth0: keep\n", "line 2: cannot unmarshal !!str `keep` into an interface's settings (a map)"},
		{"unknown top key", "\n\nintervals: {}\n", "line 3: field intervals is not a known key; allowed: monitor_all, defaults"},
		{"unknown bond key", "bonds:\n  bond0:\n    miimon: 100\n", "line 3: field miimon is not a known key"},
		{"duplicate key", "interfaces:\n  eth0: {}\n  eth0: {}\n", `line 3: mapping key "eth0" already defined at line 2`},
		{"second document", "defaults: {}\n---\ninterfaces: {eth0: {}}\n", "line 3: a second YAML document"},
		{"negative delay", "defaults:\n  up_delay: -1s\n", `line 2: "-1s" is negative`},
		{"negative bare delay", "interfaces:\n  eth0:\n    down_delay: -200\n", `line 3: "-200" is negative`},
		{"overflowing ms", "defaults:\n  up_delay: 9223372036854775807\n", "line 2: \"9223372036854775807\" milliseconds is out of range"},
		{"delay too long", "defaults:\n  up_delay: 2h\n", "line 2: defaults.up_delay: 2h0m0s is too long: want at most 1h0m0s"},
		{"zero hold-down", "interfaces:\n  eth0:\n    dampening:\n      transitions: 4\n      window: 1s\n      hold_down: 0\n", "line 6: interfaces.eth0.dampening.hold_down must be more than 0 when dampening is on"},
		{"missing hold-down", "defaults:\n  dampening: {transitions: 4, window: 1s}\n", "line 2: defaults.dampening.hold_down must be more than 0"},
		{"zero window", "defaults:\n  dampening:\n    transitions: 4\n    window: 0s\n    hold_down: 5s\n", "line 4: defaults.dampening.window must be more than 0"},
		{"zero transitions with window", "defaults:\n  dampening:\n    transitions: 0\n    window: 1s\n    hold_down: 5s\n", "line 3: defaults.dampening.transitions is 0 or missing, which turns dampening off"},
		{"negative transitions", "defaults:\n  dampening:\n    transitions: -3\n", "line 3: defaults.dampening.transitions: -3 is negative"},
		{"too many transitions", "defaults:\n  dampening: {transitions: 100000, window: 1s, hold_down: 1s}\n", "too many: want at most 1000"},
		{"zero timeout", "interfaces:\n  eth0:\n    script_timeout: 0\n", "line 3: interfaces.eth0.script_timeout: 0s is out of range: want more than 0"},
		{"huge timeout", "defaults:\n  script_timeout: 48h\n", "line 2: defaults.script_timeout: 48h0m0s is out of range"},
		{"unknown capability", "defaults:\n  script_capabilities: [CAP_NET_ADMIN, CAP_NET_ADMNI]\n", `line 2: defaults.script_capabilities: "CAP_NET_ADMNI" is not a capability`},
		{"huge arp interval", "bonds:\n  bond0:\n    arp_interval: 10m\n", "line 3: bonds.bond0.arp_interval: 10m0s is too long"},
		{"bad interface name", "interfaces:\n  this-name-is-too-long0: {}\n", `line 2: interfaces: "this-name-is-too-long0" is not a valid interface name`},
		{"control character", "defaults:\n  routes: keep\n  script: /bin/tr\x01ue\n", "line 3: control characters are not allowed"},
		{"invalid utf-8", "defaults:\n  script: /bin/\xff\n", "line 2: invalid leading UTF-8 octet"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.doc))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("config %q:\n error %v\n want it to contain %q", c.doc, err, c.want)
			}
		})
	}
}

func TestDampeningCanBeTurnedOffPerInterface(t *testing.T) {
	c, err := Parse([]byte("defaults:\n  dampening: {transitions: 4, window: 1s, hold_down: 5s}\ninterfaces:\n  eth1:\n    dampening: {transitions: 0}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s := c.For("eth1"); s.Rules.Transitions != 0 {
		t.Fatalf("eth1 dampening %+v, want off", s.Rules)
	}
	if s := c.For("eth0"); s.Rules.Transitions != 4 {
		t.Fatalf("eth0 dampening %+v, want the default's", s.Rules)
	}
}

func TestScriptCapabilities(t *testing.T) {
	c, err := Parse([]byte("defaults:\n  script_capabilities: [net_admin, CAP_NET_RAW]\ninterfaces:\n  eth1:\n    script_capabilities: []\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.For("eth0").ScriptCaps; strings.Join(got, ",") != "net_admin,CAP_NET_RAW" {
		t.Errorf("eth0 caps %q", got)
	}
	if got := c.For("eth1").ScriptCaps; got == nil || len(got) != 0 {
		t.Errorf("eth1 caps %#v, want empty (none), not nil (default)", got)
	}
	if got := (&Config{}).For("eth0").ScriptCaps; strings.Join(got, ",") != "CAP_NET_ADMIN" {
		t.Errorf("default caps %q", got)
	}
}

func TestUnreadableFileSaysWhy(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "read config") || !strings.Contains(err.Error(), "is a directory") {
		t.Fatalf("directory as config: %v", err)
	}
}

func TestDurationMarshalsToWhatItReads(t *testing.T) {
	for _, d := range []time.Duration{0, time.Nanosecond, 1500 * time.Millisecond, 45 * time.Minute} {
		v, _ := Duration(d).MarshalYAML()
		c, err := Parse([]byte("defaults:\n  up_delay: " + v.(string) + "\n"))
		if err != nil {
			t.Fatalf("%v: %v", d, err)
		}
		if got := time.Duration(*c.Defaults.UpDelay); got != d {
			t.Errorf("%v came back as %v", d, got)
		}
	}
}
