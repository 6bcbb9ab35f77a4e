package bond

import (
	"fmt"

	"github.com/linkbeat/linkbeat/internal/statefile"
)

// StateFile is where the manager keeps each bond's last failover, in the
// daemon's state directory, so `linkbeat status` can show it without the
// daemon.
const StateFile = "bonds.json"

// State is the file's content.
type State struct {
	// Last is each bond's last failover, by bond name.
	Last map[string]Failover `json:"last_failover"`
	// LastFast is each bond's last fast-path failover (By "fastpath"):
	// its Duration is from the driver's call to the first frame the fast
	// path redirected.
	LastFast map[string]Failover `json:"last_fast_failover,omitempty"`
}

// ReadState reads the state file in dir; a missing file is an empty state.
func ReadState(dir string) (State, error) {
	s := State{}
	if _, err := statefile.Read(dir, StateFile, &s); err != nil {
		return State{Last: map[string]Failover{}}, fmt.Errorf("bond state: %w", err)
	}
	if s.Last == nil {
		s.Last = map[string]Failover{}
	}
	return s, nil
}

// writeState replaces the file atomically.
func writeState(dir string, s State) error {
	if err := statefile.Write(dir, StateFile, s, statefile.Options{DirPerm: 0o755, FilePerm: 0o644}); err != nil {
		return fmt.Errorf("bond state: %w", err)
	}
	return nil
}
