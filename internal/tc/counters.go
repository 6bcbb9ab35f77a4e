package tc

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/linkbeat/linkbeat/internal/rtnl"
)

// counterPrio and counterHandle are the one slot of each clsact hook that
// the counters' filter occupies; a restart replaces the filter there.
const counterPrio = 1

var counterHandle = netlink.MakeHandle(0, 1)

// AttachCounters puts the counters' filter (FilterPrefix + direction) in
// its slot of each clsact hook, replacing the one an earlier run left
// there in one step.
func AttachCounters(ifindex int, ingress, egress *ebpf.Program) error {
	if err := addClsact(ifindex); err != nil {
		return fmt.Errorf("add clsact qdisc: %w", err)
	}
	l, err := netlink.LinkByIndex(ifindex)
	if err != nil {
		return err
	}
	for i, d := range Directions {
		prog := []*ebpf.Program{ingress, egress}[i]
		name := FilterPrefix + d.Name
		filters, err := FilterList(l, d.Parent)
		if err != nil {
			return fmt.Errorf("list %s filters: %w", d.Name, err)
		}
		for _, f := range filters {
			a := f.Attrs()
			if a.Priority != counterPrio || a.Handle != counterHandle {
				continue
			}
			if bf, ok := f.(*netlink.BpfFilter); !ok || bf.Name != name {
				return fmt.Errorf("the %s hook's priority %d, handle %x is taken by another filter (%s)", d.Name, counterPrio, counterHandle, f.Type())
			}
		}
		filter := &netlink.BpfFilter{
			FilterAttrs: netlink.FilterAttrs{
				LinkIndex: ifindex, Parent: d.Parent, Handle: counterHandle,
				Protocol: unix.ETH_P_ALL, Priority: counterPrio,
			},
			Fd: prog.FD(), Name: name, DirectAction: true,
		}
		if err := netlink.FilterReplace(filter); err != nil {
			return fmt.Errorf("add %s filter: %w", name, err)
		}
	}
	return nil
}

// RemoveFilters deletes the cls_bpf filters owns accepts from both clsact
// hooks of an interface.
func RemoveFilters(ifindex int, owns func(*netlink.BpfFilter) bool) error {
	l, err := netlink.LinkByIndex(ifindex)
	if err != nil {
		return err
	}
	return RemoveLinkFilters(l, owns)
}

// RemoveLinkFilters is RemoveFilters for a link already looked up.
func RemoveLinkFilters(l netlink.Link, owns func(*netlink.BpfFilter) bool) error {
	var errs []error
	for _, d := range Directions {
		filters, err := FilterList(l, d.Parent)
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

// RemoveFiltersExcept removes owned filters from every interface of the
// network namespace but those keep names.
func RemoveFiltersExcept(keep func(ifindex int) bool, owns func(*netlink.BpfFilter) bool) error {
	links, err := rtnl.Retry("list links", netlink.LinkList)
	if err != nil {
		return fmt.Errorf("list links: %w", err)
	}
	var errs []error
	for _, l := range links {
		if keep(l.Attrs().Index) {
			continue
		}
		errs = append(errs, RemoveLinkFilters(l, owns))
	}
	return errors.Join(errs...)
}

// FilterList dumps the filters of one hook, again when the kernel
// interrupts the dump (rtnl.Retry).
func FilterList(l netlink.Link, parent uint32) ([]netlink.Filter, error) {
	return rtnl.Retry("list filters of "+l.Attrs().Name, func() ([]netlink.Filter, error) {
		return netlink.FilterList(l, parent)
	})
}
