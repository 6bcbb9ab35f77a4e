package config

import (
	"reflect"
	"testing"

	"go.yaml.in/yaml/v3"
)

// FuzzParse: no input panics the parser; whatever it accepts means the
// same once written back and read again; every refusal names a line.
func FuzzParse(f *testing.F) {
	f.Add([]byte("defaults:\n  down_delay: 100ms\n  dampening: {transitions: 5, window: 1s, hold_down: 10s}\ninterfaces:\n  eth1:\n    routes: keep\n    up_delay: 1500\n"))
	f.Add([]byte("bonds:\n  bond0:\n    arp_targets: [192.0.2.1]\n    arp_interval: 50ms\n    missed_max: 5\n"))
	f.Add([]byte("interfaces:\n  eth0:\n    script: /etc/linkbeat/action.sh\n    script_timeout: 5s\n    script_capabilities: [CAP_NET_ADMIN, net_raw]\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Parse(b)
		if err != nil {
			if !lineRef.MatchString(err.Error()) {
				t.Fatalf("error without a line number: %v", err)
			}
			return
		}
		out, err := yaml.Marshal(c)
		if err != nil {
			t.Fatalf("accepted config does not marshal: %v", err)
		}
		c2, err := Parse(out)
		if err != nil {
			t.Fatalf("accepted config, written back, is refused: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(resolved(c), resolved(c2)) {
			t.Fatalf("written back, the config means something else:\n%+v\n%+v\n%s", resolved(c), resolved(c2), out)
		}
	})
}

// view is what a config means to the daemon.
type view struct {
	MonitorAll, ScriptOnExit bool
	Listed                   []string
	Settings                 map[string]Settings
	Bonds                    map[string]BondSettings
}

func resolved(c *Config) view {
	v := view{MonitorAll: c.MonitorAll, ScriptOnExit: c.RunScriptOnExit(), Listed: c.Listed(),
		Settings: map[string]Settings{"": c.For("")}, Bonds: map[string]BondSettings{}}
	for _, n := range v.Listed {
		v.Settings[n] = c.For(n)
	}
	for n := range c.Bonds {
		v.Bonds[n] = c.ForBond(n)
	}
	return v
}
