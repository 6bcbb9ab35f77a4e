package status

import (
	"fmt"
	"strings"
	"time"

	"github.com/linkbeat/linkbeat/internal/statefile"
)

// ExporterFile is where `linkbeat run` records, in its state directory,
// whether its metrics exporter listens: while it cannot, a scrape cannot
// say so, so `status` and `features` read it here.
const ExporterFile = "exporter.json"

// Exporter is the metrics exporter's state, as the daemon last recorded it.
type Exporter struct {
	// PID is the daemon's, so that a record left by an earlier run is
	// told apart from the running daemon's.
	PID       int        `json:"pid"`
	Listeners []Listener `json:"listeners"`
}

// Listener is one --web.listen-address.
type Listener struct {
	Address   string `json:"address"`
	Listening bool   `json:"listening"`
	// Since is when it last began or stopped listening.
	Since time.Time `json:"since"`
	// Error is the last failure to listen, while not listening.
	Error string `json:"error,omitempty"`
	// Hint says what to do about Error.
	Hint string `json:"hint,omitempty"`
	// Failures counts the failed attempts of this run.
	Failures uint64 `json:"failures"`
	// NextTry is when the bind is retried, while not listening.
	NextTry *time.Time `json:"next_try,omitempty"`
}

// Down lists the addresses that do not listen.
func (e *Exporter) Down() []Listener {
	if e == nil {
		return nil
	}
	var out []Listener
	for _, l := range e.Listeners {
		if !l.Listening {
			out = append(out, l)
		}
	}
	return out
}

// Describe is one listener's state in a line, for status, features and
// systemd's STATUS=.
func (l Listener) Describe() string {
	if l.Listening {
		s := "listening on " + l.Address
		if l.Failures > 0 {
			s += fmt.Sprintf(" (after %d failed attempts)", l.Failures)
		}
		return s
	}
	var b strings.Builder
	fmt.Fprintf(&b, "NOT listening on %s since %s: %s", l.Address, l.Since.Format(time.RFC3339), l.Error)
	if l.Hint != "" {
		fmt.Fprintf(&b, " (%s)", l.Hint)
	}
	fmt.Fprintf(&b, "; %d failed attempts", l.Failures)
	if l.NextTry != nil {
		fmt.Fprintf(&b, ", next at %s", l.NextTry.Format(time.RFC3339))
	}
	return b.String()
}

// WriteExporter replaces the file atomically.
func WriteExporter(dir string, e Exporter) error {
	if err := statefile.Write(dir, ExporterFile, e, statefile.Options{DirPerm: 0o755, FilePerm: 0o644}); err != nil {
		return fmt.Errorf("exporter state: %w", err)
	}
	return nil
}

// ReadExporter reads the file; nil without error when no daemon wrote one.
func ReadExporter(dir string) (*Exporter, error) {
	var e Exporter
	found, err := statefile.Read(dir, ExporterFile, &e)
	if err != nil {
		return nil, fmt.Errorf("exporter state: %w", err)
	}
	if !found {
		return nil, nil
	}
	return &e, nil
}
