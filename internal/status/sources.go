// Package status builds `linkbeat status`: what the daemon pinned and
// wrote to its state directory, joined with a netlink dump, readable
// whether the daemon runs or not. Build is pure; the command does the I/O.
package status

import (
	"fmt"
	"time"

	"github.com/linkbeat/linkbeat/internal/statefile"
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
	if err := statefile.Write(dir, SourcesFile, s, statefile.Options{DirPerm: 0o755, FilePerm: 0o644}); err != nil {
		return fmt.Errorf("daemon sources: %w", err)
	}
	return nil
}

// ReadSources reads the file; nil without error when no daemon wrote one.
func ReadSources(dir string) (*Sources, error) {
	var s Sources
	found, err := statefile.Read(dir, SourcesFile, &s)
	if err != nil {
		return nil, fmt.Errorf("daemon sources: %w", err)
	}
	if !found {
		return nil, nil
	}
	return &s, nil
}
