package doctor

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/linkbeat/linkbeat/internal/bond"
	"github.com/linkbeat/linkbeat/internal/config"
	"github.com/linkbeat/linkbeat/internal/probe"
	"github.com/linkbeat/linkbeat/internal/registry"
	"github.com/linkbeat/linkbeat/internal/routes"
	"github.com/linkbeat/linkbeat/internal/source"
)

const (
	sysClassNet = "/sys/class/net"
	procSysNet  = "/proc/sys/net"
	devKmsg     = "/dev/kmsg"
)

// Options say what Gather reads.
type Options struct {
	// Monitor is what linkbeat run would be given (see RunInterfaces).
	Monitor Monitoring
	// PinDir is run's --bpffs-dir; "" skips the bpffs check.
	PinDir string
	// EtcDir is where ifupdown's and modprobe's files are read from
	// (default /etc).
	EtcDir string
	Log    *slog.Logger
}

// RunInterfaces is the interface list linkbeat run monitors, given its
// --interfaces flag and its config (nil: none); see config.Monitored.
func RunInterfaces(flag []string, cfg *config.Config) []string {
	if cfg == nil {
		return flag
	}
	return cfg.Monitored(flag)
}

// Gather reads the host, in the caller's network namespace. It never
// fails: what it cannot read becomes a Problem in the snapshot.
func Gather(o Options) *Snapshot {
	g := &gatherer{o: o, s: &Snapshot{
		Monitor: o.Monitor, Speeds: map[int]Speed{},
		IgnoreLinkdown: map[string]map[string]bool{"ipv4": {}, "ipv6": {}},
	}}
	if g.o.EtcDir == "" {
		g.o.EtcDir = "/etc"
	}
	if g.o.Log == nil {
		g.o.Log = slog.New(slog.DiscardHandler)
	}
	g.links()
	g.addrs()
	g.routes()
	g.sysctls()
	g.paths()
	g.bpffs()
	g.delays()
	return g.s
}

type gatherer struct {
	o Options
	s *Snapshot
}

func (g *gatherer) problem(what string, err error, sev Severity) {
	g.o.Log.Debug("doctor could not read", "what", what, "err", err)
	g.s.Problems = append(g.s.Problems, Problem{What: what, Err: err.Error(), Severity: sev})
}

func (g *gatherer) links() {
	links, err := registry.Dump()
	if err != nil {
		g.problem("the interfaces", err, Warning)
		return
	}
	g.s.Links = links
	if !slices.ContainsFunc(links, func(l registry.Link) bool { return l.BondSlave != nil }) {
		return
	}
	bk, err := bond.NewKernel()
	if err != nil {
		g.problem("bond port speeds", err, Info)
		return
	}
	defer bk.Close()
	for _, l := range links {
		if l.BondSlave != nil {
			sp, dup := bk.Speed(l.Name)
			g.s.Speeds[l.Index] = Speed{Mbps: sp, Duplex: dup}
		}
	}
}

func (g *gatherer) addrs() {
	as, err := netlink.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		g.problem("the addresses", err, Info)
		return
	}
	g.s.Addrs = map[int][]netip.Addr{}
	for _, a := range as {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok || ip.Unmap().IsLinkLocalUnicast() {
			continue
		}
		g.s.Addrs[a.LinkIndex] = append(g.s.Addrs[a.LinkIndex], ip.Unmap())
	}
}

func (g *gatherer) routes() {
	k := routes.NewKernel()
	rs, err := k.Routes()
	if err != nil {
		g.problem("the routes", err, Warning)
		return
	}
	g.s.Routes = rs
	nhs, err := k.Nexthops()
	if err != nil {
		g.problem("the nexthop objects", err, Warning)
		return
	}
	g.s.Nexthops = nhs
}

// ParseSysctlBool reads a 0/1 sysctl value.
func ParseSysctlBool(s string) (bool, error) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return false, fmt.Errorf("parse sysctl value %q: %w", strings.TrimSpace(s), err)
	}
	return n != 0, nil
}

func (g *gatherer) sysctls() {
	keys := []string{"all", "default"}
	for _, l := range g.s.Links {
		keys = append(keys, l.Name)
	}
	for _, fam := range []string{"ipv4", "ipv6"} {
		for _, k := range keys {
			p := filepath.Join(procSysNet, fam, "conf", k, "ignore_routes_with_linkdown")
			b, err := os.ReadFile(p)
			if errors.Is(err, fs.ErrNotExist) {
				continue // IPv6 off, or the link left
			}
			if err == nil {
				var v bool
				if v, err = ParseSysctlBool(string(b)); err == nil {
					g.s.IgnoreLinkdown[fam][k] = v
					continue
				}
			}
			g.problem(p, err, Info)
		}
	}
}

func (g *gatherer) paths() {
	f, err := source.ProbeCarrier(g.o.Monitor.Daemon, g.o.Log)
	g.s.Paths.Features = f
	g.s.Paths.Probed = len(f.Checks) > 0 && f.Checks[0].Name == "privileges" && f.Checks[0].OK
	if err != nil {
		g.s.Paths.Err = err.Error()
	}
	if _, err := os.Stat("/sys/bus/event_source/devices"); err == nil {
		_, err := os.Stat("/sys/bus/event_source/devices/kprobe")
		g.s.Paths.NoKprobePMU = errors.Is(err, fs.ErrNotExist)
	}
}

func (g *gatherer) bpffs() {
	if g.o.PinDir == "" {
		return
	}
	c := probe.InspectBpffs(g.o.PinDir)
	g.s.Bpffs = Bpffs{PinDir: g.o.PinDir, Mounted: c.OK, Detail: c.Detail}
}

func (g *gatherer) delays() {
	msgs, err := readKmsg(devKmsg)
	if err != nil {
		g.problem("the kernel log (for bonding's delay warnings)", err, Info)
	}
	g.s.Delays = append(g.s.Delays, LogDelays(msgs)...)
	seen := map[string]bool{}
	g.interfacesFile(filepath.Join(g.o.EtcDir, "network", "interfaces"), seen, 0)
	confs, _ := filepath.Glob(filepath.Join(g.o.EtcDir, "modprobe.d", "*.conf"))
	for _, p := range confs {
		b, err := os.ReadFile(p)
		if err != nil {
			g.problem(p, err, Info)
			continue
		}
		g.s.Delays = append(g.s.Delays, ParseModprobe(p, b)...)
	}
}

// interfacesFile reads an ifupdown file and what it sources.
func (g *gatherer) interfacesFile(p string, seen map[string]bool, depth int) {
	if seen[p] || depth > 8 {
		return
	}
	seen[p] = true
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	if err != nil {
		g.problem(p, err, Info)
		return
	}
	reqs, incs := ParseInterfaces(p, b)
	g.s.Delays = append(g.s.Delays, reqs...)
	for _, inc := range incs {
		pat := inc.Pattern
		switch {
		case strings.HasPrefix(pat, "/etc/"):
			pat = filepath.Join(g.o.EtcDir, strings.TrimPrefix(pat, "/etc/"))
		case !filepath.IsAbs(pat):
			pat = filepath.Join(filepath.Dir(p), pat)
		}
		var files []string
		if inc.Dir {
			ents, err := os.ReadDir(pat)
			if err != nil {
				continue
			}
			for _, e := range ents {
				if !e.IsDir() && IncludeAllowed(e.Name()) {
					files = append(files, filepath.Join(pat, e.Name()))
				}
			}
		} else {
			files, _ = filepath.Glob(pat)
		}
		for _, f := range files {
			g.interfacesFile(f, seen, depth+1)
		}
	}
}

// readKmsg returns the kernel log messages that matter to doctor (the
// bonding driver's delay roundings). It reads /dev/kmsg without blocking:
// records come one per read, EAGAIN ends the log, EPIPE means a record
// was overwritten while reading.
func readKmsg(p string) ([]string, error) {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", p, err)
	}
	defer unix.Close(fd)
	buf := make([]byte, 16*1024)
	var msgs []string
	for {
		n, err := unix.Read(fd, buf)
		switch {
		case errors.Is(err, unix.EPIPE), errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EAGAIN):
			return msgs, nil
		case err != nil:
			return msgs, fmt.Errorf("read %s: %w", p, err)
		case n <= 0:
			return msgs, nil
		}
		if m, ok := KmsgText(string(buf[:n])); ok && strings.Contains(m, "multiple of miimon") {
			msgs = append(msgs, m)
		}
	}
}
