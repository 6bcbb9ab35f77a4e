// Package config reads linkbeat's YAML config. Every error names the file,
// the line and the field, and says what is allowed; unknown keys are errors.
// The zero config (no file) is the embedded default: withdraw routes, no
// delays, no dampening, no script.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/linkbeat/linkbeat/internal/policy"
)

// Interface holds one interface's settings; unset fields inherit defaults.
type Interface struct {
	Routes        *string    `yaml:"routes"`     // "withdraw" or "keep"
	UpDelay       *Duration  `yaml:"up_delay"`   // ifplugd -u, but any unit
	DownDelay     *Duration  `yaml:"down_delay"` // ifplugd -d
	Dampening     *Dampening `yaml:"dampening"`
	Script        *string    `yaml:"script"`
	ScriptTimeout *Duration  `yaml:"script_timeout"`
	ScriptExtra   *string    `yaml:"script_extra"`
}

// Dampening holds a flapping link down.
type Dampening struct {
	Transitions int      `yaml:"transitions"`
	Window      Duration `yaml:"window"`
	HoldDown    Duration `yaml:"hold_down"`
}

// Config is the whole file.
type Config struct {
	// MonitorAll keeps monitoring every interface when some are listed.
	MonitorAll bool                 `yaml:"monitor_all"`
	Defaults   Interface            `yaml:"defaults"`
	Interfaces map[string]Interface `yaml:"interfaces"`
	// ScriptOnExit runs the down script for up links on exit (ifplugd's
	// default; -q turns it off).
	ScriptOnExit *bool `yaml:"script_on_exit"`
	// Bonds configures the fast failover and path health of bonds, by
	// bond name. A bond not listed gets the defaults: fast failover on,
	// no ARP probing.
	Bonds map[string]Bond `yaml:"bonds"`
}

// Bond is one bond's section.
type Bond struct {
	// FastFailover switches active-backup (and tlb/alb) bonds on the
	// driver's carrier event instead of waiting for miimon. Default true.
	FastFailover *bool `yaml:"fast_failover"`
	// ARPTargets are IPv4 addresses probed through every slave.
	ARPTargets []string `yaml:"arp_targets"`
	// ARPInterval is the probe interval (default 100ms).
	ARPInterval *Duration `yaml:"arp_interval"`
	// MissedMax is how many intervals without a reply make a path dead
	// (default 3).
	MissedMax *int `yaml:"missed_max"`
}

// BondSettings are one bond's resolved settings.
type BondSettings struct {
	FastFailover bool
	ARPTargets   []netip.Addr
	ARPInterval  time.Duration
	MissedMax    int
}

// ForBond resolves a bond's settings over the built-in defaults.
func (c *Config) ForBond(name string) BondSettings {
	s := BondSettings{FastFailover: true, ARPInterval: 100 * time.Millisecond, MissedMax: 3}
	b, ok := c.Bonds[name]
	if !ok {
		return s
	}
	if b.FastFailover != nil {
		s.FastFailover = *b.FastFailover
	}
	for _, t := range b.ARPTargets {
		// validate has checked them.
		if a, err := netip.ParseAddr(t); err == nil {
			s.ARPTargets = append(s.ARPTargets, a)
		}
	}
	if b.ARPInterval != nil && *b.ARPInterval > 0 {
		s.ARPInterval = time.Duration(*b.ARPInterval)
	}
	if b.MissedMax != nil {
		s.MissedMax = *b.MissedMax
	}
	return s
}

// Settings are one interface's resolved settings.
type Settings struct {
	WithdrawRoutes bool
	Rules          policy.Rules
	Script         string
	ScriptTimeout  time.Duration
	ScriptExtra    string
}

// Duration is a time.Duration written "150ms", "2s"; a bare number is
// milliseconds.
type Duration time.Duration

func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: want a duration such as 200ms or 2s", n.Line)
	}
	s := strings.TrimSpace(n.Value)
	v, err := time.ParseDuration(s)
	if err != nil {
		var ms int64
		if _, e := fmt.Sscanf(s, "%d", &ms); e != nil || fmt.Sprint(ms) != s {
			return fmt.Errorf("line %d: %q is not a duration: want e.g. 200ms, 2s, or a number of milliseconds", n.Line, n.Value)
		}
		v = time.Duration(ms) * time.Millisecond
	}
	if v < 0 {
		return fmt.Errorf("line %d: %q is negative: durations must be 0 or more", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// Load reads and validates a file.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	c, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Parse validates a config's bytes.
func Parse(b []byte) (*Config, error) {
	c := &Config{}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, errEOF(err)) {
		return nil, explain(err)
	}
	var root yaml.Node
	_ = yaml.Unmarshal(b, &root)
	if err := c.validate(&root); err != nil {
		return nil, err
	}
	return c, nil
}

// errEOF lets an empty file through: it is the default config.
func errEOF(err error) error {
	if err != nil && err.Error() == "EOF" {
		return err
	}
	return errors.New("not EOF")
}

// explain rewrites yaml.v3's messages to say what is allowed.
func explain(err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return err
	}
	msgs := make([]string, 0, len(te.Errors))
	for _, m := range te.Errors {
		m = strings.TrimPrefix(m, "yaml: ")
		if i := strings.Index(m, " not found in type "); i > 0 {
			typ := m[i+len(" not found in type "):]
			m = m[:i] + " is not a known key; allowed: " + allowedKeys(typ)
		}
		msgs = append(msgs, m)
	}
	return errors.New(strings.Join(msgs, "; "))
}

func allowedKeys(typ string) string {
	switch {
	case strings.HasSuffix(typ, "config.Interface"):
		return "routes, up_delay, down_delay, dampening, script, script_timeout, script_extra"
	case strings.HasSuffix(typ, "config.Dampening"):
		return "transitions, window, hold_down"
	case strings.HasSuffix(typ, "config.Bond"):
		return "fast_failover, arp_targets, arp_interval, missed_max"
	default:
		return "monitor_all, defaults, interfaces, script_on_exit, bonds"
	}
}

// validate checks values the types cannot, pointing at their lines.
func (c *Config) validate(root *yaml.Node) error {
	check := func(path []string, in Interface) error {
		if in.Routes != nil && *in.Routes != "withdraw" && *in.Routes != "keep" {
			return fmt.Errorf("line %d: %s: %q is not allowed: want withdraw or keep", line(root, append(path, "routes")), strings.Join(append(path, "routes"), "."), *in.Routes)
		}
		if d := in.Dampening; d != nil && d.Transitions != 0 {
			p := append(path, "dampening")
			switch {
			case d.Transitions < 2:
				return fmt.Errorf("line %d: %s.transitions: %d is too few: want 2 or more (0 turns dampening off)", line(root, append(p, "transitions")), strings.Join(p, "."), d.Transitions)
			case d.Window <= 0:
				return fmt.Errorf("line %d: %s.window must be more than 0 when dampening is on", line(root, append(p, "window")), strings.Join(p, "."))
			case d.HoldDown <= 0:
				return fmt.Errorf("line %d: %s.hold_down must be more than 0 when dampening is on", line(root, append(p, "hold_down")), strings.Join(p, "."))
			}
		}
		if d := in.Dampening; d != nil && d.Transitions < 0 {
			return fmt.Errorf("line %d: dampening.transitions must be 0 or more", line(root, append(path, "dampening")))
		}
		if in.Script != nil && *in.Script != "" && !strings.HasPrefix(*in.Script, "/") {
			return fmt.Errorf("line %d: %s.script: %q must be an absolute path", line(root, append(path, "script")), strings.Join(path, "."), *in.Script)
		}
		return nil
	}
	if err := check([]string{"defaults"}, c.Defaults); err != nil {
		return err
	}
	for name, in := range c.Interfaces {
		if name == "" || len(name) >= 16 || strings.ContainsAny(name, "/ \t") {
			return fmt.Errorf("line %d: interfaces: %q is not a valid interface name", line(root, []string{"interfaces", name}), name)
		}
		if err := check([]string{"interfaces", name}, in); err != nil {
			return err
		}
	}
	for name, b := range c.Bonds {
		p := []string{"bonds", name}
		if name == "" || len(name) >= 16 || strings.ContainsAny(name, "/ \t") {
			return fmt.Errorf("line %d: bonds: %q is not a valid interface name", line(root, p), name)
		}
		for _, t := range b.ARPTargets {
			if a, err := netip.ParseAddr(t); err != nil || !a.Is4() || a.IsUnspecified() || a.IsMulticast() {
				return fmt.Errorf("line %d: bonds.%s.arp_targets: %q is not a unicast IPv4 address", line(root, append(p, "arp_targets")), name, t)
			}
		}
		if len(b.ARPTargets) > 16 {
			return fmt.Errorf("line %d: bonds.%s.arp_targets: %d targets, at most 16 are allowed (as in bonding)", line(root, append(p, "arp_targets")), name, len(b.ARPTargets))
		}
		if b.ARPInterval != nil && time.Duration(*b.ARPInterval) < 10*time.Millisecond {
			return fmt.Errorf("line %d: bonds.%s.arp_interval: %v is too short: want 10ms or more", line(root, append(p, "arp_interval")), name, time.Duration(*b.ARPInterval))
		}
		if b.MissedMax != nil && (*b.MissedMax < 1 || *b.MissedMax > 255) {
			return fmt.Errorf("line %d: bonds.%s.missed_max: %d is out of range: want 1 to 255", line(root, append(p, "missed_max")), name, *b.MissedMax)
		}
	}
	return nil
}

// line finds the line of a key path in the document, or the closest parent.
func line(root *yaml.Node, path []string) int {
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	best := n.Line
	for _, key := range path {
		found := false
		if n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == key {
					best, n, found = n.Content[i].Line, n.Content[i+1], true
					break
				}
			}
		}
		if !found {
			break
		}
	}
	return best
}

// Listed returns the interfaces named in the file, sorted.
func (c *Config) Listed() []string {
	return slices.Sorted(maps.Keys(c.Interfaces))
}

// Monitored is the interface list `run` monitors given its --interfaces
// flag: the flag wins; else the interfaces the file lists, unless
// monitor_all is set. Empty means every interface but loopback.
func (c *Config) Monitored(flag []string) []string {
	if len(flag) > 0 || c.MonitorAll {
		return flag
	}
	return c.Listed()
}

// For resolves an interface's settings: its section over the defaults over
// the built-in defaults.
func (c *Config) For(ifname string) Settings {
	s := Settings{WithdrawRoutes: true, ScriptTimeout: 30 * time.Second}
	apply := func(in Interface) {
		if in.Routes != nil {
			s.WithdrawRoutes = *in.Routes == "withdraw"
		}
		if in.UpDelay != nil {
			s.Rules.UpDelay = time.Duration(*in.UpDelay)
		}
		if in.DownDelay != nil {
			s.Rules.DownDelay = time.Duration(*in.DownDelay)
		}
		if d := in.Dampening; d != nil {
			s.Rules.Transitions, s.Rules.Window, s.Rules.HoldDown = d.Transitions, time.Duration(d.Window), time.Duration(d.HoldDown)
		}
		if in.Script != nil {
			s.Script = *in.Script
		}
		if in.ScriptTimeout != nil && *in.ScriptTimeout > 0 {
			s.ScriptTimeout = time.Duration(*in.ScriptTimeout)
		}
		if in.ScriptExtra != nil {
			s.ScriptExtra = *in.ScriptExtra
		}
	}
	apply(c.Defaults)
	if in, ok := c.Interfaces[ifname]; ok {
		apply(in)
	}
	return s
}

// RunScriptOnExit says whether to run down scripts when the daemon quits.
func (c *Config) RunScriptOnExit() bool { return c.ScriptOnExit == nil || *c.ScriptOnExit }
