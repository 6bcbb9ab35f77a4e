// Package routes withdraws the routes and nexthop objects that go through a
// link when it loses carrier, and restores exactly those when carrier comes
// back. The kernel leaves such routes in place (only marking them linkdown),
// so without this traffic keeps being sent into a dead link; worse, it
// flushes nexthop objects on carrier loss and never puts them back.
//
// What counts: unicast routes of every table but local (255), IPv4 and
// IPv6, static and connected (proto kernel) ones. IPv6 link-local routes
// (fe80::/10) are left alone: link-local traffic is scoped to the link
// anyway, so withdrawing them steers nothing, and the kernel would not
// re-add them.
//
// Identity: the kernel tells routes apart by table, destination, TOS (IPv4),
// source prefix (IPv6) and metric, but holds several routes under one such
// key (IPv4 `ip route append`, IPv6 device or nexthop-object routes beside a
// multipath one). The cache keeps each key's routes in the kernel's order,
// and a withdrawn route remembers where it stood among them, so that it
// comes back in its place whatever order links fail and return in.
//
// What was withdrawn is written to a state file before anything is deleted,
// so a restarted daemon still restores it.
package routes

import (
	"log/slog"
	"sync"
	"time"
)

// DefaultStateDir is where the state file lives unless Config says otherwise.
const DefaultStateDir = "/run/linkbeat"

type Config struct {
	StateDir string
	Log      *slog.Logger
}

// Result tells what one LinkDown or LinkUp did. Counts are of routes and
// nexthop objects (a partially withdrawn multipath route counts once).
type Result struct {
	Withdrawn, Restored, Skipped int
	Duration                     time.Duration
	// NoCarrier: LinkUp found the link without carrier and restored nothing.
	NoCarrier bool
}

type Manager struct {
	cfg   Config
	k     Kernel
	log   *slog.Logger
	cache *cache

	mu sync.Mutex // guards st and j
	st *state
	j  *journal // nil: every record is a snapshot
}

// New loads the state left by a previous run.
func New(cfg Config, k Kernel) (*Manager, error) {
	if cfg.StateDir == "" {
		cfg.StateDir = DefaultStateDir
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	st, jl, err := loadRecord(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	m := &Manager{cfg: cfg, k: k, log: cfg.Log, cache: newCache(), st: st}
	if jl.skipped > 0 {
		m.log.Warn("skipped route journal entries cut short: an earlier run died writing them, before their deletes", "entries", jl.skipped)
	}
	if m.j, err = openJournal(cfg.StateDir, st.Seq); err != nil {
		m.j = nil
		m.log.Warn("no route journal: each withdrawal writes the whole record first, which is slower", "err", err)
	}
	if jl.applied > 0 || (m.j != nil && m.j.used) {
		// Fold an earlier run's entries into a snapshot now.
		if err := m.save(); err != nil {
			m.log.Warn("cannot fold the route journal into the record", "err", err)
		}
	}
	return m, nil
}

// save writes the whole record, then empties the journal it now holds;
// m.mu must be held (or m not yet shared).
func (m *Manager) save() error {
	if m.j != nil {
		m.st.Seq = m.j.seq
	}
	if err := m.st.save(m.cfg.StateDir); err != nil {
		return err
	}
	if m.j != nil {
		if err := m.j.empty(); err != nil {
			// Harmless: the snapshot holds its entries, so loading skips them.
			m.log.Warn("cannot empty the route journal", "err", err)
		}
	}
	return nil
}

// saveLink records link id before its withdrawal: a journal entry, or the
// whole record when there is no journal; m.mu must be held.
func (m *Manager) saveLink(id string, ls *linkState) error {
	if m.j == nil {
		return m.save()
	}
	if err := m.j.append(id, ls); err != nil {
		m.log.Warn("route journal write failed; writing the whole record instead", "err", err)
		return m.save()
	}
	return nil
}

// Close folds the journal into the record and removes it, so that only
// the snapshot is left. Changes after it write the whole record.
func (m *Manager) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.j == nil {
		return nil
	}
	if m.j.used {
		if err := m.save(); err != nil {
			return err // the journal stays: it holds what the record lacks
		}
	}
	err := m.j.close()
	m.j = nil
	return err
}

// WithdrawnLinks names, by ifindex, the links with something withdrawn.
func (m *Manager) WithdrawnLinks() map[int]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[int]string{}
	for _, ls := range m.st.Links {
		out[ls.Ifindex] = ls.Ifname
	}
	return out
}

// Holds says whether the record holds something of link ifindex.
func (m *Manager) Holds(ifindex int) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, ls := range m.st.Links {
		if ls.Ifindex == ifindex {
			return true
		}
	}
	return false
}

// Withdrawn counts, per link name, routes and nexthop objects withdrawn now.
func (m *Manager) Withdrawn() map[string]int {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]int{}
	for _, ls := range m.st.Links {
		out[ls.Ifname] += ls.count()
	}
	return out
}
