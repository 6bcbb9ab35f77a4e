// Package status builds `linkbeat status`: what the daemon pinned and
// wrote to its state directory, joined with a netlink dump, readable
// whether the daemon runs or not. Build is pure; the command does the I/O.
package status

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// SourcesFile is where `linkbeat run` records, in its state directory,
// which paths it found live at start.
const SourcesFile = "daemon.json"

// Sources is what a daemon recorded at start.
type Sources struct {
	PID           int       `json:"pid"`
	Started       time.Time `json:"started"`
	Version       string    `json:"version"`
	CarrierSource string    `json:"carrier_source"`
	TCMechanism   string    `json:"tc_mechanism"`
	Tracepoints   bool      `json:"tracepoints"`
	BpffsDir      string    `json:"bpffs_dir"`
	// ReplacedMaps are the pinned maps replaced at start, with the reason.
	ReplacedMaps map[string]string `json:"replaced_maps,omitempty"`
}

// WriteSources replaces the file atomically.
func WriteSources(dir string, s Sources) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create state dir: %w", err)
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("encode daemon sources: %w", err)
	}
	tmp := filepath.Join(dir, SourcesFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("write daemon sources: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, SourcesFile)); err != nil {
		return fmt.Errorf("write daemon sources: %w", err)
	}
	return nil
}

// ReadSources reads the file; nil without error when no daemon wrote one.
func ReadSources(dir string) (*Sources, error) {
	b, err := os.ReadFile(filepath.Join(dir, SourcesFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read daemon sources: %w", err)
	}
	var s Sources
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("parse daemon sources %s: %w", filepath.Join(dir, SourcesFile), err)
	}
	return &s, nil
}
