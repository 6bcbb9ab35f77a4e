// Package doctor inspects a host's redundancy setup (bonds, multipath
// routes, what linkbeat would monitor, the kernel paths linkbeat can use)
// and reports findings, each with a severity, what it costs and how to
// fix it, following the decision tree that `linkbeat doctor --guide`
// prints.
//
// Where the host is read: gather.go (the only file doing I/O), into a
// Snapshot. Where it is judged: the checks (bonds.go, routes.go, paths.go,
// delays.go), pure functions of a Snapshot, tested on fixtures.
package doctor

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"

	"github.com/linkbeat/linkbeat/internal/config"
	"github.com/linkbeat/linkbeat/internal/registry"
	"github.com/linkbeat/linkbeat/internal/routes"
	"github.com/linkbeat/linkbeat/internal/source"
)

// Severity orders findings. The exit status of `linkbeat doctor` is the
// highest severity found: 0 for info or nothing, 1 for a warning, 2 for
// an error.
type Severity int

const (
	Info Severity = iota
	Warning
	Error
)

func (s Severity) String() string {
	switch s {
	case Info:
		return "info"
	case Warning:
		return "warning"
	case Error:
		return "error"
	}
	return fmt.Sprintf("severity%d", int(s))
}

// MarshalText writes the name, for JSON.
func (s Severity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads a name back.
func (s *Severity) UnmarshalText(b []byte) error {
	for _, v := range []Severity{Info, Warning, Error} {
		if v.String() == string(b) {
			*s = v
			return nil
		}
	}
	return fmt.Errorf("unknown severity %q: want info, warning or error", b)
}

// Finding is one thing doctor found.
type Finding struct {
	// ID names the kind of finding; docs/doctor.md lists them all.
	ID       string   `json:"id"`
	Severity Severity `json:"severity"`
	// Subject is what it is about: an interface, a route, a path.
	Subject string `json:"subject"`
	// Summary says what is wrong, in one line.
	Summary string `json:"summary"`
	// Why says what it costs.
	Why string `json:"why"`
	// Fix says what to do, with the commands.
	Fix string `json:"fix"`
	// Guide names the part of the guide (`linkbeat doctor --guide`) the
	// finding follows from.
	Guide string `json:"guide,omitempty"`
}

// Speed is a port's speed in Mb/s (-1 unknown) and duplex (1 full,
// 0 half, -1 unknown), as /sys/class/net/IF/speed and duplex say.
type Speed struct {
	Mbps   int `json:"mbps"`
	Duplex int `json:"duplex"`
}

// Monitoring is what `linkbeat run`, given the same flags, would watch
// and do.
type Monitoring struct {
	// Daemon is run's daemon config: Interfaces (after the config file's
	// list is merged in) and CarrierSource.
	Daemon source.Config
	// Config is the config file (nil: the embedded defaults).
	Config *config.Config
	// ConfigErr is why the config file was refused ("" when it was not).
	ConfigErr string
}

func (m Monitoring) config() *config.Config {
	if m.Config == nil {
		return &config.Config{}
	}
	return m.Config
}

// Paths is the kernel-path probe: what ProbeCarrier found.
type Paths struct {
	// Probed is false when the probe could not run (Err says why).
	Probed   bool            `json:"probed"`
	Features source.Features `json:"features"`
	Err      string          `json:"error,omitempty"`
	// NoKprobePMU is set when /sys/bus/event_source/devices lacks the
	// kprobe PMU: the kernel has no kprobes (CONFIG_KPROBES), whatever the
	// probe's error says (without tracefs mounted it blames tracefs).
	NoKprobePMU bool `json:"no_kprobe_pmu,omitempty"`
}

// Bpffs is the state of the bpffs run would pin its maps on.
type Bpffs struct {
	PinDir  string `json:"pin_dir"`
	Mounted bool   `json:"mounted"`
	Detail  string `json:"detail"`
}

// Problem is something the gatherer could not read; doctor reports it
// so that a missing finding is not mistaken for a clean bill.
type Problem struct {
	What     string
	Err      string
	Severity Severity
}

// Snapshot is everything the checks look at, read once.
type Snapshot struct {
	Links []registry.Link
	// Speeds of bond ports, by ifindex.
	Speeds map[int]Speed
	// Routes and Nexthops are the kernel's, as internal/routes dumps them.
	Routes   []*routes.Route
	Nexthops []*routes.Nexthop
	// IgnoreLinkdown is net.{ipv4,ipv6}.conf.KEY.ignore_routes_with_linkdown,
	// by family ("ipv4", "ipv6") and KEY ("all", "default", an interface).
	IgnoreLinkdown map[string]map[string]bool
	// Addrs are the interfaces' addresses, by ifindex, link-local ones
	// left out (every IPv6 interface has one).
	Addrs   map[int][]netip.Addr
	Monitor Monitoring
	Paths   Paths
	Bpffs   Bpffs
	// Delays are the updelay/downdelay values someone asked for, from the
	// kernel log and from config files, which the kernel may have rounded.
	Delays   []DelayRequest
	Problems []Problem
}

func (s *Snapshot) link(idx int) (registry.Link, bool) {
	for _, l := range s.Links {
		if l.Index == idx {
			return l, true
		}
	}
	return registry.Link{}, false
}

func (s *Snapshot) linkByName(name string) (registry.Link, bool) {
	for _, l := range s.Links {
		if l.Name == name {
			return l, true
		}
	}
	return registry.Link{}, false
}

func (s *Snapshot) name(idx int) string {
	if l, ok := s.link(idx); ok {
		return l.Name
	}
	return fmt.Sprintf("if%d", idx)
}

// slaves returns a bond's ports, in ifindex order.
func (s *Snapshot) slaves(bond int) []registry.Link {
	var out []registry.Link
	for _, l := range s.Links {
		if l.MasterIndex == bond && l.BondSlave != nil {
			out = append(out, l)
		}
	}
	slices.SortFunc(out, func(a, b registry.Link) int { return a.Index - b.Index })
	return out
}

// masterName is the name of l's master, "" for none.
func (s *Snapshot) masterName(l registry.Link) string {
	if l.MasterIndex == 0 {
		return ""
	}
	return s.name(l.MasterIndex)
}

// monitored applies run's rule to l.
func (s *Snapshot) monitored(l registry.Link) bool {
	return source.Monitors(s.Monitor.Daemon, l, s.masterName(l))
}

// check is one check over a snapshot.
type check func(*Snapshot) []Finding

// allChecks are every check, in report order before sorting.
func allChecks() []check {
	return []check{
		checkConfig, checkProblems,
		checkBondMonitor, checkArpValidate, checkArpTargets, checkNSTargetIgnored, checkIPv6PathCheck, checkDelays,
		checkActiveBackupSpeeds, checkLACPSpeeds, checkLACPPartner, checkLACPAggregators, checkBondMode, checkFastPath,
		checkMultipathLinkdown, checkUnmonitoredRoutes,
		checkCarrierPath, checkBpffs,
	}
}

// Check runs every check and returns the findings, the most severe first.
func Check(s *Snapshot) []Finding {
	var out []Finding
	for _, c := range allChecks() {
		out = append(out, c(s)...)
	}
	slices.SortStableFunc(out, func(a, b Finding) int {
		return cmp.Or(cmp.Compare(b.Severity, a.Severity), cmp.Compare(a.ID, b.ID), cmp.Compare(a.Subject, b.Subject))
	})
	return out
}

// ExitStatus is `linkbeat doctor`'s exit status for findings: 0 when
// none is above info, 1 for warnings, 2 for errors.
func ExitStatus(fs []Finding) int {
	worst := Info
	for _, f := range fs {
		worst = max(worst, f.Severity)
	}
	return int(worst)
}

func checkConfig(s *Snapshot) []Finding {
	if s.Monitor.ConfigErr == "" {
		return nil
	}
	return []Finding{{
		ID: "config-invalid", Severity: Error, Subject: "config",
		Summary: "the config file is refused: " + s.Monitor.ConfigErr,
		Why:     "`linkbeat run` with this config does not start, so nothing is monitored. Doctor judged the rest with the embedded defaults (every interface but loopback).",
		Fix:     "Correct the file (`linkbeat config check FILE` names the line and the field; docs/config.md lists every key).",
	}}
}

func checkProblems(s *Snapshot) []Finding {
	var out []Finding
	for _, p := range s.Problems {
		out = append(out, Finding{
			ID: "doctor-incomplete", Severity: p.Severity, Subject: p.What,
			Summary: fmt.Sprintf("could not read %s: %s", p.What, p.Err),
			Why:     "Findings that depend on it are missing from this report; their absence is no clean bill.",
			Fix:     "Run `linkbeat doctor` as root in the network namespace linkbeat runs in (`ip netns exec NS linkbeat doctor`).",
		})
	}
	return out
}
