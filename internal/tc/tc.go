// Package tc attaches linkbeat's TC programs to interfaces, with tcx
// (Linux 6.6 and later) or, on older kernels, with cls_bpf filters under a
// clsact qdisc. The traffic counters, the path monitor and the bond fast
// path all attach through it, so that there is one set of filter names,
// priorities and clean-up rules.
package tc

import (
	"errors"
	"fmt"

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

// FilterPrefix names the counters' cls_bpf filters ("linkbeat_ingress",
// "linkbeat_egress"), so leftovers of a crashed run, or of a run on an
// older kernel, can be found and removed. Hooks must use other names.
const FilterPrefix = "linkbeat_"

// Direction is one of the two clsact hooks of an interface.
type Direction struct {
	Name   string // "ingress" or "egress"
	TCX    ebpf.AttachType
	Parent uint32
}

// Directions are the hooks in the order linkbeat attaches them.
var Directions = [2]Direction{
	{"ingress", ebpf.AttachTCXIngress, netlink.HANDLE_MIN_INGRESS},
	{"egress", ebpf.AttachTCXEgress, netlink.HANDLE_MIN_EGRESS},
}

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

// CheckTCXLink checks that a pinned link is a live tcx link on this
// interface's hook: the interface may have been re-created meanwhile. Link
// info is global and its ifindex names a device in any network namespace,
// so the kernel is also asked which links are on the hook of this
// namespace's device (the pin directory may have served a daemon in
// another namespace, whose devices reuse the same small ifindexes).
func CheckTCXLink(l link.Link, ifindex int, at ebpf.AttachType) error {
	info, err := l.Info()
	if err != nil {
		return err
	}
	tcx := info.TCX()
	switch {
	case info.Type != link.TCXType || tcx == nil:
		return fmt.Errorf("not a tcx link (type %d)", info.Type)
	case int(tcx.Ifindex) != ifindex:
		return fmt.Errorf("attached to ifindex %d", tcx.Ifindex)
	case uint32(tcx.AttachType) != uint32(at):
		return fmt.Errorf("attached to hook %d, not %s", tcx.AttachType, at)
	}
	res, err := link.QueryPrograms(link.QueryOptions{Target: ifindex, Attach: at})
	if err != nil {
		return fmt.Errorf("list the tcx links of ifindex %d: %w", ifindex, err)
	}
	for _, p := range res.Programs {
		if id, ok := p.LinkID(); ok && id == info.ID {
			return nil
		}
	}
	return fmt.Errorf("link %d is on ifindex %d of another network namespace", info.ID, ifindex)
}

// addClsact adds the clsact qdisc of an interface, or shares the one that
// another tool, or another part of linkbeat, added already.
func addClsact(ifindex int) error {
	qdisc := &netlink.GenericQdisc{
		QdiscAttrs: netlink.QdiscAttrs{LinkIndex: ifindex, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT},
		QdiscType:  "clsact",
	}
	if err := netlink.QdiscAdd(qdisc); err != nil && !errors.Is(err, unix.EEXIST) {
		return err
	}
	return nil
}
