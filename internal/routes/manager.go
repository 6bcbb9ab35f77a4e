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

	mu sync.Mutex // guards st
	st *state
}

// New loads the state left by a previous run.
func New(cfg Config, k Kernel) (*Manager, error) {
	if cfg.StateDir == "" {
		cfg.StateDir = DefaultStateDir
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	st, err := loadState(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	return &Manager{cfg: cfg, k: k, log: cfg.Log, cache: newCache(), st: st}, nil
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
