package traffic

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"

	"github.com/linkbeat/linkbeat/internal/rtnl"
	"github.com/linkbeat/linkbeat/internal/tc"
)

// CleanupReport says what Cleanup did.
type CleanupReport struct {
	// Detached are the tcx and tracepoint link pins whose links were
	// detached.
	Detached []string `json:"detached"`
	// Filters are the clsact filters removed, as "ifname ingress|egress".
	Filters []string `json:"filters"`
	// Removed are the pins removed, links included.
	Removed []string `json:"removed"`
	// Foreign are entries of the directory that are not linkbeat's: left
	// alone, and with them the directory.
	Foreign []string `json:"foreign,omitempty"`
	// DirRemoved says the pin directory itself is gone; Missing that it
	// was not there to begin with.
	DirRemoved bool `json:"dir_removed"`
	Missing    bool `json:"missing,omitempty"`
}

// Cleanup detaches what a daemon attached with pin directory dir and
// removes its pins: tcx and tracepoint links are detached (even if a
// process still holds them), the clsact filters that use its pinned
// programs are removed from every interface of the caller's network
// namespace, then the pins go, and the directory if nothing else is in it.
// Only entries with linkbeat's pin names are touched.
func Cleanup(dir string) (CleanupReport, error) {
	rep := CleanupReport{Detached: []string{}, Filters: []string{}, Removed: []string{}}
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		rep.Missing = true
		return rep, nil
	}
	if err != nil {
		return rep, fmt.Errorf("read pin directory: %w", err)
	}
	if err := checkBpffs(dir); err != nil {
		return rep, err
	}
	var errs []error
	// Filters first: they are found through the pinned programs' IDs,
	// the counters' and the ARP path monitor's.
	ids := pinnedProgramIDs(dir, append(progPins(), ProgArp, ProgNS))
	if len(ids) > 0 {
		removed, err := RemoveProgFilters(ids)
		rep.Filters = append(rep.Filters, removed...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	for _, e := range entries {
		name := e.Name()
		if !ownPin(name) {
			rep.Foreign = append(rep.Foreign, name)
			continue
		}
		path := filepath.Join(dir, name)
		if isLinkPin(name) {
			if l, err := link.LoadPinnedLink(path, nil); err == nil {
				// Detach works even while a daemon still holds the link;
				// tracepoint links may not support it, and go with their
				// last reference instead.
				l.Detach()
				l.Close()
				rep.Detached = append(rep.Detached, name)
			}
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove pin %s: %w", path, err))
			continue
		}
		rep.Removed = append(rep.Removed, name)
	}
	if len(rep.Foreign) == 0 {
		if err := os.Remove(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove pin directory: %w", err))
		} else {
			rep.DirRemoved = true
		}
	}
	slices.Sort(rep.Filters)
	return rep, errors.Join(errs...)
}

// RemoveProgFilters removes, from both clsact hooks of every interface of
// the caller's network namespace, the cls_bpf filters that run one of the
// programs ids, and names them ("ifname ingress|egress").
func RemoveProgFilters(ids map[int]bool) ([]string, error) {
	links, err := rtnl.Retry("list links", netlink.LinkList)
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	var (
		removed []string
		errs    []error
	)
	for _, l := range links {
		for _, d := range tc.Directions {
			filters, err := tc.FilterList(l, d.Parent)
			if err != nil {
				continue // no clsact qdisc
			}
			for _, f := range filters {
				bf, ok := f.(*netlink.BpfFilter)
				if !ok || !ids[bf.Id] {
					continue
				}
				if err := netlink.FilterDel(bf); err != nil {
					errs = append(errs, fmt.Errorf("remove filter %s from %s: %w", bf.Name, l.Attrs().Name, err))
					continue
				}
				removed = append(removed, l.Attrs().Name+" "+d.Name)
			}
		}
	}
	return removed, errors.Join(errs...)
}

func isLinkPin(name string) bool {
	if _, _, ok := parseTCXPin(name); ok {
		return true
	}
	for _, tp := range tracepoints {
		if name == rawTPPrefix+tp.name {
			return true
		}
	}
	return false
}
