// Package traffic counts per-interface packets and bytes with TC programs
// (tcx where the kernel has it, clsact + cls_bpf before 6.6), and transmit
// errors and timeouts with the net tracepoints, into one per-CPU BPF map.
//
// With a pin directory, everything lives on past the daemon: the maps, the
// programs and the attachments are pinned there, so counting goes on while
// the daemon is down, and a restarted daemon takes them over (see Open).
package traffic

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"

	"github.com/linkbeat/linkbeat/gen"
	"github.com/linkbeat/linkbeat/internal/tc"
)

// Options configures Open.
type Options struct {
	// PinDir pins the maps, the programs and the attachments there and
	// takes over what an earlier run pinned, so counters and attachments
	// survive a restart. Empty: nothing is pinned, and Close detaches.
	PinDir string
	// Mechanism forces "tcx" or "clsact"; empty probes.
	Mechanism Mechanism
	// KernelTypes overrides the kernel's BTF.
	KernelTypes *btf.Spec
	// NoKernelBTF: the probe found no usable BTF, so the tracepoint
	// programs (CO-RE) are not loaded, even where the loader would find
	// /sys/kernel/btf/vmlinux behind a --kernel-btf that failed.
	NoKernelBTF bool
	// Log gets what happened to an earlier run's pins (nil: discarded).
	Log *slog.Logger
}

// Counters is one interface's traffic, summed over CPUs.
type Counters struct {
	RxPackets, RxBytes, RxLastNS uint64
	TxPackets, TxBytes, TxLastNS uint64
	TxErrors, TxTimeouts         uint64
}

// Traffic owns the loaded programs, the maps and the attachments. It is
// not safe for concurrent use, except Map and LinkStateMap, whose maps
// may be read from any goroutine.
type Traffic struct {
	log        *slog.Logger
	pinDir     string
	objs       gen.TrafficObjects
	mech       Mechanism
	tracepoint []link.Link
	tpErr      error
	attached   map[int]*attachment
	// adopted are the tcx links an earlier run pinned, by pin name, until
	// Attach takes them over or Prune detaches them.
	adopted map[string]link.Link
	// ourProgs are the IDs of linkbeat's TC programs, this run's and the
	// ones pinned before: the clsact filters using one of them are ours.
	ourProgs map[int]bool
	replaced map[string]string
}

// Open loads the programs, attaches the tracepoints and picks the TC
// mechanism. A refused tracepoint is reported by TracepointErr, not fatal:
// traffic counting works without it.
//
// With a pin directory, a map pinned by an earlier run is reused when its
// layout (type, sizes and the BTF of key and value) is what this build
// expects, and replaced otherwise (Replaced says which, and the log says
// why). The programs' pins are replaced by this build's; the tcx links
// pinned before are kept for Attach to update in place.
func Open(opts Options) (*Traffic, error) {
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	spec, err := gen.LoadTraffic()
	if err != nil {
		return nil, fmt.Errorf("load embedded traffic object: %w", err)
	}
	t := &Traffic{log: log, pinDir: opts.PinDir, attached: make(map[int]*attachment),
		adopted: make(map[string]link.Link), ourProgs: make(map[int]bool), replaced: map[string]string{}}
	copts := &ebpf.CollectionOptions{Programs: ebpf.ProgramOptions{KernelTypes: opts.KernelTypes}}
	if opts.PinDir != "" {
		if err := t.checkPins(spec, copts); err != nil {
			return nil, err
		}
	}
	if err := t.loadTC(spec, copts); err != nil {
		return nil, err
	}
	if opts.PinDir != "" {
		if err := t.takeOverPins(); err != nil {
			t.objs.Close()
			return nil, err
		}
	}

	t.mech = opts.Mechanism
	if t.mech == "" {
		t.mech = ProbeMechanism(t.objs.TcIngress)
	}
	if opts.NoKernelBTF {
		t.tpErr = errors.New("no kernel BTF: the tracepoint programs need it (CO-RE)")
	} else {
		t.tpErr = t.attachTracepoints(spec, copts)
	}
	return t, nil
}

// checkPins makes the load reuse the maps pinned in the pin directory
// whose layout is this build's, replacing the others, and notes the IDs
// of the programs an earlier run pinned.
func (t *Traffic) checkPins(spec *ebpf.CollectionSpec, copts *ebpf.CollectionOptions) error {
	if err := checkBpffs(t.pinDir); err != nil {
		return err
	}
	var err error
	if t.replaced, err = checkPinnedMaps(t.pinDir, spec); err != nil {
		return err
	}
	for name, why := range t.replaced {
		t.log.Warn("pinned map has another layout than this build's: replaced it, its old contents are gone",
			"map", name, "pin", filepath.Join(t.pinDir, name), "change", why)
	}
	for _, name := range pinnedMaps {
		spec.Maps[name].Pinning = ebpf.PinByName
	}
	copts.Maps.PinPath = t.pinDir
	t.ourProgs = pinnedProgramIDs(t.pinDir, progPins())
	return nil
}

// loadTC loads the TC programs and their maps. The tracepoint programs
// need BTF for CO-RE; TC programs do not. They are loaded apart so a
// kernel without BTF still counts traffic.
func (t *Traffic) loadTC(spec *ebpf.CollectionSpec, copts *ebpf.CollectionOptions) error {
	var objs struct {
		Ingress   *ebpf.Program `ebpf:"tc_ingress"`
		Egress    *ebpf.Program `ebpf:"tc_egress"`
		Stats     *ebpf.Map     `ebpf:"if_stats"`
		LinkState *ebpf.Map     `ebpf:"link_state"`
	}
	if err := spec.LoadAndAssign(&objs, copts); err != nil {
		if errors.Is(err, ebpf.ErrMapIncompatible) {
			return fmt.Errorf("load TC programs: a pinned map in %s changed while linkbeat started: %w", t.pinDir, err)
		}
		return fmt.Errorf("load TC programs: %w", err)
	}
	t.objs.TcIngress, t.objs.TcEgress, t.objs.IfStats, t.objs.LinkState = objs.Ingress, objs.Egress, objs.Stats, objs.LinkState
	for _, p := range []*ebpf.Program{objs.Ingress, objs.Egress} {
		if info, err := p.Info(); err == nil {
			if id, ok := info.ID(); ok {
				t.ourProgs[int(id)] = true
			}
		}
	}
	return nil
}

// takeOverPins pins this build's TC programs in place of an earlier
// run's and opens the tcx links it pinned, for Attach to update in place.
func (t *Traffic) takeOverPins() error {
	if err := t.pinPrograms(map[string]*ebpf.Program{gen.TrafficProgTcIngress: t.objs.TcIngress, gen.TrafficProgTcEgress: t.objs.TcEgress}); err != nil {
		return err
	}
	return t.adoptLinks()
}

func (t *Traffic) pinPrograms(progs map[string]*ebpf.Program) error {
	for name, p := range progs {
		if err := replacePin(filepath.Join(t.pinDir, progPrefix+name), p.Pin); err != nil {
			return err
		}
	}
	return nil
}

// adoptLinks opens the tcx links an earlier run pinned.
func (t *Traffic) adoptLinks() error {
	entries, err := os.ReadDir(t.pinDir)
	if err != nil {
		return fmt.Errorf("read pin directory: %w", err)
	}
	for _, e := range entries {
		if _, _, ok := parseTCXPin(e.Name()); !ok {
			continue
		}
		path := filepath.Join(t.pinDir, e.Name())
		l, err := link.LoadPinnedLink(path, nil)
		if err != nil {
			t.log.Warn("cannot open a tcx link pinned by an earlier run: removing the pin", "pin", path, "err", err)
			os.Remove(path)
			continue
		}
		t.adopted[e.Name()] = l
	}
	return nil
}

// takeAdopted hands over an earlier run's pinned link, or nil.
func (t *Traffic) takeAdopted(name string) link.Link {
	l, ok := t.adopted[name]
	if !ok {
		return nil
	}
	delete(t.adopted, name)
	return l
}

func (t *Traffic) attachTracepoints(spec *ebpf.CollectionSpec, copts *ebpf.CollectionOptions) error {
	// Raw tracepoint links cannot be updated in place: an earlier run's go
	// first, so that no error is counted twice (a few microseconds in which
	// none is counted instead).
	if t.pinDir != "" {
		for _, tp := range tracepoints {
			path := filepath.Join(t.pinDir, rawTPPrefix+tp.name)
			if l, err := link.LoadPinnedLink(path, nil); err == nil {
				l.Unpin()
				l.Close()
			} else if !errors.Is(err, fs.ErrNotExist) {
				t.log.Warn("cannot open a tracepoint link pinned by an earlier run: removing the pin", "pin", path, "err", err)
				os.Remove(path)
			}
		}
	}
	// Share the maps loaded with the TC programs.
	copts.MapReplacements = map[string]*ebpf.Map{gen.TrafficMapIfStats: t.objs.IfStats, gen.TrafficMapLinkState: t.objs.LinkState}
	var tp struct {
		Errors   *ebpf.Program `ebpf:"xmit_errors"`
		Timeouts *ebpf.Program `ebpf:"xmit_timeouts"`
	}
	if err := spec.LoadAndAssign(&tp, copts); err != nil {
		return fmt.Errorf("load tracepoint programs: %w", err)
	}
	t.objs.XmitErrors, t.objs.XmitTimeouts = tp.Errors, tp.Timeouts
	progs := map[string]*ebpf.Program{gen.TrafficProgXmitErrors: tp.Errors, gen.TrafficProgXmitTimeouts: tp.Timeouts}
	if t.pinDir != "" {
		if err := t.pinPrograms(progs); err != nil {
			return err
		}
	}
	for _, x := range tracepoints {
		l, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: x.name, Program: progs[x.prog]})
		if err != nil {
			return fmt.Errorf("attach raw tracepoint %s: %w", x.name, err)
		}
		t.tracepoint = append(t.tracepoint, l)
		if t.pinDir != "" {
			if err := replacePin(filepath.Join(t.pinDir, rawTPPrefix+x.name), l.Pin); err != nil {
				return err
			}
		}
	}
	return nil
}

// Mechanism is the live TC attachment path.
func (t *Traffic) Mechanism() Mechanism { return t.mech }

// TracepointErr says why error counting is off, or nil when it is live.
func (t *Traffic) TracepointErr() error { return t.tpErr }

// Map is the counter map, for readers such as the metrics collector.
func (t *Traffic) Map() *ebpf.Map { return t.objs.IfStats }

// LinkStateMap is the map of recorded carrier states.
func (t *Traffic) LinkStateMap() *ebpf.Map { return t.objs.LinkState }

// Replaced names the pinned maps Open replaced because their layout was
// not this build's, each with the difference found.
func (t *Traffic) Replaced() map[string]string { return t.replaced }

// Attach starts counting on an interface. Counters already in a pinned map
// (from a previous run) are kept, and so are its attachments: a pinned tcx
// link is updated in place to this run's program, a clsact filter is
// replaced in place.
func (t *Traffic) Attach(ifindex int, ifname string) error {
	if _, ok := t.attached[ifindex]; ok {
		return nil
	}
	zero := make([]gen.TrafficIfCounters, ebpf.MustPossibleCPU())
	err := t.objs.IfStats.Update(uint32(ifindex), zero, ebpf.UpdateNoExist)
	if err != nil && !errors.Is(err, ebpf.ErrKeyExist) {
		return fmt.Errorf("add %s to the counter map: %w", ifname, err)
	}
	a, err := t.attach(ifindex, ifname)
	if err != nil {
		return err
	}
	t.attached[ifindex] = a
	return nil
}

// Detach stops counting on an interface and forgets its counters. gone
// says the interface no longer exists, so there is nothing to remove from
// it: the kernel dropped its TC programs with it.
func (t *Traffic) Detach(ifindex int, gone bool) error {
	a, ok := t.attached[ifindex]
	if !ok {
		return nil
	}
	delete(t.attached, ifindex)
	var errs []error
	if err := t.release(a, gone); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, t.forget(ifindex))
	return errors.Join(errs...)
}

func (t *Traffic) forget(ifindex int) error {
	var errs []error
	for _, m := range []*ebpf.Map{t.objs.IfStats, t.objs.LinkState} {
		if err := m.Delete(uint32(ifindex)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, fmt.Errorf("remove ifindex %d from %s: %w", ifindex, m, err))
		}
	}
	return errors.Join(errs...)
}

// Attached lists the interfaces being counted.
func (t *Traffic) Attached() []int {
	out := make([]int, 0, len(t.attached))
	for i := range t.attached {
		out = append(out, i)
	}
	return out
}

// Prune removes what an earlier run left for interfaces this run does not
// count: their pinned tcx links, their clsact filters, and their entries
// in the maps. The daemon calls it once it has attached to every
// monitored interface.
func (t *Traffic) Prune() error {
	var errs []error
	for name, l := range t.adopted {
		delete(t.adopted, name)
		_, idx, _ := parseTCXPin(name)
		t.log.Info("detaching an earlier run's tcx link from an interface not monitored now", "pin", name, "ifindex", idx)
		errs = append(errs, l.Unpin(), l.Close())
	}
	if t.pinDir != "" {
		errs = append(errs, tc.RemoveFiltersExcept(func(ifindex int) bool { _, ok := t.attached[ifindex]; return ok }, t.ownsFilter))
	}
	for _, m := range []*ebpf.Map{t.objs.IfStats, t.objs.LinkState} {
		keys, err := mapKeys(m)
		if err != nil {
			errs = append(errs, err)
		}
		for _, k := range keys {
			if _, ok := t.attached[int(k)]; ok {
				continue
			}
			if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// mapKeys lists the ifindex keys of a map.
func mapKeys(m *ebpf.Map) ([]uint32, error) {
	var (
		keys []uint32
		next uint32
		prev any // nil: the first key
	)
	for {
		err := m.NextKey(prev, &next)
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return keys, nil
		}
		if err != nil {
			return keys, fmt.Errorf("list keys of %s: %w", m, err)
		}
		keys = append(keys, next)
		prev = next
	}
}

// Close lets go of everything this process holds. With a pin directory
// the attachments stay, held by their pins, and count on; without one they
// are detached.
func (t *Traffic) Close() error {
	var errs []error
	for idx, a := range t.attached {
		delete(t.attached, idx)
		if t.pinDir != "" {
			errs = append(errs, a.closeFDs())
		} else {
			errs = append(errs, t.release(a, false))
		}
	}
	for name, l := range t.adopted {
		delete(t.adopted, name)
		errs = append(errs, l.Close())
	}
	for _, l := range t.tracepoint {
		errs = append(errs, l.Close())
	}
	t.tracepoint = nil
	errs = append(errs, t.objs.Close())
	return errors.Join(errs...)
}

// Release detaches everything, pinned or not, removes the pins of the
// links and the programs, and closes. The maps stay pinned, so the next
// run's counters continue. This is `run --release-on-exit`.
func (t *Traffic) Release() error {
	var errs []error
	for idx, a := range t.attached {
		delete(t.attached, idx)
		errs = append(errs, t.release(a, false))
	}
	for name, l := range t.adopted {
		delete(t.adopted, name)
		errs = append(errs, l.Unpin(), l.Close())
	}
	for _, l := range t.tracepoint {
		errs = append(errs, l.Unpin(), l.Close())
	}
	t.tracepoint = nil
	if t.pinDir != "" {
		for _, p := range pinnedProgs {
			if err := os.Remove(filepath.Join(t.pinDir, progPrefix+p)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	errs = append(errs, t.Close())
	return errors.Join(errs...)
}

// ReadAll sums every entry of a counter map over CPUs.
func ReadAll(m *ebpf.Map) (map[int]Counters, error) {
	out := make(map[int]Counters)
	var (
		key    uint32
		percpu []gen.TrafficIfCounters
	)
	it := m.Iterate()
	for it.Next(&key, &percpu) {
		out[int(key)] = Sum(percpu)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read counter map: %w", err)
	}
	return out, nil
}

// Sum folds per-CPU slots: counts add up, last-seen times take the latest.
func Sum(percpu []gen.TrafficIfCounters) Counters {
	var c Counters
	for _, p := range percpu {
		c.RxPackets += p.RxPackets
		c.RxBytes += p.RxBytes
		c.RxLastNS = max(c.RxLastNS, p.RxLastNs)
		c.TxPackets += p.TxPackets
		c.TxBytes += p.TxBytes
		c.TxLastNS = max(c.TxLastNS, p.TxLastNs)
		c.TxErrors += p.TxErrors
		c.TxTimeouts += p.TxTimeouts
	}
	return c
}

// OpenPinned opens the counter map a daemon pinned in dir.
func OpenPinned(dir string) (*ebpf.Map, error) {
	return OpenPinnedMap(dir, MapCounters)
}

// OpenPinnedMap opens one of linkbeat's pinned maps read-only.
func OpenPinnedMap(dir, name string) (*ebpf.Map, error) {
	path := filepath.Join(dir, name)
	m, err := ebpf.LoadPinnedMap(path, &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("open pinned map %s (has `linkbeat run` run with this --bpffs-dir?): %w", path, err)
	}
	return m, nil
}
