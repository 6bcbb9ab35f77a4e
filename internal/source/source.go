// Package source is where kernel events enter linkbeat: the BPF ring buffer
// and rtnetlink feed the carrier tracker, which orders them, and the
// ordered events go out to one Handler. It owns the one goroutine that
// holds the link table and the tracker.
package source

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/linkbeat/linkbeat/internal/carrier"
	"github.com/linkbeat/linkbeat/internal/probe"
	"github.com/linkbeat/linkbeat/internal/registry"
	"github.com/linkbeat/linkbeat/internal/traffic"
)

// Config is what the daemon is asked to do.
type Config struct {
	// Interfaces restricts monitoring to these names; empty means every
	// interface but loopback.
	Interfaces []string
	// CarrierSource forces "fentry", "kprobe" or "netlink"; "" or "auto"
	// walks the chain.
	CarrierSource string
	// PinDir pins maps under this bpffs directory; empty pins nothing.
	PinDir string
	// KernelBTF replaces /sys/kernel/btf/vmlinux.
	KernelBTF string
	// NetlinkRcvBuf sets the rtnetlink socket's receive buffer (0: default).
	NetlinkRcvBuf int
	// RingSize sets the BPF carrier ring buffer's size in bytes (0: default).
	RingSize uint32
	// TC forces "tcx" or "clsact"; empty probes.
	TC string
	// DropSettle is how long after a burst of BPF events the drop
	// counter is read once more (0: 250ms).
	DropSettle time.Duration
	// Observer, if set, hears what the loop does (see observe.go).
	Observer Observer
	// ReleaseOnExit detaches the pinned TC and tracepoint programs on
	// Close; by default they stay attached, counting, until the next run.
	ReleaseOnExit bool
	// Heartbeat, if positive, has the loop call Handler.Heartbeat this
	// often (systemd's watchdog); 0 runs no timer at all.
	Heartbeat time.Duration
	// FastPath are the bond fast path's maps (internal/fastpath), which
	// the carrier programs write in the driver's call; FastPathErr says
	// why there are none.
	FastPath    map[string]*ebpf.Map
	FastPathErr error
}

// Features is the result of probing, as `linkbeat features` prints it.
type Features struct {
	CarrierSource carrier.Source `json:"carrier_source"`
	TCMechanism   string         `json:"tc_mechanism"`
	Tracepoints   bool           `json:"tracepoints"`
	// FastPath is how the bond fast path marks a dead slave: "driver"
	// (in the carrier program), "netlink" (on the notice), or "off".
	FastPath string        `json:"fast_path"`
	Kernel   string        `json:"kernel"`
	Checks   []probe.Check `json:"checks"`
}

// ring is the BPF carrier source (carrier.BPF): events in the order the
// drivers made them, with the counters the loop orders them by.
type ring interface {
	Read() (carrier.Event, error)
	Queued() (uint64, error)
	Drops() (uint64, error)
	Close() error
}

// linkWatcher is the rtnetlink subscription (registry.Watcher).
type linkWatcher interface {
	Receive() ([]registry.Update, error)
	Close()
}

// Source holds the loaded programs and the sockets.
type Source struct {
	cfg      Config
	log      *slog.Logger
	features Features
	bpf      ring // nil: netlink is the only carrier source
	traffic  *traffic.Traffic
	watcher  linkWatcher
	dump     func() ([]registry.Link, error) // registry.Dump
	wanted   map[string]bool
	// interfaces carries SetInterfaces and Reload to Run's goroutine,
	// which owns wanted once Run has started.
	interfaces chan Reload
}

// Open probes the host and loads what it allows. It fails only when
// nothing useful can run (no privileges, or a forced path is refused);
// every fallback is logged and recorded in Features.
func Open(cfg Config, log *slog.Logger) (*Source, error) {
	d := &Source{cfg: cfg, log: log, interfaces: make(chan Reload), dump: registry.Dump}
	d.setWanted(cfg.Interfaces)
	f := &d.features
	f.Kernel = probe.KernelRelease()

	priv := probe.Privileges()
	f.Checks = append(f.Checks, priv)
	if !priv.OK {
		return nil, errors.New(priv.Detail)
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		log.Warn("cannot lift RLIMIT_MEMLOCK; map creation may fail on kernels before 5.11", "err", err)
	}
	if cfg.PinDir != "" {
		c := probe.Bpffs(cfg.PinDir)
		f.Checks = append(f.Checks, c)
		if c.OK {
			if err := os.MkdirAll(cfg.PinDir, 0o700); err != nil {
				return nil, fmt.Errorf("create pin directory %s: %w", cfg.PinDir, err)
			}
		} else {
			// Failover needs no pins: run on what there is, and say so.
			log.Error("running without pins: `linkbeat stats` and `status` cannot read the counters, they restart from 0 with the daemon, and the TC programs go with it", "reason", c.Detail)
			d.cfg.PinDir = ""
		}
	}
	f.Checks = append(f.Checks, probe.Tracefs())
	kernelTypes, btfCheck := probe.BTF(cfg.KernelBTF)
	f.Checks = append(f.Checks, btfCheck)

	if err := d.openCarrier(kernelTypes, btfCheck); err != nil {
		return nil, err
	}
	if err := d.openTraffic(kernelTypes); err != nil {
		d.Close()
		return nil, err
	}
	d.fastPathCheck()
	w, err := registry.Watch(cfg.NetlinkRcvBuf)
	if err != nil {
		d.Close()
		return nil, err
	}
	d.watcher = w
	log.Info("features", "carrier_source", f.CarrierSource, "tc", f.TCMechanism, "tracepoints", f.Tracepoints, "fast_path", f.FastPath, "kernel", f.Kernel)
	return d, nil
}

func (d *Source) openCarrier(kernelTypes *btf.Spec, btfCheck probe.Check) error {
	f := &d.features
	want := carrier.SourceNone
	switch d.cfg.CarrierSource {
	case "", "auto":
	default:
		s, err := carrier.ParseSource(d.cfg.CarrierSource)
		if err != nil {
			return err
		}
		want = s
	}
	if want == carrier.SourceNetlink {
		f.CarrierSource = carrier.SourceNetlink
		f.Checks = append(f.Checks, probe.Check{Name: "netlink", OK: true, Detail: "forced by --carrier-source netlink"})
		return nil
	}
	var attempts []carrier.Attempt
	if btfCheck.OK || kernelTypes != nil {
		ino, err := probe.NetnsInode()
		if err != nil {
			return err
		}
		var b *carrier.BPF
		b, attempts, err = carrier.OpenBPF(carrier.BPFOptions{Want: want, NetnsIno: ino, KernelTypes: kernelTypes, RingSize: d.cfg.RingSize, FastPath: d.cfg.FastPath})
		if err == nil {
			d.bpf = b
			f.CarrierSource = b.Source()
		}
	} else {
		attempts = []carrier.Attempt{{Source: carrier.SourceFentry, Err: errors.New("no kernel BTF")}}
	}
	for _, a := range attempts {
		detail := explainRefusal(a)
		f.Checks = append(f.Checks, probe.Check{Name: a.Source.String(), Detail: detail})
		d.log.Warn("carrier path refused", "source", a.Source, "reason", detail)
	}
	if d.bpf != nil {
		f.Checks = append(f.Checks, probe.Check{Name: f.CarrierSource.String(), OK: true,
			Detail: "attached to netif_carrier_on/off: events at the driver's call, before linkwatch"})
		return nil
	}
	if want != carrier.SourceNone {
		return fmt.Errorf("--carrier-source %s was asked for but refused: %s", want, explainRefusal(attempts[0]))
	}
	f.CarrierSource = carrier.SourceNetlink
	f.Checks = append(f.Checks, probe.Check{Name: "netlink", OK: true,
		Detail: "RTNLGRP_LINK notices: works everywhere, but linkwatch may hold a plain NIC's notice back up to 1s"})
	return nil
}

// explainRefusal turns a kernel refusal into advice.
func explainRefusal(a carrier.Attempt) string {
	err := a.Err
	switch {
	case errors.Is(err, unix.EPERM) && a.Source == carrier.SourceFentry:
		return fmt.Sprintf("refused with EPERM (%v): the kernel or a security module (lockdown, a sandbox) forbids BPF tracing programs", err)
	case errors.Is(err, os.ErrNotExist) && a.Source == carrier.SourceKprobe:
		return fmt.Sprintf("no kprobe support (%v): the kernel is built without CONFIG_KPROBES", err)
	}
	return err.Error()
}

func (d *Source) openTraffic(kernelTypes *btf.Spec) error {
	t, err := traffic.Open(traffic.Options{PinDir: d.cfg.PinDir, Mechanism: traffic.Mechanism(d.cfg.TC), KernelTypes: kernelTypes, NoKernelBTF: kernelTypes == nil, Log: d.log})
	f := &d.features
	if err != nil {
		f.TCMechanism = "none"
		f.Checks = append(f.Checks, probe.Check{Name: "tc", Detail: err.Error()})
		d.log.Warn("traffic counting off", "err", err)
		return nil
	}
	d.traffic = t
	f.TCMechanism = string(t.Mechanism())
	detail := "tcx links (Linux 6.6+)"
	if t.Mechanism() == traffic.Clsact {
		detail = "clsact qdisc with cls_bpf direct-action filters: tcx is not available"
	}
	f.Checks = append(f.Checks, probe.Check{Name: string(t.Mechanism()), OK: true, Detail: detail})
	if err := t.TracepointErr(); err != nil {
		f.Checks = append(f.Checks, probe.Check{Name: "tracepoints", Detail: err.Error()})
		d.log.Warn("tx error counting off", "err", err)
	} else {
		f.Tracepoints = true
		f.Checks = append(f.Checks, probe.Check{Name: "tracepoints", OK: true, Detail: "net_dev_xmit and net_dev_xmit_timeout (raw tracepoints)"})
	}
	return nil
}

// fastPathCheck says whether the bond fast path can run, and how.
func (d *Source) fastPathCheck() {
	f := &d.features
	c := probe.Check{Name: "fast_path"}
	f.FastPath = "off"
	switch {
	case d.cfg.FastPathErr != nil:
		c.Detail = "off: " + d.cfg.FastPathErr.Error()
	case d.cfg.FastPath == nil:
		c.Detail = "off: not asked for"
	case d.traffic == nil:
		c.Detail = "off: no TC hook (tcx or clsact) to redirect a dead slave's frames with"
	case d.bpf != nil:
		c.OK, f.FastPath = true, "driver"
		c.Detail = fmt.Sprintf("live: the %s carrier program marks a dead active slave and picks its replacement in the driver's netif_carrier_off call; %s programs redirect until the bond has switched", f.CarrierSource, f.TCMechanism)
	default:
		c.OK, f.FastPath = true, "netlink"
		c.Detail = fmt.Sprintf("live on netlink notices: no BPF carrier path, so the daemon marks a dead active slave when it reads the notice (no RTNL wait, but linkwatch's delay); %s programs redirect", f.TCMechanism)
	}
	if !c.OK {
		d.log.Warn("bond fast path off", "reason", c.Detail)
	}
	f.Checks = append(f.Checks, c)
}

// PinDir is the bpffs directory in use: the configured one, or "" when
// it was not usable and nothing is pinned.
func (d *Source) PinDir() string { return d.cfg.PinDir }

// Features returns the probing result.
func (d *Source) Features() Features { return d.features }

// closeSources closes the netlink socket and the BPF carrier source, which
// unblocks their readers. The traffic programs stay until Close.
func (d *Source) closeSources() error {
	var err error
	if d.watcher != nil {
		d.watcher.Close()
		d.watcher = nil
	}
	if d.bpf != nil {
		err = d.bpf.Close()
		d.bpf = nil
	}
	return err
}

// Close releases everything Open took.
func (d *Source) Close() error {
	errs := []error{d.closeSources()}
	if d.traffic != nil && d.cfg.ReleaseOnExit {
		errs = append(errs, d.traffic.Release())
	} else if d.traffic != nil {
		errs = append(errs, d.traffic.Close())
	}
	return errors.Join(errs...)
}

// Reload is a config reload as the source takes it.
type Reload struct {
	// Interfaces is the new monitored set, if SetInterfaces; empty means
	// every interface but loopback.
	Interfaces    []string
	SetInterfaces bool
	// Notify calls Handler.Reload once the set has changed: after the
	// links that left it were reported released.
	Notify bool
}

// SetInterfaces changes the monitored set while Run runs; empty means
// every interface but loopback. Unchanged links keep their programs. It
// waits for Run's goroutine to take the change.
func (d *Source) SetInterfaces(ctx context.Context, names []string) error {
	return d.Reload(ctx, Reload{Interfaces: names, SetInterfaces: true})
}

// Reload hands a config reload to Run's goroutine, so that the handler
// hears of it in one stream with the links it releases. It waits for the
// goroutine to take it.
func (d *Source) Reload(ctx context.Context, r Reload) error {
	select {
	case d.interfaces <- r:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("reload: %w", ctx.Err())
	}
}

func (d *Source) setWanted(names []string) {
	d.wanted = make(map[string]bool, len(names))
	for _, n := range names {
		d.wanted[n] = true
	}
}

// monitored decides by name: a listed interface, or a port of a listed
// bond or bridge, so that listing bond0 watches its slaves too.
func (d *Source) monitored(l registry.Link, master string) bool {
	if len(d.wanted) == 0 {
		return !l.Loopback
	}
	return d.wanted[l.Name] || (master != "" && d.wanted[master])
}

// Membership is the bond a link belongs to (or is), from the link table,
// the one owner of membership: (bond, slave) for a bond slave, (bond,
// active slave) for a bond, empty for other links.
type Membership struct {
	Bond, Slave string
}

// Event is a link's carrier change after ordering, with its bond.
type Event struct {
	carrier.Event
	Membership
	// Monitored says the link is in the monitored set. The others'
	// changes are reported too: a released link may wait for its carrier
	// (internal/actions), and bonds fail over on any slave.
	Monitored bool
}

// LinkEvent is a link change after ordering: the link as the table holds
// it, with its carrier as the tracker ordered it (so a notice read late
// never brings back an older carrier), its bond, and the bonds whose
// membership the change touches. Handler.Link gets a monitored link's
// first sight, removal or release; Handler.Bond each change of a bond or
// bond slave.
type LinkEvent struct {
	// Kind is Added, Updated or Removed; an ordered carrier change of a
	// link already known is Updated. Link.Carrier and its counters are
	// the tracker's.
	registry.Change
	Membership
	// CarrierNs is when Link's carrier changed, on CLOCK_MONOTONIC: the
	// driver's call for a BPF event, the reading for a notice; 0 when
	// this event did not change it.
	CarrierNs int64
	// Bonds are the bonds the change touches (the link's bond, the bond
	// it left, or the link itself), each with its slaves as now.
	Bonds []BondMembers
}

// BondMembers is a bond and its slaves, as the link table has them.
type BondMembers struct {
	Index int
	// Name is "" when the bond is gone (or not seen yet).
	Name string
	// Slaves are in ifindex order.
	Slaves []Member
}

// Member is one bond slave; its carrier comes in its own LinkEvent.
type Member struct {
	Index int
	Name  string
}

// Startup is the link table after the start-up resync, split by the
// monitored set, in ifindex order.
type Startup struct {
	Monitored []registry.Link
	// Unmonitored are the links outside the set, whose routes an earlier
	// run may have left withdrawn.
	Unmonitored []registry.Link
}

// Handler receives, in order and from the loop's goroutine, what the loop
// learns about the links. Its functions must not block.
type Handler struct {
	// Carrier gets each carrier change, of monitored links and others
	// (Event.Monitored).
	Carrier func(ctx context.Context, ev Event)
	// Link, if set, gets a monitored link's first sight (Added, with its
	// carrier) and its removal (Removed).
	Link func(ctx context.Context, c LinkEvent)
	// Bond, if set, gets each change of a bond or bond slave, monitored
	// or not, once ordered; for a carrier change, before Carrier: the
	// bond switch is the one a millisecond matters to.
	Bond func(ctx context.Context, ev LinkEvent)
	// Ready, if set, is called once, after the start-up resync: the
	// programs are attached and every monitored link has been reported.
	// It gets the link table split by the monitored set.
	Ready func(ctx context.Context, s Startup)
	// Heartbeat, if set, is called every Config.Heartbeat: a loop that
	// stops calling it is stuck.
	Heartbeat func(ctx context.Context)
	// Reload, if set, gets each Reload that asks for it, after the links
	// its new monitored set released, with every bond as it stands, so
	// that what probes bonds takes their settings again.
	Reload func(ctx context.Context, bonds []BondMembers)
}
