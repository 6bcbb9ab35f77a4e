package traffic

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/linkbeat/linkbeat/internal/rtnl"
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

// filterPrio and filterHandle are the one slot of each clsact hook that
// linkbeat's filter occupies; a restart replaces the filter there.
const filterPrio = 1

var filterHandle = netlink.MakeHandle(0, 1)

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

var directions = []struct {
	name   string
	tcx    ebpf.AttachType
	parent uint32
}{
	{"ingress", ebpf.AttachTCXIngress, netlink.HANDLE_MIN_INGRESS},
	{"egress", ebpf.AttachTCXEgress, netlink.HANDLE_MIN_EGRESS},
}

func (t *Traffic) attach(ifindex int, ifname string) (*attachment, error) {
	a := &attachment{ifindex: ifindex, ifname: ifname}
	progs := []*ebpf.Program{t.objs.TcIngress, t.objs.TcEgress}
	if t.mech == TCX {
		// A crashed clsact run may have left filters behind.
		if err := removeFilters(ifindex, t.ownsFilter); err != nil {
			return nil, fmt.Errorf("remove old clsact filters on %s: %w", ifname, err)
		}
		for i, d := range directions {
			l, err := t.tcxLink(ifindex, ifname, d.name, d.tcx, progs[i])
			if err != nil {
				t.release(a, false)
				return nil, err
			}
			a.links = append(a.links, l)
		}
		return a, nil
	}
	// An earlier tcx run may have left links pinned for this interface.
	for _, d := range directions {
		if l := t.takeAdopted(tcxPinName(d.name, ifindex)); l != nil {
			l.Unpin()
			l.Close()
		}
	}
	if err := attachClsact(ifindex, progs[0], progs[1]); err != nil {
		removeFilters(ifindex, t.ownsFilter)
		return nil, fmt.Errorf("attach clsact filters to %s: %w", ifname, err)
	}
	a.clsact = true
	return a, nil
}

// tcxLink attaches prog to one hook of an interface: it updates the link an
// earlier run pinned there, so the program is swapped in one step and
// nothing is attached twice, or attaches (and pins) a new one.
func (t *Traffic) tcxLink(ifindex int, ifname, dir string, at ebpf.AttachType, prog *ebpf.Program) (link.Link, error) {
	name := tcxPinName(dir, ifindex)
	if old := t.takeAdopted(name); old != nil {
		if err := tcxLinkOn(old, ifindex, at); err != nil {
			t.log.Info("replacing a pinned tcx link that no longer fits", "pin", name, "reason", err)
		} else if err := old.Update(prog); err != nil {
			t.log.Warn("cannot update a pinned tcx link in place: replacing it", "pin", name, "err", err)
		} else {
			return old, nil
		}
		old.Unpin()
		old.Close()
	}
	l, err := link.AttachTCX(link.TCXOptions{Interface: ifindex, Program: prog, Attach: at})
	if err != nil {
		return nil, fmt.Errorf("attach tcx %s to %s: %w", dir, ifname, err)
	}
	if t.pinDir != "" {
		if err := replacePin(filepath.Join(t.pinDir, name), l.Pin); err != nil {
			l.Close()
			return nil, err
		}
	}
	return l, nil
}

// tcxLinkOn checks that a pinned link is a live tcx link on this
// interface's hook: the interface may have been re-created meanwhile. Link
// info is global and its ifindex names a device in any network namespace,
// so the kernel is also asked which links are on the hook of this
// namespace's device (the pin directory may have served a daemon in
// another namespace, whose devices reuse the same small ifindexes).
func tcxLinkOn(l link.Link, ifindex int, at ebpf.AttachType) error {
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

// release detaches one interface: its links are unpinned and closed, its
// filters removed.
func (t *Traffic) release(a *attachment, gone bool) error {
	var errs []error
	for _, l := range a.links {
		// Unpin is a no-op for a link that was never pinned.
		errs = append(errs, l.Unpin(), l.Close())
	}
	a.links = nil
	if a.clsact && !gone {
		if err := removeFilters(a.ifindex, t.ownsFilter); err != nil && !errors.Is(err, unix.ENODEV) {
			errs = append(errs, fmt.Errorf("remove clsact filters from %s: %w", a.ifname, err))
		}
	}
	return errors.Join(errs...)
}

// closeFDs lets go of the links without detaching pinned ones.
func (a *attachment) closeFDs() error {
	var errs []error
	for _, l := range a.links {
		errs = append(errs, l.Close())
	}
	a.links = nil
	return errors.Join(errs...)
}

// ownsFilter tells linkbeat's filters from anyone else's: its name, and
// with a pin directory one of linkbeat's pinned programs, so that another
// linkbeat's filters (another pin directory) are left alone too.
func (t *Traffic) ownsFilter(f *netlink.BpfFilter) bool {
	if !strings.HasPrefix(f.Name, filterPrefix) {
		return false
	}
	return t.pinDir == "" || t.ourProgs[f.Id]
}

// attachClsact puts linkbeat's filter in its slot of each clsact hook,
// replacing the one an earlier run left there in one step.
func attachClsact(ifindex int, ingress, egress *ebpf.Program) error {
	qdisc := &netlink.GenericQdisc{
		QdiscAttrs: netlink.QdiscAttrs{LinkIndex: ifindex, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT},
		QdiscType:  "clsact",
	}
	// Another tool may own the clsact qdisc already: share it.
	if err := netlink.QdiscAdd(qdisc); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add clsact qdisc: %w", err)
	}
	l, err := netlink.LinkByIndex(ifindex)
	if err != nil {
		return err
	}
	for i, d := range directions {
		prog := []*ebpf.Program{ingress, egress}[i]
		name := filterPrefix + d.name
		filters, err := filterList(l, d.parent)
		if err != nil {
			return fmt.Errorf("list %s filters: %w", d.name, err)
		}
		for _, f := range filters {
			a := f.Attrs()
			if a.Priority != filterPrio || a.Handle != filterHandle {
				continue
			}
			if bf, ok := f.(*netlink.BpfFilter); !ok || bf.Name != name {
				return fmt.Errorf("the %s hook's priority %d, handle %x is taken by another filter (%s)", d.name, filterPrio, filterHandle, f.Type())
			}
		}
		filter := &netlink.BpfFilter{
			FilterAttrs: netlink.FilterAttrs{
				LinkIndex: ifindex, Parent: d.parent, Handle: filterHandle,
				Protocol: unix.ETH_P_ALL, Priority: filterPrio,
			},
			Fd: prog.FD(), Name: name, DirectAction: true,
		}
		if err := netlink.FilterReplace(filter); err != nil {
			return fmt.Errorf("add %s filter: %w", name, err)
		}
	}
	return nil
}

// removeFilters deletes the cls_bpf filters owns accepts from both clsact
// hooks of an interface.
func removeFilters(ifindex int, owns func(*netlink.BpfFilter) bool) error {
	l, err := netlink.LinkByIndex(ifindex)
	if err != nil {
		return err
	}
	return removeLinkFilters(l, owns)
}

func removeLinkFilters(l netlink.Link, owns func(*netlink.BpfFilter) bool) error {
	var errs []error
	for _, d := range directions {
		filters, err := filterList(l, d.parent)
		if err != nil {
			// No clsact qdisc: nothing of ours there.
			if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
				continue
			}
			errs = append(errs, err)
			continue
		}
		for _, f := range filters {
			if bf, ok := f.(*netlink.BpfFilter); ok && owns(bf) {
				if err := netlink.FilterDel(bf); err != nil && !errors.Is(err, unix.ENOENT) {
					errs = append(errs, err)
				}
			}
		}
	}
	return errors.Join(errs...)
}

// removeFiltersExcept removes owned filters from every interface of the
// network namespace but the attached ones.
func removeFiltersExcept(attached map[int]*attachment, owns func(*netlink.BpfFilter) bool) error {
	links, err := rtnl.Retry("list links", netlink.LinkList)
	if err != nil {
		return fmt.Errorf("list links: %w", err)
	}
	var errs []error
	for _, l := range links {
		if _, ok := attached[l.Attrs().Index]; ok {
			continue
		}
		errs = append(errs, removeLinkFilters(l, owns))
	}
	return errors.Join(errs...)
}

// filterList dumps the filters of one hook, again when the kernel
// interrupts the dump (rtnl.Retry).
func filterList(l netlink.Link, parent uint32) ([]netlink.Filter, error) {
	return rtnl.Retry("list filters of "+l.Attrs().Name, func() ([]netlink.Filter, error) {
		return netlink.FilterList(l, parent)
	})
}
