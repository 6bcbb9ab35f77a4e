package routes

import (
	"bytes"
	"cmp"
	"fmt"
	"slices"
	"time"
)

// WithdrawnLink is what linkbeat holds withdrawn for one link, as the state
// file says, for `linkbeat status`.
type WithdrawnLink struct {
	Ifname   string    `json:"ifname"`
	Ifindex  int       `json:"ifindex"`
	Since    time.Time `json:"since"`
	Routes   []string  `json:"routes"`
	Nexthops []string  `json:"nexthops,omitempty"`
}

// ReadWithdrawn reads the state file in dir without a Manager (the daemon
// may not be running); a missing file means nothing is withdrawn.
func ReadWithdrawn(dir string) ([]WithdrawnLink, error) {
	st, err := loadState(dir)
	if err != nil {
		return nil, err
	}
	out := []WithdrawnLink{}
	for _, ls := range st.Links {
		w := WithdrawnLink{Ifname: ls.Ifname, Ifindex: ls.Ifindex, Since: ls.Since, Routes: []string{}}
		for _, e := range ls.Routes {
			s := e.Route.String()
			if len(e.Removed) > 0 {
				s += " (only its hops through this link)"
			}
			w.Routes = append(w.Routes, s)
		}
		for _, e := range ls.Nexthops {
			w.Nexthops = append(w.Nexthops, e.Nexthop.String())
		}
		out = append(out, w)
	}
	slices.SortFunc(out, func(a, b WithdrawnLink) int { return cmp.Compare(a.Ifname, b.Ifname) })
	return out, nil
}

// ReadRecord returns the record in dir as one routes.json document with
// the journal folded in: what a restart would load. Tests and debugging
// read it instead of the two files.
func ReadRecord(dir string) ([]byte, error) {
	st, err := loadState(dir)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := st.encode(&b); err != nil {
		return nil, fmt.Errorf("route state: %w", err)
	}
	return b.Bytes(), nil
}
