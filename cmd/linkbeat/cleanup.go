package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"

	"github.com/linkbeat/linkbeat/internal/fastpath"
	"github.com/linkbeat/linkbeat/internal/traffic"
)

// cleanup is `linkbeat cleanup`: it undoes what `run` left attached and
// pinned under pinDir (see traffic.Cleanup).
func cleanup(pinDir string, w io.Writer, asJSON bool, log *slog.Logger) error {
	// The fast path's pins live in a directory of their own, which
	// traffic.Cleanup would take for someone else's.
	if done, err := fastpath.Cleanup(pinDir); err != nil {
		log.Warn("cleaning up the fast path", "err", err)
	} else if len(done) > 0 {
		log.Info("removed the fast path's leftovers", "removed", done)
	}
	rep, err := traffic.Cleanup(pinDir)
	if len(rep.Foreign) > 0 {
		log.Warn("left entries that are not linkbeat's in the pin directory, and so the directory", "dir", pinDir, "entries", rep.Foreign)
	}
	if asJSON {
		if jerr := json.NewEncoder(w).Encode(rep); jerr != nil {
			return jerr
		}
		return err
	}
	switch {
	case rep.Missing:
		fmt.Fprintf(w, "nothing to clean up: %s does not exist\n", pinDir)
	case err != nil && len(rep.Removed) == 0:
	case rep.DirRemoved:
		fmt.Fprintf(w, "detached %d links and %d clsact filters, removed %d pins and %s\n", len(rep.Detached), len(rep.Filters), len(rep.Removed), pinDir)
	default:
		fmt.Fprintf(w, "detached %d links and %d clsact filters, removed %d pins; %s stays\n", len(rep.Detached), len(rep.Filters), len(rep.Removed), pinDir)
	}
	return err
}
