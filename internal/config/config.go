// Package config reads linkbeat's YAML config. Every error names the file,
// the line and the field, and says what is allowed; unknown keys are errors.
// The zero config (no file) is the embedded default: withdraw routes, no
// delays, no dampening, no script.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"github.com/linkbeat/linkbeat/internal/policy"
	"github.com/linkbeat/linkbeat/internal/script"
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
	// ScriptCapabilities is what the script may hold (default
	// [CAP_NET_ADMIN]; [] for none). See docs/scripts.md.
	ScriptCapabilities *[]string `yaml:"script_capabilities"`
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
	// FastPath redirects a dead active slave's frames in the kernel, in
	// the driver's carrier call, until the bond has switched: on or off
	// (default on). fast_failover governs the user-space switch.
	FastPath *Switch `yaml:"fast_path"`
	// ARPTargets are IPv4 addresses probed through every slave.
	ARPTargets []string `yaml:"arp_targets"`
	// NSTargets are IPv6 addresses (global or link-local) probed with
	// neighbour solicitations through every slave, at the same interval
	// and missed_max.
	NSTargets []string `yaml:"ns_targets"`
	// ARPInterval is the probe interval (default 100ms).
	ARPInterval *Duration `yaml:"arp_interval"`
	// MissedMax is how many intervals without a reply make a path dead
	// (default 3).
	MissedMax *int `yaml:"missed_max"`
}

// BondSettings are one bond's resolved settings.
type BondSettings struct {
	FastFailover bool
	FastPath     bool
	ARPTargets   []netip.Addr
	NSTargets    []netip.Addr
	ARPInterval  time.Duration
	MissedMax    int
}

// ForBond resolves a bond's settings over the built-in defaults.
func (c *Config) ForBond(name string) BondSettings {
	s := BondSettings{FastFailover: true, FastPath: true, ARPInterval: 100 * time.Millisecond, MissedMax: 3}
	b, ok := c.Bonds[name]
	if !ok {
		return s
	}
	if b.FastFailover != nil {
		s.FastFailover = *b.FastFailover
	}
	if b.FastPath != nil {
		s.FastPath = bool(*b.FastPath)
	}
	for _, t := range b.ARPTargets {
		// validate has checked them.
		if a, err := netip.ParseAddr(t); err == nil {
			s.ARPTargets = append(s.ARPTargets, a)
		}
	}
	for _, t := range b.NSTargets {
		if a, err := netip.ParseAddr(t); err == nil {
			s.NSTargets = append(s.NSTargets, a)
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

// Targets are every path target, the ARP ones then the NS ones.
func (s BondSettings) Targets() []netip.Addr {
	return append(slices.Clone(s.ARPTargets), s.NSTargets...)
}

// Settings are one interface's resolved settings.
type Settings struct {
	WithdrawRoutes bool
	Rules          policy.Rules
	Script         string
	ScriptTimeout  time.Duration
	ScriptExtra    string
	// ScriptCaps are the capability names the script keeps.
	ScriptCaps []string
}

// Bounds of values a sane config can hold: beyond them a value is a slip
// (a unit forgotten, a digit too many), not an intent.
const (
	maxDelay       = time.Hour
	maxWindow      = 24 * time.Hour
	maxTransitions = 1000
	maxTimeout     = time.Hour
	maxARPInterval = time.Minute
)

// Duration is a time.Duration written "150ms", "2s"; a bare number is
// milliseconds.
type Duration time.Duration

// Switch is on or off (true and false are taken too).
type Switch bool

func (w *Switch) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		switch n.Value {
		case "on", "true":
			*w = true
			return nil
		case "off", "false":
			*w = false
			return nil
		}
	}
	return fmt.Errorf("line %d: %q: want on or off", n.Line, n.Value)
}

func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: want a duration such as 200ms or 2s", n.Line)
	}
	s := strings.TrimSpace(n.Value)
	v, err := time.ParseDuration(s)
	if err != nil {
		ms, e := strconv.ParseInt(s, 10, 64)
		if e != nil {
			return fmt.Errorf("line %d: %q is not a duration: want e.g. 200ms, 2s, or a number of milliseconds", n.Line, n.Value)
		}
		if ms > math.MaxInt64/int64(time.Millisecond) || ms < math.MinInt64/int64(time.Millisecond) {
			return fmt.Errorf("line %d: %q milliseconds is out of range", n.Line, n.Value)
		}
		v = time.Duration(ms) * time.Millisecond
	}
	if v < 0 {
		return fmt.Errorf("line %d: %q is negative: durations must be 0 or more", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the form UnmarshalYAML reads back: "1.5s", not
// nanoseconds that would be read as milliseconds.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

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
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		// io.EOF: an empty file is the default config.
		return nil, locate(b, explain(err))
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		l := extra.Line
		if len(extra.Content) > 0 {
			l = extra.Content[0].Line
		}
		return nil, fmt.Errorf("line %d: a second YAML document: the config is one document", l)
	} else if !errors.Is(err, io.EOF) {
		return nil, locate(b, explain(err))
	}
	var root yaml.Node
	_ = yaml.Unmarshal(b, &root)
	if err := c.validate(&root); err != nil {
		return nil, err
	}
	return c, nil
}

var (
	lineRef   = regexp.MustCompile(`\bline \d+\b`)
	anchorRef = regexp.MustCompile(`anchor '([^']*)'`)
)

// locate gives a line number to the yaml v3 errors that have none: the
// reader's (a byte refused anywhere), the decoder's alias checks, and the
// parser's on the first line, whose number yaml v3 leaves out (it takes
// line 0 for "no line").
func locate(b []byte, err error) error {
	msg := err.Error()
	if lineRef.MatchString(msg) {
		return err
	}
	at := 0
	switch m := anchorRef.FindStringSubmatch(msg); {
	case strings.Contains(msg, "control characters") || strings.Contains(msg, "UTF-8") || strings.Contains(msg, "UTF-16"):
		// The reader's refusals; the scanner's (a %-escape in a tag)
		// find no bad byte and are on the first line.
		at = max(badByte(b), 0)
	case m != nil && strings.Contains(msg, "unknown anchor"):
		at = bytes.Index(b, []byte("*"+m[1]))
	case m != nil:
		at = bytes.Index(b, []byte("&"+m[1]))
	case strings.Contains(msg, "aliasing"):
		at = bytes.IndexByte(b, '*')
	}
	if at < 0 {
		// Unlocatable: say so rather than point at a wrong line.
		return err
	}
	return fmt.Errorf("line %d: %w", 1+bytes.Count(b[:at], []byte("\n")), err)
}

// badByte finds the first byte YAML's reader refuses, or -1: invalid
// UTF-8, or a character outside YAML's printable set.
func badByte(b []byte) int {
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		printable := r == 0x09 || r == 0x0A || r == 0x0D || (r >= 0x20 && r <= 0x7E) || r == 0x85 ||
			(r >= 0xA0 && r <= 0xD7FF) || (r >= 0xE000 && r <= 0xFFFD) || (r >= 0x10000 && r <= 0x10FFFF)
		if (r == utf8.RuneError && size == 1) || !printable {
			return i
		}
		i += size
	}
	return -1
}

// explain rewrites yaml v3's messages to say what is allowed.
func explain(err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		// "file: line 3: ...", as for every other error.
		return errors.New(strings.TrimPrefix(err.Error(), "yaml: "))
	}
	msgs := make([]string, 0, len(te.Errors))
	for _, m := range te.Errors {
		m = strings.TrimPrefix(m, "yaml: ")
		if i := strings.Index(m, " not found in type "); i > 0 {
			typ := m[i+len(" not found in type "):]
			m = m[:i] + " is not a known key; allowed: " + allowedKeys(typ)
		}
		msgs = append(msgs, typeNames.Replace(m))
	}
	return errors.New(strings.Join(msgs, "; "))
}

// typeNames says in config terms what the Go types in yaml v3's messages
// stand for.
var typeNames = strings.NewReplacer(
	"into map[string]config.Interface", "into a map of interface names to their settings",
	"into map[string]config.Bond", "into a map of bond names to their settings",
	"into config.Interface", "into an interface's settings (a map)",
	"into config.Dampening", "into dampening settings (a map of transitions, window, hold_down)",
	"into config.Bond", "into a bond's settings (a map)",
	"into config.Config", "into the config (a map of monitor_all, defaults, interfaces, script_on_exit, bonds)",
	"into []string", "into a list",
	"into bool", "into true or false",
	"into int", "into an integer",
	"into string", "into a string",
)

func allowedKeys(typ string) string {
	switch {
	case strings.HasSuffix(typ, "config.Interface"):
		return "routes, up_delay, down_delay, dampening, script, script_timeout, script_extra, script_capabilities"
	case strings.HasSuffix(typ, "config.Dampening"):
		return "transitions, window, hold_down"
	case strings.HasSuffix(typ, "config.Bond"):
		return "fast_failover, fast_path, arp_targets, ns_targets, arp_interval, missed_max"
	default:
		return "monitor_all, defaults, interfaces, script_on_exit, bonds"
	}
}

// validate checks values the types cannot, pointing at their lines.
func (c *Config) validate(root *yaml.Node) error {
	check := func(path []string, in Interface) error {
		at := func(keys ...string) (int, string) {
			p := append(slices.Clone(path), keys...)
			return line(root, p), strings.Join(p, ".")
		}
		if in.Routes != nil && *in.Routes != "withdraw" && *in.Routes != "keep" {
			l, name := at("routes")
			return fmt.Errorf("line %d: %s: %q is not allowed: want withdraw or keep", l, name, *in.Routes)
		}
		for _, d := range []struct {
			key string
			v   *Duration
		}{{"up_delay", in.UpDelay}, {"down_delay", in.DownDelay}} {
			if d.v != nil && time.Duration(*d.v) > maxDelay {
				l, name := at(d.key)
				return fmt.Errorf("line %d: %s: %v is too long: want at most %v", l, name, time.Duration(*d.v), maxDelay)
			}
		}
		if d := in.Dampening; d != nil {
			l, name := at("dampening", "transitions")
			switch {
			case d.Transitions < 0:
				return fmt.Errorf("line %d: %s: %d is negative: want 2 or more, or 0 to turn dampening off", l, name, d.Transitions)
			case d.Transitions == 0 && (d.Window != 0 || d.HoldDown != 0):
				return fmt.Errorf("line %d: %s is 0 or missing, which turns dampening off, yet a window or hold_down is set: want 2 or more transitions, or no window and hold_down", l, name)
			case d.Transitions == 0:
			case d.Transitions < 2:
				return fmt.Errorf("line %d: %s: %d is too few: want 2 or more (0 turns dampening off)", l, name, d.Transitions)
			case d.Transitions > maxTransitions:
				return fmt.Errorf("line %d: %s: %d is too many: want at most %d", l, name, d.Transitions, maxTransitions)
			}
			if d.Transitions > 0 {
				for _, w := range []struct {
					key string
					v   Duration
				}{{"window", d.Window}, {"hold_down", d.HoldDown}} {
					l, name := at("dampening", w.key)
					if w.v <= 0 {
						return fmt.Errorf("line %d: %s must be more than 0 when dampening is on", l, name)
					}
					if time.Duration(w.v) > maxWindow {
						return fmt.Errorf("line %d: %s: %v is too long: want at most %v", l, name, time.Duration(w.v), maxWindow)
					}
				}
			}
		}
		if in.Script != nil && *in.Script != "" && !strings.HasPrefix(*in.Script, "/") {
			l, name := at("script")
			return fmt.Errorf("line %d: %s: %q must be an absolute path", l, name, *in.Script)
		}
		if t := in.ScriptTimeout; t != nil && (*t <= 0 || time.Duration(*t) > maxTimeout) {
			l, name := at("script_timeout")
			return fmt.Errorf("line %d: %s: %v is out of range: want more than 0 and at most %v", l, name, time.Duration(*t), maxTimeout)
		}
		if in.ScriptCapabilities != nil {
			for _, n := range *in.ScriptCapabilities {
				if _, err := script.ParseCapability(n); err != nil {
					l, name := at("script_capabilities")
					return fmt.Errorf("line %d: %s: %w", l, name, err)
				}
			}
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
		if err := checkNSTargets(root, p, b.NSTargets); err != nil {
			return err
		}
		if b.ARPInterval != nil && time.Duration(*b.ARPInterval) < 10*time.Millisecond {
			return fmt.Errorf("line %d: bonds.%s.arp_interval: %v is too short: want 10ms or more", line(root, append(p, "arp_interval")), name, time.Duration(*b.ARPInterval))
		}
		if b.ARPInterval != nil && time.Duration(*b.ARPInterval) > maxARPInterval {
			return fmt.Errorf("line %d: bonds.%s.arp_interval: %v is too long: want at most %v", line(root, append(p, "arp_interval")), name, time.Duration(*b.ARPInterval), maxARPInterval)
		}
		if b.MissedMax != nil && (*b.MissedMax < 1 || *b.MissedMax > 255) {
			return fmt.Errorf("line %d: bonds.%s.missed_max: %d is out of range: want 1 to 255", line(root, append(p, "missed_max")), name, *b.MissedMax)
		}
	}
	return nil
}

// maxNSTargets is the bonding driver's BOND_MAX_NS_TARGETS.
const maxNSTargets = 16

// checkNSTargets wants what the bonding driver takes as ns_ip6_target: a
// global or link-local unicast IPv6 address (no zone: the bond is the
// link), each once, at most maxNSTargets.
func checkNSTargets(root *yaml.Node, p []string, targets []string) error {
	at := line(root, append(slices.Clone(p), "ns_targets"))
	seen := map[netip.Addr]bool{}
	for _, t := range targets {
		a, err := netip.ParseAddr(t)
		switch {
		case err != nil || !a.Is6() || a.Is4In6():
			return fmt.Errorf("line %d: bonds.%s.ns_targets: %q is not an IPv6 address", at, p[1], t)
		case a.Zone() != "":
			return fmt.Errorf("line %d: bonds.%s.ns_targets: %q has a zone: give the address alone, the bond is its link", at, p[1], t)
		case !a.IsGlobalUnicast() && !a.IsLinkLocalUnicast():
			return fmt.Errorf("line %d: bonds.%s.ns_targets: %q is not a global or link-local unicast address", at, p[1], t)
		case seen[a]:
			return fmt.Errorf("line %d: bonds.%s.ns_targets: %q is listed twice", at, p[1], t)
		}
		seen[a] = true
	}
	if len(targets) > maxNSTargets {
		return fmt.Errorf("line %d: bonds.%s.ns_targets: %d targets, at most %d are allowed (BOND_MAX_NS_TARGETS in bonding)", at, p[1], len(targets), maxNSTargets)
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
	s := Settings{WithdrawRoutes: true, ScriptTimeout: 30 * time.Second, ScriptCaps: script.DefaultCapabilities()}
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
		if in.ScriptCapabilities != nil {
			s.ScriptCaps = slices.Clone(*in.ScriptCapabilities)
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
