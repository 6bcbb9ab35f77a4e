// Package traffic counts per-interface packets and bytes with TC programs
// (tcx where the kernel has it, clsact + cls_bpf before 6.6), and transmit
// errors and timeouts with the net tracepoints, into one per-CPU BPF map.
package traffic

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"

	"github.com/linkbeat/linkbeat/gen"
)

// Options configures Open.
type Options struct {
	// PinDir pins the counter map there and reuses an existing pin, so
	// counters survive a restart. Empty: no pinning.
	PinDir string
	// Mechanism forces "tcx" or "clsact"; empty probes.
	Mechanism Mechanism
	// KernelTypes overrides the kernel's BTF.
	KernelTypes *btf.Spec
}

// Counters is one interface's traffic, summed over CPUs.
type Counters struct {
	RxPackets, RxBytes, RxLastNS uint64
	TxPackets, TxBytes, TxLastNS uint64
	TxErrors, TxTimeouts         uint64
}

// Traffic owns the loaded programs, the counter map and the attachments.
type Traffic struct {
	objs       gen.TrafficObjects
	mech       Mechanism
	tracepoint []link.Link
	tpErr      error
	attached   map[int]*attachment
}

// Open loads the programs, attaches the tracepoints and picks the TC
// mechanism. A refused tracepoint is reported by TracepointErr, not fatal:
// traffic counting works without it.
func Open(opts Options) (*Traffic, error) {
	spec, err := gen.LoadTraffic()
	if err != nil {
		return nil, fmt.Errorf("load embedded traffic object: %w", err)
	}
	copts := &ebpf.CollectionOptions{Programs: ebpf.ProgramOptions{KernelTypes: opts.KernelTypes}}
	if opts.PinDir != "" {
		spec.Maps[gen.TrafficMapIfStats].Pinning = ebpf.PinByName
		copts.Maps.PinPath = opts.PinDir
	}
	t := &Traffic{attached: make(map[int]*attachment)}
	// The tracepoint programs need BTF for CO-RE; TC programs do not. Load
	// them apart so a kernel without BTF still counts traffic.
	var tc struct {
		Ingress *ebpf.Program `ebpf:"tc_ingress"`
		Egress  *ebpf.Program `ebpf:"tc_egress"`
		Stats   *ebpf.Map     `ebpf:"if_stats"`
	}
	if err := spec.LoadAndAssign(&tc, copts); err != nil {
		return nil, fmt.Errorf("load TC programs: %w", err)
	}
	t.objs.TcIngress, t.objs.TcEgress, t.objs.IfStats = tc.Ingress, tc.Egress, tc.Stats

	t.mech = opts.Mechanism
	if t.mech == "" {
		t.mech = ProbeMechanism(t.objs.TcIngress)
	}
	t.tpErr = t.attachTracepoints(spec, copts)
	return t, nil
}

func (t *Traffic) attachTracepoints(spec *ebpf.CollectionSpec, copts *ebpf.CollectionOptions) error {
	// Share the counter map loaded with the TC programs.
	copts.MapReplacements = map[string]*ebpf.Map{gen.TrafficMapIfStats: t.objs.IfStats}
	var tp struct {
		Errors   *ebpf.Program `ebpf:"xmit_errors"`
		Timeouts *ebpf.Program `ebpf:"xmit_timeouts"`
	}
	if err := spec.LoadAndAssign(&tp, copts); err != nil {
		return fmt.Errorf("load tracepoint programs: %w", err)
	}
	t.objs.XmitErrors, t.objs.XmitTimeouts = tp.Errors, tp.Timeouts
	for name, prog := range map[string]*ebpf.Program{"net_dev_xmit": tp.Errors, "net_dev_xmit_timeout": tp.Timeouts} {
		l, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: name, Program: prog})
		if err != nil {
			return fmt.Errorf("attach raw tracepoint %s: %w", name, err)
		}
		t.tracepoint = append(t.tracepoint, l)
	}
	return nil
}

// Mechanism is the live TC attachment path.
func (t *Traffic) Mechanism() Mechanism { return t.mech }

// TracepointErr says why error counting is off, or nil when it is live.
func (t *Traffic) TracepointErr() error { return t.tpErr }

// Map is the counter map, for readers such as the metrics collector.
func (t *Traffic) Map() *ebpf.Map { return t.objs.IfStats }

// Attach starts counting on an interface. Counters already in a pinned map
// (from a previous run) are kept.
func (t *Traffic) Attach(ifindex int, ifname string) error {
	if _, ok := t.attached[ifindex]; ok {
		return nil
	}
	zero := make([]gen.TrafficIfCounters, ebpf.MustPossibleCPU())
	err := t.objs.IfStats.Update(uint32(ifindex), zero, ebpf.UpdateNoExist)
	if err != nil && !errors.Is(err, ebpf.ErrKeyExist) {
		return fmt.Errorf("add %s to the counter map: %w", ifname, err)
	}
	a, err := attach(t.mech, ifindex, ifname, t.objs.TcIngress, t.objs.TcEgress)
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
	if err := a.close(gone); err != nil {
		errs = append(errs, err)
	}
	if err := t.objs.IfStats.Delete(uint32(ifindex)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		errs = append(errs, fmt.Errorf("remove ifindex %d from the counter map: %w", ifindex, err))
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

// Close detaches everything. The pinned map, if any, stays.
func (t *Traffic) Close() error {
	var errs []error
	for idx := range t.attached {
		errs = append(errs, t.Detach(idx, false))
	}
	for _, l := range t.tracepoint {
		errs = append(errs, l.Close())
	}
	errs = append(errs, t.objs.Close())
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

// OpenPinned opens the counter map a running daemon pinned in dir.
func OpenPinned(dir string) (*ebpf.Map, error) {
	path := filepath.Join(dir, gen.TrafficMapIfStats)
	m, err := ebpf.LoadPinnedMap(path, &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("open pinned counter map %s (is `linkbeat run` running with this --bpffs-dir?): %w", path, err)
	}
	return m, nil
}
