package traffic

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Hook is one TC program that another part of linkbeat (the ARP path
// monitor, internal/pathmon) attaches to an interface, beside the
// counters and with the same mechanism. It must pass every packet on
// (TC_ACT_UNSPEC / TCX_NEXT).
type Hook struct {
	Program *ebpf.Program
	Egress  bool
	// Name is the cls_bpf filter's name under clsact, unique to the hook.
	// It must not start with "linkbeat_", which the counters' filters use
	// and which they remove as leftovers when they attach.
	Name string
	// Priority is the cls_bpf filter's priority under clsact. It must
	// differ from the counters' (1): filters of one priority share a
	// protocol.
	Priority uint16
	// Protocol is the EtherType (host order) the clsact filter is for, so
	// the program runs only on those frames; 0 runs it on every frame.
	// tcx has no such filter: the program checks for itself.
	Protocol uint16
}

// countersPrefix is what the counters' cls_bpf filter names start with.
const countersPrefix = "linkbeat_"

// HookLink is one Hook attached to one interface.
type HookLink struct {
	ifindex int
	ifname  string
	hook    Hook
	tcx     link.Link
}

// AttachHook attaches h to an interface with mech. A clsact filter of the
// same name, left by a crashed run, is replaced.
func AttachHook(mech Mechanism, ifindex int, ifname string, h Hook) (*HookLink, error) {
	if h.Name == "" || strings.HasPrefix(h.Name, countersPrefix) {
		return nil, fmt.Errorf("hook name %q: want a name without the prefix %q", h.Name, countersPrefix)
	}
	l := &HookLink{ifindex: ifindex, ifname: ifname, hook: h}
	parent := uint32(netlink.HANDLE_MIN_INGRESS)
	at := ebpf.AttachTCXIngress
	if h.Egress {
		parent, at = netlink.HANDLE_MIN_EGRESS, ebpf.AttachTCXEgress
	}
	if err := removeNamedFilter(ifindex, parent, h.Name); err != nil {
		return nil, fmt.Errorf("remove old %s filter on %s: %w", h.Name, ifname, err)
	}
	if mech == TCX {
		tl, err := link.AttachTCX(link.TCXOptions{Interface: ifindex, Program: h.Program, Attach: at})
		if err != nil {
			return nil, fmt.Errorf("attach %s with tcx to %s: %w", h.Name, ifname, err)
		}
		l.tcx = tl
		return l, nil
	}
	qdisc := &netlink.GenericQdisc{
		QdiscAttrs: netlink.QdiscAttrs{LinkIndex: ifindex, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT},
		QdiscType:  "clsact",
	}
	// Shared with the counters and with other tools.
	if err := netlink.QdiscAdd(qdisc); err != nil && !errors.Is(err, unix.EEXIST) {
		return nil, fmt.Errorf("add clsact qdisc to %s: %w", ifname, err)
	}
	proto := uint16(unix.ETH_P_ALL)
	if h.Protocol != 0 {
		proto = h.Protocol
	}
	filter := &netlink.BpfFilter{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: ifindex, Parent: parent, Handle: netlink.MakeHandle(0, 1),
			Protocol: proto, Priority: h.Priority,
		},
		Fd: h.Program.FD(), Name: h.Name, DirectAction: true,
	}
	if err := netlink.FilterAdd(filter); err != nil {
		return nil, fmt.Errorf("add %s filter to %s: %w", h.Name, ifname, err)
	}
	return l, nil
}

// Close detaches the hook. gone says the interface no longer exists: the
// kernel dropped its filters with it.
func (l *HookLink) Close(gone bool) error {
	if l.tcx != nil {
		return l.tcx.Close()
	}
	if gone {
		return nil
	}
	parent := uint32(netlink.HANDLE_MIN_INGRESS)
	if l.hook.Egress {
		parent = netlink.HANDLE_MIN_EGRESS
	}
	err := removeNamedFilter(l.ifindex, parent, l.hook.Name)
	if err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("remove %s filter from %s: %w", l.hook.Name, l.ifname, err)
	}
	return nil
}

// removeNamedFilter deletes the cls_bpf filters called name from one
// clsact hook, leaving every other filter alone.
func removeNamedFilter(ifindex int, parent uint32, name string) error {
	l, err := netlink.LinkByIndex(ifindex)
	if err != nil {
		return err
	}
	filters, err := filterList(l, parent)
	if err != nil {
		// No clsact qdisc: nothing of ours there.
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			return nil
		}
		return err
	}
	var errs []error
	for _, f := range filters {
		if bf, ok := f.(*netlink.BpfFilter); ok && bf.Name == name {
			if err := netlink.FilterDel(bf); err != nil && !errors.Is(err, unix.ENOENT) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// RemoveNamedFilters deletes the cls_bpf filters with these names from
// both clsact hooks of every interface of the caller's network namespace
// (a crashed run's hooks; tcx links go with their process). It returns
// "ifname name" for each filter removed.
func RemoveNamedFilters(names ...string) ([]string, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	var done []string
	var errs []error
	for _, l := range links {
		for _, parent := range []uint32{netlink.HANDLE_MIN_INGRESS, netlink.HANDLE_MIN_EGRESS} {
			filters, err := netlink.FilterList(l, parent)
			if err != nil {
				continue // no clsact qdisc
			}
			for _, f := range filters {
				if bf, ok := f.(*netlink.BpfFilter); ok && slices.Contains(names, bf.Name) {
					if err := netlink.FilterDel(bf); err != nil && !errors.Is(err, unix.ENOENT) {
						errs = append(errs, fmt.Errorf("remove filter %s from %s: %w", bf.Name, l.Attrs().Name, err))
						continue
					}
					done = append(done, l.Attrs().Name+" "+bf.Name)
				}
			}
		}
	}
	return done, errors.Join(errs...)
}
