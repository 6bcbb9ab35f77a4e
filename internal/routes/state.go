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
	Version int                   `json:"version"`
	Links   map[string]*linkState `json:"links"` // by linkID
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

func loadState(dir string) (*state, error) {
	st := &state{Version: stateVersion, Links: map[string]*linkState{}}
	found, err := statefile.Read(dir, stateFile, st)
	if err != nil {
		return nil, fmt.Errorf("route state: %w", err)
	}
	if !found {
		return st, nil
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("route state %s: version %d, this linkbeat reads %d", filepath.Join(dir, stateFile), st.Version, stateVersion)
	}
	if st.Links == nil {
		st.Links = map[string]*linkState{}
	}
	return st, nil
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
	o := statefile.Options{DirPerm: 0o700, FilePerm: 0o600, Compact: true}
	if err := statefile.WriteFunc(dir, stateFile, st.encode, o); err != nil {
		return fmt.Errorf("route state: %w", err)
	}
	return nil
}

// encode writes st as json.Marshal would, one entry at a time: with a
// whole table withdrawn, one buffer holding the file (and Marshal's copy
// of it) was the daemon's largest allocation.
func (st *state) encode(w io.Writer) error {
	ew := &errWriter{w: w}
	ew.printf(`{"version":%d,"links":{`, st.Version)
	for i, id := range slices.Sorted(maps.Keys(st.Links)) {
		ls := st.Links[id]
		if i > 0 {
			ew.write([]byte{','})
		}
		ew.marshal(id)
		ew.write([]byte{':'})
		head, err := json.Marshal(linkHead{ls.Ifname, ls.Ifindex, ls.Since})
		if err != nil {
			return err
		}
		ew.write(head[:len(head)-1]) // without its closing brace
		if len(ls.Routes) > 0 {
			ew.write([]byte(`,"routes":`))
			encodeList(ew, ls.Routes)
		}
		if len(ls.Nexthops) > 0 {
			ew.write([]byte(`,"nexthops":`))
			encodeList(ew, ls.Nexthops)
		}
		ew.write([]byte{'}'})
	}
	ew.write([]byte("}}"))
	return ew.err
}

// linkHead is linkState's fields before its lists, in its order.
type linkHead struct {
	Ifname  string    `json:"ifname"`
	Ifindex int       `json:"ifindex"`
	Since   time.Time `json:"since"`
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

// errWriter keeps the first error, so that encode checks once.
type errWriter struct {
	w   io.Writer
	err error
}

func (ew *errWriter) write(b []byte) {
	if ew.err == nil {
		_, ew.err = ew.w.Write(b)
	}
}

func (ew *errWriter) printf(format string, args ...any) {
	if ew.err == nil {
		_, ew.err = fmt.Fprintf(ew.w, format, args...)
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
