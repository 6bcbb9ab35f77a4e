package registry

import (
	"maps"
	"slices"
)

// ChangeKind says what happened to a link.
type ChangeKind uint8

const (
	Added ChangeKind = iota + 1
	Updated
	Removed
)

func (k ChangeKind) String() string {
	switch k {
	case Added:
		return "added"
	case Updated:
		return "updated"
	case Removed:
		return "removed"
	}
	return "unknown"
}

// Change is one difference the table saw. Old is the previous view for
// Updated and Removed; a rename shows as Updated with Old.Name != Link.Name.
type Change struct {
	Kind ChangeKind
	Link Link
	Old  Link
	// Released marks a Removed change for a link that still exists but
	// is no longer monitored (renamed out of the set, or a reload).
	Released bool
}

// Renamed reports whether an update changed the link's name.
func (c Change) Renamed() bool { return c.Kind == Updated && c.Old.Name != c.Link.Name }

// Table is the set of links, keyed by ifindex. It is not safe for
// concurrent use: one goroutine owns it.
type Table struct {
	links map[int]Link
}

func NewTable() *Table { return &Table{links: make(map[int]Link)} }

// Apply folds one message into the table.
func (t *Table) Apply(u Update) []Change {
	old, had := t.links[u.Link.Index]
	if u.Bridge {
		if !had || bridgeEqual(old.BridgePort, u.Link.BridgePort) {
			return nil
		}
		l := old
		l.BridgePort = u.Link.BridgePort
		t.links[l.Index] = l
		return []Change{{Kind: Updated, Link: l, Old: old}}
	}
	switch {
	case u.Deleted && had:
		delete(t.links, u.Link.Index)
		return []Change{{Kind: Removed, Link: old, Old: old}}
	case u.Deleted:
		return nil
	case had:
		t.links[u.Link.Index] = u.Link
		return []Change{{Kind: Updated, Link: u.Link, Old: old}}
	default:
		t.links[u.Link.Index] = u.Link
		return []Change{{Kind: Added, Link: u.Link}}
	}
}

// Replace makes the table equal to a full dump, returning the differences:
// links missing from the dump are Removed.
func (t *Table) Replace(dump []Link) []Change {
	seen := make(map[int]bool, len(dump))
	var out []Change
	for _, l := range dump {
		seen[l.Index] = true
		out = append(out, t.Apply(Update{Link: l})...)
	}
	for _, idx := range slices.Sorted(maps.Keys(t.links)) {
		if !seen[idx] {
			out = append(out, t.Apply(Update{Deleted: true, Link: Link{Index: idx}})...)
		}
	}
	return out
}

// Get returns a link by ifindex.
func (t *Table) Get(idx int) (Link, bool) {
	l, ok := t.links[idx]
	return l, ok
}

// ByName returns a link by name.
func (t *Table) ByName(name string) (Link, bool) {
	for _, l := range t.links {
		if l.Name == name {
			return l, true
		}
	}
	return Link{}, false
}

// Links returns every link, ordered by ifindex.
func (t *Table) Links() []Link {
	out := make([]Link, 0, len(t.links))
	for _, idx := range slices.Sorted(maps.Keys(t.links)) {
		out = append(out, t.links[idx])
	}
	return out
}

// Slaves returns the ports enslaved to master, ordered by ifindex.
func (t *Table) Slaves(master int) []Link {
	var out []Link
	for _, l := range t.Links() {
		if l.MasterIndex == master {
			out = append(out, l)
		}
	}
	return out
}

func bridgeEqual(a, b *BridgePort) bool {
	return (a == nil && b == nil) || (a != nil && b != nil && *a == *b)
}
