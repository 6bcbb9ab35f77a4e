package pathmon

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/linkbeat/linkbeat/gen"
	"github.com/linkbeat/linkbeat/internal/tc"
	"github.com/linkbeat/linkbeat/internal/traffic"
)

// The TC hook on every probed slave. Under clsact it is a cls_bpf filter
// for ARP frames only, after the counters' filter (priority 1).
const (
	hookName     = "linkbeat-arp"
	hookPriority = 2
)

// PinName is the reply counter map's pin under the pin directory.
const PinName = gen.ArpMapArpReplies

// The NA counters (bpf/ns.c): their own hook, after the ARP one, for IPv6
// frames only under clsact, and their own pinned map.
const (
	nsHookName     = "linkbeat-ns"
	nsHookPriority = 3
	// NSPinName is the NA counter map's pin under the pin directory.
	NSPinName = gen.NsMapNsReplies
)

// kernel is the monitor's boundary with the kernel. macInput and open do
// netlink work on the calling goroutine; a port's probe and replies use
// only file descriptors.
type kernel interface {
	mechanism() tc.Mechanism
	// macInput describes a slave and its bond for chooseMAC.
	macInput(bondIndex, slaveIndex int) (macInput, error)
	// open starts probing through one slave.
	open(p portSpec) (port, error)
	close() error
}

type portSpec struct {
	Ifindex int
	Ifname  string
	MAC     net.HardwareAddr
	// Filter: add MAC to the slave's unicast filter.
	Filter bool
	// Targets: an IPv4 one gets ARP probes, an IPv6 one neighbour
	// solicitations.
	Targets []netip.Addr
}

// port is one probed slave: its filter entry, its packet socket, its TC
// program and its counters.
type port interface {
	// probe sends one probe to every target.
	probe() error
	// replies reads the counters, one per target in portSpec order.
	replies() ([]TargetReplies, error)
	// close undoes open. gone: the interface no longer exists.
	close(gone bool) error
}

type linuxKernel struct {
	prog *ebpf.Program
	m    *ebpf.Map
	// nsProg and nsM count NAs (bpf/ns.c).
	nsProg *ebpf.Program
	nsM    *ebpf.Map
	mech   tc.Mechanism
	// progPins are where the programs are pinned while they may be
	// attached (none without a pin directory).
	progPins []string
}

func openKernel(opts Options) (*linuxKernel, error) {
	spec, err := gen.LoadArp()
	if err != nil {
		return nil, fmt.Errorf("load embedded ARP object: %w", err)
	}
	copts := &ebpf.CollectionOptions{}
	if opts.PinDir != "" {
		if err := os.MkdirAll(opts.PinDir, 0o700); err != nil {
			return nil, fmt.Errorf("create pin directory: %w", err)
		}
		spec.Maps[gen.ArpMapArpReplies].Pinning = ebpf.PinByName
		copts.Maps.PinPath = opts.PinDir
	}
	var objs gen.ArpObjects
	err = spec.LoadAndAssign(&objs, copts)
	if errors.Is(err, ebpf.ErrMapIncompatible) && opts.PinDir != "" {
		// A pin of another layout: the counters only live as long as a
		// run, so start a new map.
		if rmErr := os.Remove(filepath.Join(opts.PinDir, PinName)); rmErr == nil {
			err = spec.LoadAndAssign(&objs, copts)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("load the ARP reply counter: %w", err)
	}
	k := &linuxKernel{prog: objs.ArpIngress, m: objs.ArpReplies, mech: opts.Mechanism}
	ns, err := loadNS(opts)
	if err != nil {
		k.close()
		return nil, err
	}
	k.nsProg, k.nsM = ns.NsIngress, ns.NsReplies
	// A pinned map may hold an earlier run's entries: nothing is probed yet.
	if err := errors.Join(clearMap[gen.ArpPathKey](k.m, PinName), clearMap[gen.NsNsKey](k.nsM, NSPinName)); err != nil {
		k.close()
		return nil, err
	}
	if opts.PinDir != "" {
		for name, prog := range map[string]*ebpf.Program{traffic.ProgArp: k.prog, traffic.ProgNS: k.nsProg} {
			if err := k.pinProgram(opts.PinDir, name, prog, opts.Log); err != nil {
				k.close()
				return nil, err
			}
		}
	}
	if k.mech == "" {
		k.mech = tc.ProbeMechanism(k.prog)
	}
	return k, nil
}

// loadNS loads the NA counter, pinned as NSPinName beside the ARP one,
// the same way.
func loadNS(opts Options) (*gen.NsObjects, error) {
	spec, err := gen.LoadNs()
	if err != nil {
		return nil, fmt.Errorf("load embedded NS object: %w", err)
	}
	copts := &ebpf.CollectionOptions{}
	if opts.PinDir != "" {
		spec.Maps[gen.NsMapNsReplies].Pinning = ebpf.PinByName
		copts.Maps.PinPath = opts.PinDir
	}
	var objs gen.NsObjects
	err = spec.LoadAndAssign(&objs, copts)
	if errors.Is(err, ebpf.ErrMapIncompatible) && opts.PinDir != "" {
		if rmErr := os.Remove(filepath.Join(opts.PinDir, NSPinName)); rmErr == nil {
			err = spec.LoadAndAssign(&objs, copts)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("load the NA counter: %w", err)
	}
	return &objs, nil
}

func clearMap[K any](m *ebpf.Map, name string) error {
	var (
		key  K
		val  gen.ArpPathReplies // Next needs somewhere to put it
		keys []K
	)
	it := m.Iterate()
	for it.Next(&key, &val) {
		keys = append(keys, key)
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read %s: %w", name, err)
	}
	for _, k := range keys {
		if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("clear %s: %w", name, err)
		}
	}
	return nil
}

func (k *linuxKernel) mechanism() tc.Mechanism { return k.mech }

// pinProgram pins a program (the ARP or the NA counter) as name in place
// of an earlier run's, whose clsact filters, left where a killed daemon had
// them, go first: a probed slave gets its filter back when it is opened.
// `linkbeat cleanup` finds them by the pinned program too.
func (k *linuxKernel) pinProgram(dir, name string, prog *ebpf.Program, log *slog.Logger) error {
	path := filepath.Join(dir, name)
	if old, ok := traffic.PinnedProgramID(path); ok {
		removed, err := traffic.RemoveProgFilters(map[int]bool{old: true})
		if err != nil {
			return fmt.Errorf("remove an earlier run's %s filters: %w", name, err)
		}
		if len(removed) > 0 && log != nil {
			log.Info("removed the path probe filters an earlier run left", "program", name, "filters", removed)
		}
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove old pin %s: %w", path, err)
	}
	if err := prog.Pin(path); err != nil {
		return fmt.Errorf("pin %s: %w", path, err)
	}
	k.progPins = append(k.progPins, path)
	return nil
}

// close unloads the program and its pin: every port is closed by then,
// so no filter is left to find.
func (k *linuxKernel) close() error {
	var errs []error
	for _, pin := range k.progPins {
		if err := os.Remove(pin); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove pin %s: %w", pin, err))
		}
	}
	errs = append(errs, k.prog.Close(), k.m.Close())
	if k.nsProg != nil {
		errs = append(errs, k.nsProg.Close(), k.nsM.Close())
	}
	return errors.Join(errs...)
}

func (k *linuxKernel) macInput(bondIndex, slaveIndex int) (macInput, error) {
	l, err := netlink.LinkByIndex(slaveIndex)
	if err != nil {
		return macInput{}, fmt.Errorf("look up ifindex %d: %w", slaveIndex, err)
	}
	a := l.Attrs()
	in := macInput{Current: a.HardwareAddr, Perm: a.PermHWAddr}
	if bs, ok := a.Slave.(*netlink.BondSlave); ok && usable(bs.PermHardwareAddr) {
		in.Perm = bs.PermHardwareAddr
	}
	if a.MasterIndex == 0 {
		return in, nil
	}
	ml, err := netlink.LinkByIndex(a.MasterIndex)
	if err != nil {
		return macInput{}, fmt.Errorf("look up the master of %s: %w", a.Name, err)
	}
	if b, ok := ml.(*netlink.Bond); ok {
		in.Bond = ml.Attrs().HardwareAddr
		in.Mode, in.FailOverMAC = b.Mode.String(), b.FailOverMac.String()
	}
	return in, nil
}

type linuxPort struct {
	k      *linuxKernel
	spec   portSpec
	fd     int
	frames [][]byte
	// keys holds a gen.ArpPathKey or a gen.NsNsKey per target.
	keys   []any
	hook   *tc.HookLink
	nsHook *tc.HookLink
	// ownFilter: the filter entry is ours to remove (it was not there).
	ownFilter bool
}

func (k *linuxKernel) open(p portSpec) (_ port, err error) {
	lp := &linuxPort{k: k, spec: p, fd: -1}
	defer func() {
		if err != nil {
			lp.close(false)
		}
	}()
	if p.Filter {
		lp.ownFilter, err = addFilter(p.Ifindex, p.MAC)
		if err != nil {
			return nil, fmt.Errorf("add %s to the unicast filter of %s: %w", p.MAC, p.Ifname, err)
		}
	}
	// Protocol 0: the socket only sends; it never queues a frame.
	lp.fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open packet socket: %w", err)
	}
	if err := unix.Bind(lp.fd, &unix.SockaddrLinklayer{Ifindex: p.Ifindex}); err != nil {
		return nil, fmt.Errorf("bind packet socket to %s: %w", p.Ifname, err)
	}
	var mac [6]uint8
	copy(mac[:], p.MAC)
	var v4, v6 bool
	for _, t := range p.Targets {
		m, key, name, frame := k.m, any(nil), PinName, []byte(nil)
		if t.Is4() {
			t4 := t.As4()
			key, frame, v4 = gen.ArpPathKey{Ifindex: uint32(p.Ifindex), Target: binary.NativeEndian.Uint32(t4[:])}, probeFrame(p.MAC, t), true
		} else {
			m, name, v6 = k.nsM, NSPinName, true
			key, frame = gen.NsNsKey{Ifindex: uint32(p.Ifindex), Target: t.As16()}, nsFrame(p.MAC, t)
		}
		if err := m.Put(key, gen.ArpPathReplies{Mac: mac}); err != nil {
			return nil, fmt.Errorf("add %s/%s to %s: %w", p.Ifname, t, name, err)
		}
		lp.keys = append(lp.keys, key)
		lp.frames = append(lp.frames, frame)
	}
	if v4 {
		lp.hook, err = tc.AttachHook(k.mech, p.Ifindex, p.Ifname, tc.Hook{
			Program: k.prog, Name: hookName, Priority: hookPriority, Protocol: ethPARP,
		})
		if err != nil {
			return nil, err
		}
	}
	if v6 {
		lp.nsHook, err = tc.AttachHook(k.mech, p.Ifindex, p.Ifname, tc.Hook{
			Program: k.nsProg, Name: nsHookName, Priority: nsHookPriority, Protocol: ethPIPv6,
		})
		if err != nil {
			return nil, err
		}
	}
	return lp, nil
}

// counterMap is the map that holds key, and its pin name.
func (k *linuxKernel) counterMap(key any) (*ebpf.Map, string) {
	if _, ok := key.(gen.NsNsKey); ok {
		return k.nsM, NSPinName
	}
	return k.m, PinName
}

func (p *linuxPort) probe() error {
	var errs []error
	for i, f := range p.frames {
		to := &unix.SockaddrLinklayer{Ifindex: p.spec.Ifindex, Protocol: htons(binary.BigEndian.Uint16(f[12:14]))}
		// Never wait: a full queue loses this probe, as a dead link would.
		if err := unix.Sendto(p.fd, f, unix.MSG_DONTWAIT, to); err != nil {
			errs = append(errs, fmt.Errorf("probe %s through %s: %w", p.spec.Targets[i], p.spec.Ifname, err))
		}
	}
	return errors.Join(errs...)
}

func (p *linuxPort) replies() ([]TargetReplies, error) {
	out := make([]TargetReplies, len(p.keys))
	for i, key := range p.keys {
		var v gen.ArpPathReplies
		m, _ := p.k.counterMap(key)
		if err := m.Lookup(key, &v); err != nil {
			return nil, fmt.Errorf("read %s/%s: %w", p.spec.Ifname, p.spec.Targets[i], err)
		}
		out[i] = TargetReplies{Addr: p.spec.Targets[i], Replies: v.Replies, LastNs: int64(v.LastNs)}
	}
	return out, nil
}

func (p *linuxPort) close(gone bool) error {
	var errs []error
	if p.hook != nil {
		errs = append(errs, p.hook.Close(gone))
		p.hook = nil
	}
	if p.nsHook != nil {
		errs = append(errs, p.nsHook.Close(gone))
		p.nsHook = nil
	}
	for _, key := range p.keys {
		m, name := p.k.counterMap(key)
		if err := m.Delete(key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, fmt.Errorf("remove %s from %s: %w", p.spec.Ifname, name, err))
		}
	}
	p.keys = nil
	if p.fd >= 0 {
		errs = append(errs, unix.Close(p.fd))
		p.fd = -1
	}
	if p.ownFilter && !gone {
		if err := delFilter(p.spec.Ifindex, p.spec.MAC); err != nil {
			errs = append(errs, fmt.Errorf("remove %s from the unicast filter of %s: %w", p.spec.MAC, p.spec.Ifname, err))
		}
		p.ownFilter = false
	}
	return errors.Join(errs...)
}

// fdbEntry is `bridge fdb ADDR dev IFINDEX self permanent`: on a device
// that is no bridge port, rtnl_fdb_add hands it to the driver's
// ndo_fdb_add or to ndo_dflt_fdb_add, which puts ADDR on the device's
// unicast address list (dev_uc_add_excl). A device with a unicast filter
// (IFF_UNICAST_FLT) then accepts frames to ADDR; one without goes
// unicast-promiscuous while the list is not empty.
func fdbEntry(ifindex int, mac net.HardwareAddr) *netlink.Neigh {
	return &netlink.Neigh{LinkIndex: ifindex, Family: unix.AF_BRIDGE, State: netlink.NUD_PERMANENT, Flags: netlink.NTF_SELF, HardwareAddr: mac}
}

// addFilter adds mac to the device's unicast filter. owned is false when
// it was there already (someone else's, or a crashed run's): then it is
// left in place when probing stops.
func addFilter(ifindex int, mac net.HardwareAddr) (owned bool, err error) {
	// NLM_F_EXCL: ndo_dflt_fdb_add reports an address already listed.
	err = netlink.NeighAdd(fdbEntry(ifindex, mac))
	if errors.Is(err, unix.EEXIST) {
		return false, nil
	}
	return err == nil, err
}

func delFilter(ifindex int, mac net.HardwareAddr) error {
	err := netlink.NeighDel(fdbEntry(ifindex, mac))
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENODEV) {
		return nil
	}
	return err
}

func htons(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return binary.NativeEndian.Uint16(b[:])
}
