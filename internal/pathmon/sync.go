package pathmon

import (
	"errors"
	"maps"
	"slices"
	"sync"

	"github.com/linkbeat/linkbeat/internal/config"
	"github.com/linkbeat/linkbeat/internal/registry"
)

// Syncer keeps a Monitor in step with the links and the config. Feed it
// every link change the daemon sees, bond or not, in order; it calls
// SetBond only when a probed bond's slaves, name or settings change, so a
// carrier change costs nothing here. Its methods may be called from any
// goroutine; the netlink work happens on the caller's.
type Syncer struct {
	mu       sync.Mutex
	m        *Monitor
	settings func(bond string) config.BondSettings
	bonds    map[int]string        // bond ifindex -> name
	slaves   map[int]registry.Link // bond slave ifindex -> link
	applied  map[int]Bond          // what SetBond last got, per bond
}

// NewSyncer feeds m; settings gives a bond's settings by name (the live
// config's ForBond).
func NewSyncer(m *Monitor, settings func(bond string) config.BondSettings) *Syncer {
	return &Syncer{m: m, settings: settings, bonds: map[int]string{}, slaves: map[int]registry.Link{}, applied: map[int]Bond{}}
}

// Link takes one link change.
func (s *Syncer) Link(c registry.Change) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := c.Link
	if c.Kind == registry.Removed {
		// The monitor drops it without touching the interface, which
		// is gone; a bond's slaves, still there, are cleaned up.
		err := s.m.Forget(l.Index)
		if old, ok := s.slaves[l.Index]; ok {
			delete(s.slaves, l.Index)
			if b, ok := s.applied[old.MasterIndex]; ok {
				b.Slaves = slices.DeleteFunc(slices.Clone(b.Slaves), func(x Slave) bool { return x.Index == l.Index })
				s.applied[old.MasterIndex] = b
			}
		}
		delete(s.bonds, l.Index)
		delete(s.applied, l.Index)
		return err
	}
	touched := map[int]bool{}
	if old, ok := s.slaves[l.Index]; ok {
		touched[old.MasterIndex] = true
	}
	if _, ok := s.bonds[l.Index]; ok || l.Bond != nil {
		touched[l.Index] = true
	}
	if l.Bond != nil {
		s.bonds[l.Index] = l.Name
	} else {
		delete(s.bonds, l.Index)
	}
	if l.BondSlave != nil && l.MasterIndex != 0 {
		s.slaves[l.Index] = l
		touched[l.MasterIndex] = true
	} else {
		delete(s.slaves, l.Index)
	}
	var errs []error
	for _, idx := range slices.Sorted(maps.Keys(touched)) {
		errs = append(errs, s.apply(idx, false))
	}
	return errors.Join(errs...)
}

// Refresh applies the settings again, after the config changed, and
// retries the slaves that could not be probed.
func (s *Syncer) Refresh() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for _, idx := range slices.Sorted(maps.Keys(s.bonds)) {
		errs = append(errs, s.apply(idx, true))
	}
	return errors.Join(errs...)
}

// apply makes the monitor probe bond idx as the links and settings say;
// force calls SetBond even if that changed nothing.
func (s *Syncer) apply(idx int, force bool) error {
	want := Bond{Index: idx}
	if name, ok := s.bonds[idx]; ok {
		want.Name = name
		set := s.settings(name)
		want.Targets, want.Interval, want.MissedMax = set.Targets(), set.ARPInterval, set.MissedMax
	}
	if len(want.Targets) > 0 {
		for _, i := range slices.Sorted(maps.Keys(s.slaves)) {
			if l := s.slaves[i]; l.MasterIndex == idx {
				want.Slaves = append(want.Slaves, Slave{Index: l.Index, Name: l.Name})
			}
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
