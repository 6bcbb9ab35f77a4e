package routes

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/linkbeat/linkbeat/internal/statefile"
)

const (
	stateVersion = 1
	stateFile    = "routes.json"
)

// state is what linkbeat withdrew and has not restored yet, per link.
type state struct {
	Version int `json:"version"`
	// Seq is the last journal entry this snapshot holds (journal.go).
	Seq   uint64                `json:"seq,omitempty"`
	Links map[string]*linkState `json:"links"` // by linkID
}

type linkState struct {
	Ifname   string          `json:"ifname"`
	Ifindex  int             `json:"ifindex"`
	Since    time.Time       `json:"since"`
	Routes   []*routeEntry   `json:"routes,omitempty"`
	Nexthops []*nexthopEntry `json:"nexthops,omitempty"`
}

// routeEntry is one withdrawn route. With Removed empty the whole route
// was deleted; otherwise only those hops were taken out of it.
type routeEntry struct {
	Route   *Route `json:"route"`             // as it was before withdrawal
	Removed []Hop  `json:"removed,omitempty"` // partial withdrawal: the dead hops
	// Merge: the route is (part of) a multipath set; on restore put the
	// hops back into whatever route holds the key now instead of skipping.
	Merge bool `json:"merge,omitempty"`
	// Orig is the multipath route as it was before any link's withdrawal,
	// when another link had already cut it down before this one took the
	// rest: the order and weights to merge back into (a single-path
	// remnant has lost its weight in the kernel).
	Orig *Route `json:"orig,omitempty"`
	// Peers are the routes of the key, this one among them, in the
	// kernel's order before any withdrawal (only when there were several:
	// `ip route append` twins): where to put this one back.
	Peers []*Route `json:"peers,omitempty"`
	// Orphan: the link whose withdrawal took the rest of this partially
	// withdrawn route is gone, so no other record holds the route any
	// more; its hops here still come back.
	Orphan bool `json:"orphan,omitempty"`
}

// nexthopEntry is one withdrawn nexthop object, or dead members taken out
// of a group that still has live ones.
type nexthopEntry struct {
	Nexthop *Nexthop      `json:"nexthop"`
	Removed []GroupMember `json:"removed,omitempty"`
	Merge   bool          `json:"merge,omitempty"`
	// Orig is the group as it was before any link's withdrawal, when
	// another link had already taken members out: the order and weights
	// to merge back into.
	Orig *Nexthop `json:"orig,omitempty"`
	// Orphan: as routeEntry.Orphan, for a group's members.
	Orphan bool `json:"orphan,omitempty"`
}

func linkID(ifname string, ifindex int) string { return ifname + "#" + strconv.Itoa(ifindex) }

func (l *linkState) count() int { return len(l.Routes) + len(l.Nexthops) }

// stateOptions: only root reads what the routes were.
var stateOptions = statefile.Options{DirPerm: 0o700, FilePerm: 0o600, Compact: true}

func loadState(dir string) (*state, error) {
	st, _, err := loadRecord(dir)
	return st, err
}

// journalLoad is what loading found in the journal.
type journalLoad struct {
	applied, skipped int
}

// loadRecord reads the snapshot and applies the journal entries it does
// not hold yet. The journal is read first (journal.go).
func loadRecord(dir string) (*state, journalLoad, error) {
	var jl journalLoad
	entries, skipped, err := readJournal(dir)
	if err != nil {
		return nil, jl, err
	}
	jl.skipped = skipped
	st := &state{Version: stateVersion, Links: map[string]*linkState{}}
	found, err := statefile.Read(dir, stateFile, st)
	if err != nil {
		return nil, jl, fmt.Errorf("route state: %w", err)
	}
	if found && st.Version != stateVersion {
		return nil, jl, fmt.Errorf("route state %s: version %d, this linkbeat reads %d", filepath.Join(dir, stateFile), st.Version, stateVersion)
	}
	if st.Links == nil {
		st.Links = map[string]*linkState{}
	}
	for _, e := range entries {
		if e.Seq <= st.Seq {
			continue
		}
		st.Links[e.ID], st.Seq = e.Link, e.Seq
		jl.applied++
	}
	return st, jl, nil
}

// save writes the state atomically: a temporary file renamed over the old
// one, so a reader or a restarted daemon never sees half a record.
//
// Not fsynced, on purpose: save runs on the reaction path, before the
// routes are deleted, and an fsync there costs a millisecond or more per
// event. The record must survive the daemon's death (a crash, SIGKILL, an
// upgrade), and it does: the renamed file is in the page cache, which
// outlives the process. It need not survive the machine's: after a crash
// or power loss the kernel's routes are gone too, and the network is
// configured afresh at boot; replaying a pre-crash record onto that would
// re-add routes the boot's own configuration manages. That is also why
// the state directory is on /run (tmpfs) by default.
func (st *state) save(dir string) error {
	if err := statefile.WriteFunc(dir, stateFile, st.encode, stateOptions); err != nil {
		return fmt.Errorf("route state: %w", err)
	}
	return nil
}

// encode writes st as json.Marshal would, one entry at a time: with a
// whole table withdrawn, one buffer holding the file (and Marshal's copy
// of it) was the daemon's largest allocation.
func (st *state) encode(w io.Writer) error {
	ew := &errWriter{w: w}
	b := strconv.AppendInt([]byte(`{"version":`), int64(st.Version), 10)
	if st.Seq != 0 {
		b = strconv.AppendUint(append(b, `,"seq":`...), st.Seq, 10)
	}
	ew.write(append(b, `,"links":{`...))
	for i, id := range slices.Sorted(maps.Keys(st.Links)) {
		b = b[:0]
		if i > 0 {
			b = append(b, ',')
		}
		ew.write(append(appendString(b, id), ':'))
		encodeLink(ew, st.Links[id])
	}
	ew.write([]byte("}}"))
	return ew.err
}

// encodeLink writes one link's record as json.Marshal would.
func encodeLink(ew *errWriter, ls *linkState) {
	head, err := appendLinkHead(nil, ls)
	if err != nil {
		ew.fail(err)
		return
	}
	ew.write(head)
	if len(ls.Routes) > 0 {
		ew.write([]byte(`,"routes":`))
		encodeRoutes(ew, ls.Routes)
	}
	if len(ls.Nexthops) > 0 {
		ew.write([]byte(`,"nexthops":`))
		encodeList(ew, ls.Nexthops)
	}
	ew.write([]byte{'}'})
}

func encodeList[E any](ew *errWriter, l []E) {
	ew.write([]byte{'['})
	for i, e := range l {
		if i > 0 {
			ew.write([]byte{','})
		}
		ew.marshal(e)
	}
	ew.write([]byte{']'})
}

// encodeRoutes writes the route entries with appendRouteEntry, through
// one buffer reused entry to entry.
func encodeRoutes(ew *errWriter, l []*routeEntry) {
	ew.write([]byte{'['})
	var b []byte
	for i, e := range l {
		b = b[:0]
		if i > 0 {
			b = append(b, ',')
		}
		b = appendRouteEntry(b, e)
		ew.write(b)
	}
	ew.write([]byte{']'})
}

// errWriter keeps the first error, so that encode checks once.
type errWriter struct {
	w   io.Writer
	err error
}

func (ew *errWriter) fail(err error) {
	if ew.err == nil {
		ew.err = err
	}
}

func (ew *errWriter) write(b []byte) {
	if ew.err == nil {
		_, ew.err = ew.w.Write(b)
	}
}

func (ew *errWriter) marshal(v any) {
	if ew.err != nil {
		return
	}
	b, err := json.Marshal(v)
	if err != nil {
		ew.err = err
		return
	}
	ew.write(b)
}
