package fastpath

import (
	"fmt"

	"github.com/linkbeat/linkbeat/internal/statefile"
)

// StateFile keeps, in the daemon's state directory, whether the fast path
// runs for each bond and why not, for `linkbeat status`.
const StateFile = "fastpath.json"

type state struct {
	Bonds []BondStatus `json:"bonds"`
}

// WriteState replaces the file atomically.
func WriteState(dir string, bonds []BondStatus) error {
	if err := statefile.Write(dir, StateFile, state{Bonds: bonds}, statefile.Options{DirPerm: 0o755, FilePerm: 0o644}); err != nil {
		return fmt.Errorf("fast path state: %w", err)
	}
	return nil
}

// ReadState reads the file: each bond's status by name; empty when no
// daemon wrote one.
func ReadState(dir string) (map[string]BondStatus, error) {
	var s state
	if _, err := statefile.Read(dir, StateFile, &s); err != nil {
		return nil, fmt.Errorf("fast path state: %w", err)
	}
	out := map[string]BondStatus{}
	for _, b := range s.Bonds {
		out[b.Name] = b
	}
	return out, nil
}
