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

	"github.com/linkbeat/linkbeat/internal/tc"
)

// Mechanism, TCX and Clsact are internal/tc's, named here too for the
// callers that pick the counters' mechanism.
type Mechanism = tc.Mechanism

const (
	TCX    = tc.TCX
	Clsact = tc.Clsact
)

// ProbeMechanism is tc.ProbeMechanism.
func ProbeMechanism(prog *ebpf.Program) Mechanism { return tc.ProbeMechanism(prog) }

type attachment struct {
	ifindex int
	ifname  string
	links   []link.Link // tcx
	clsact  bool
}

func (t *Traffic) attach(ifindex int, ifname string) (*attachment, error) {
	a := &attachment{ifindex: ifindex, ifname: ifname}
	progs := []*ebpf.Program{t.objs.TcIngress, t.objs.TcEgress}
	if t.mech == TCX {
		// A crashed clsact run may have left filters behind.
		if err := tc.RemoveFilters(ifindex, t.ownsFilter); err != nil {
			return nil, fmt.Errorf("remove old clsact filters on %s: %w", ifname, err)
		}
		for i, d := range tc.Directions {
			l, err := t.tcxLink(ifindex, ifname, d.Name, d.TCX, progs[i])
			if err != nil {
				t.release(a, false)
				return nil, err
			}
			a.links = append(a.links, l)
		}
		return a, nil
	}
	// An earlier tcx run may have left links pinned for this interface.
	for _, d := range tc.Directions {
		if l := t.takeAdopted(tcxPinName(d.Name, ifindex)); l != nil {
			l.Unpin()
			l.Close()
		}
	}
	if err := tc.AttachCounters(ifindex, progs[0], progs[1]); err != nil {
		tc.RemoveFilters(ifindex, t.ownsFilter)
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
		if err := tc.CheckTCXLink(old, ifindex, at); err != nil {
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
		if err := tc.RemoveFilters(a.ifindex, t.ownsFilter); err != nil && !errors.Is(err, unix.ENODEV) {
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
	if !strings.HasPrefix(f.Name, tc.FilterPrefix) {
		return false
	}
	return t.pinDir == "" || t.ourProgs[f.Id]
}
