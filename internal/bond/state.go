package bond

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// StateFile is where the manager keeps each bond's last failover, in the
// daemon's state directory, so `linkbeat status` can show it without the
// daemon.
const StateFile = "bonds.json"

// State is the file's content.
type State struct {
	// Last is each bond's last failover, by bond name.
	Last map[string]Failover `json:"last_failover"`
}

// ReadState reads the state file in dir; a missing file is an empty state.
func ReadState(dir string) (State, error) {
	s := State{Last: map[string]Failover{}}
	b, err := os.ReadFile(filepath.Join(dir, StateFile))
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return s, fmt.Errorf("read bond state: %w", err)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("parse bond state %s: %w", filepath.Join(dir, StateFile), err)
	}
	if s.Last == nil {
		s.Last = map[string]Failover{}
	}
	return s, nil
}

// writeState replaces the file atomically.
func writeState(dir string, s State) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create state dir: %w", err)
	}
	tmp := filepath.Join(dir, StateFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("write bond state: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, StateFile)); err != nil {
		return fmt.Errorf("write bond state: %w", err)
	}
	return nil
}
