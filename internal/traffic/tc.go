package traffic

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Mechanism names a TC attachment path.
type Mechanism string

const (
	TCX    Mechanism = "tcx"
	Clsact Mechanism = "clsact"
)

// filterPrefix names linkbeat's cls_bpf filters, so leftovers of a crashed
// run, or of a run on an older kernel, can be found and removed.
const filterPrefix = "linkbeat_"

// ProbeMechanism attaches prog to the loopback device with tcx for a
// moment: tcx when that works, clsact when the kernel lacks it (< 6.6).
func ProbeMechanism(prog *ebpf.Program) Mechanism {
	if err := ProbeTCX(prog); err != nil {
		return Clsact
	}
	return TCX
}

// ProbeTCX reports why tcx is not usable, or nil.
func ProbeTCX(prog *ebpf.Program) error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find loopback for the tcx probe: %w", err)
	}
	l, err := link.AttachTCX(link.TCXOptions{Interface: lo.Attrs().Index, Program: prog, Attach: ebpf.AttachTCXIngress})
	if err != nil {
		if errors.Is(err, ebpf.ErrNotSupported) {
			return fmt.Errorf("tcx needs Linux 6.6 or later: %w", err)
		}
		return err
	}
	return l.Close()
}

type attachment struct {
	ifindex int
	ifname  string
	links   []link.Link // tcx
	clsact  bool
}

func attach(mech Mechanism, ifindex int, ifname string, ingress, egress *ebpf.Program) (*attachment, error) {
	a := &attachment{ifindex: ifindex, ifname: ifname}
	if mech == TCX {
		// A crashed clsact run may have left filters behind.
		if err := removeFilters(ifindex); err != nil {
			return nil, fmt.Errorf("remove old clsact filters on %s: %w", ifname, err)
		}
		for _, p := range []struct {
			prog *ebpf.Program
			at   ebpf.AttachType
		}{{ingress, ebpf.AttachTCXIngress}, {egress, ebpf.AttachTCXEgress}} {
			l, err := link.AttachTCX(link.TCXOptions{Interface: ifindex, Program: p.prog, Attach: p.at})
			if err != nil {
				a.close(false)
				return nil, fmt.Errorf("attach tcx to %s: %w", ifname, err)
			}
			a.links = append(a.links, l)
		}
		return a, nil
	}
	if err := attachClsact(ifindex, ingress, egress); err != nil {
		removeFilters(ifindex)
		return nil, fmt.Errorf("attach clsact filters to %s: %w", ifname, err)
	}
	a.clsact = true
	return a, nil
}

func (a *attachment) close(gone bool) error {
	var errs []error
	for _, l := range a.links {
		errs = append(errs, l.Close())
	}
	if a.clsact && !gone {
		if err := removeFilters(a.ifindex); err != nil && !errors.Is(err, unix.ENODEV) {
			errs = append(errs, fmt.Errorf("remove clsact filters from %s: %w", a.ifname, err))
		}
	}
	return errors.Join(errs...)
}

func attachClsact(ifindex int, ingress, egress *ebpf.Program) error {
	qdisc := &netlink.GenericQdisc{
		QdiscAttrs: netlink.QdiscAttrs{LinkIndex: ifindex, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT},
		QdiscType:  "clsact",
	}
	// Another tool may own the clsact qdisc already: share it.
	if err := netlink.QdiscAdd(qdisc); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add clsact qdisc: %w", err)
	}
	// Replace our own filters from a previous run instead of stacking.
	if err := removeFilters(ifindex); err != nil {
		return err
	}
	for _, f := range []struct {
		parent uint32
		prog   *ebpf.Program
		name   string
	}{{netlink.HANDLE_MIN_INGRESS, ingress, filterPrefix + "ingress"}, {netlink.HANDLE_MIN_EGRESS, egress, filterPrefix + "egress"}} {
		filter := &netlink.BpfFilter{
			FilterAttrs: netlink.FilterAttrs{
				LinkIndex: ifindex, Parent: f.parent, Handle: netlink.MakeHandle(0, 1),
				Protocol: unix.ETH_P_ALL, Priority: 1,
			},
			Fd: f.prog.FD(), Name: f.name, DirectAction: true,
		}
		if err := netlink.FilterAdd(filter); err != nil {
			return fmt.Errorf("add %s filter: %w", f.name, err)
		}
	}
	return nil
}

// removeFilters deletes linkbeat's cls_bpf filters from both clsact hooks.
func removeFilters(ifindex int) error {
	l, err := netlink.LinkByIndex(ifindex)
	if err != nil {
		return err
	}
	var errs []error
	for _, parent := range []uint32{netlink.HANDLE_MIN_INGRESS, netlink.HANDLE_MIN_EGRESS} {
		filters, err := netlink.FilterList(l, parent)
		if err != nil {
			// No clsact qdisc: nothing of ours there.
			if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
				continue
			}
			errs = append(errs, err)
			continue
		}
		for _, f := range filters {
			if bf, ok := f.(*netlink.BpfFilter); ok && strings.HasPrefix(bf.Name, filterPrefix) {
				if err := netlink.FilterDel(bf); err != nil && !errors.Is(err, unix.ENOENT) {
					errs = append(errs, err)
				}
			}
		}
	}
	return errors.Join(errs...)
}
