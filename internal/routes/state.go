package routes

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"
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
}

// nexthopEntry is one withdrawn nexthop object, or dead members taken out
// of a group that still has live ones.
type nexthopEntry struct {
	Nexthop *Nexthop      `json:"nexthop"`
	Removed []GroupMember `json:"removed,omitempty"`
	Merge   bool          `json:"merge,omitempty"`
}

func linkID(ifname string, ifindex int) string { return ifname + "#" + strconv.Itoa(ifindex) }

func (l *linkState) count() int { return len(l.Routes) + len(l.Nexthops) }

func loadState(dir string) (*state, error) {
	st := &state{Version: stateVersion, Links: map[string]*linkState{}}
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read route state: %w", err)
	}
	if err := json.Unmarshal(b, st); err != nil {
		return nil, fmt.Errorf("parse route state %s: %w", filepath.Join(dir, stateFile), err)
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("route state %s: version %d, this linkbeat reads %d", filepath.Join(dir, stateFile), st.Version, stateVersion)
	}
	if st.Links == nil {
		st.Links = map[string]*linkState{}
	}
	return st, nil
}

// save writes the state atomically and durably: tmp file, fsync, rename,
// fsync of the directory. After it returns a crash cannot lose it.
func (st *state) save(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create state dir: %w", err)
	}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encode route state: %w", err)
	}
	path := filepath.Join(dir, stateFile)
	f, err := os.CreateTemp(dir, stateFile+".tmp*")
	if err != nil {
		return fmt.Errorf("write route state: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after a successful rename
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("write route state: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync route state: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write route state: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("replace route state: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync state dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync state dir: %w", err)
	}
	return nil
}
