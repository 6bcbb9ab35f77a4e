package pathmon

import (
	"errors"
	"slices"
	"sync"

	"github.com/linkbeat/linkbeat/internal/config"
	"github.com/linkbeat/linkbeat/internal/registry"
	"github.com/linkbeat/linkbeat/internal/source"
)

// Syncer keeps a Monitor in step with the bonds and the config. Feed it
// every bond and slave change the event source reports, in order; it
// calls SetBond only when a probed bond's slaves, name or settings change,
// so a carrier change costs nothing here. Membership comes whole with each
// event (source.LinkEvent.Bonds, from the source's link table, its one
// owner): the syncer keeps only what it last told the monitor. Its methods
// may be called from any goroutine; the netlink work happens on the
// caller's.
type Syncer struct {
	mu       sync.Mutex
	m        *Monitor
	settings func(bond string) config.BondSettings
	applied  map[int]Bond // what SetBond last got, per bond
}

// NewSyncer feeds m; settings gives a bond's settings by name (the live
// config's ForBond).
func NewSyncer(m *Monitor, settings func(bond string) config.BondSettings) *Syncer {
	return &Syncer{m: m, settings: settings, applied: map[int]Bond{}}
}

// Link takes one bond or slave change.
func (s *Syncer) Link(ev source.LinkEvent) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	if idx := ev.Link.Index; ev.Kind == registry.Removed {
		// The monitor drops it without touching the interface, which
		// is gone; a bond's slaves, still there, are cleaned up.
		errs = append(errs, s.m.Forget(idx))
		delete(s.applied, idx)
		for i, b := range s.applied {
			b.Slaves = slices.DeleteFunc(slices.Clone(b.Slaves), func(x Slave) bool { return x.Index == idx })
			s.applied[i] = b
		}
	}
	for _, b := range ev.Bonds {
		errs = append(errs, s.apply(b, false))
	}
	return errors.Join(errs...)
}

// Refresh applies the settings again to every bond, after the config
// changed, and retries the slaves that could not be probed.
func (s *Syncer) Refresh(bonds []source.BondMembers) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for _, b := range bonds {
		errs = append(errs, s.apply(b, true))
	}
	return errors.Join(errs...)
}

// apply makes the monitor probe bond b as its members and settings say;
// force calls SetBond even if that changed nothing.
func (s *Syncer) apply(b source.BondMembers, force bool) error {
	idx := b.Index
	want := Bond{Index: idx}
	if b.Name != "" {
		want.Name = b.Name
		set := s.settings(b.Name)
		want.Targets, want.Interval, want.MissedMax = set.Targets(), set.ARPInterval, set.MissedMax
	}
	if len(want.Targets) > 0 {
		for _, m := range b.Slaves {
			want.Slaves = append(want.Slaves, Slave{Index: m.Index, Name: m.Name})
		}
	}
	have, had := s.applied[idx]
	if len(want.Targets) == 0 {
		if !had {
			return nil
		}
		delete(s.applied, idx)
		return s.m.RemoveBond(idx)
	}
	if had && !force && sameBond(have, want) {
		return nil
	}
	s.applied[idx] = want
	return s.m.SetBond(want)
}

func sameBond(a, b Bond) bool {
	return a.Name == b.Name && slices.Equal(a.Targets, b.Targets) && a.Interval == b.Interval && a.MissedMax == b.MissedMax &&
		slices.EqualFunc(a.Slaves, b.Slaves, func(x, y Slave) bool { return x.Index == y.Index && x.Name == y.Name })
}
