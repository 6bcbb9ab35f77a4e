package doctor

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// Report is `linkbeat doctor --json`'s output.
type Report struct {
	Findings []Finding `json:"findings"`
	// Counts has every severity, 0 included.
	Counts     map[Severity]int `json:"counts"`
	ExitStatus int              `json:"exit_status"`
}

// NewReport wraps findings as Check returns them.
func NewReport(fs []Finding) Report {
	r := Report{Findings: fs, Counts: map[Severity]int{Info: 0, Warning: 0, Error: 0}, ExitStatus: ExitStatus(fs)}
	if r.Findings == nil {
		r.Findings = []Finding{}
	}
	for _, f := range fs {
		r.Counts[f.Severity]++
	}
	return r
}

// WriteJSON writes the report as one JSON object.
func (r Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

// WriteText writes the report for people: each finding with its why and
// fix, wrapped at width columns, then a summary line.
func (r Report) WriteText(w io.Writer, width int) error {
	var b strings.Builder
	for _, f := range r.Findings {
		fmt.Fprintf(&b, "%s %s: %s\n", strings.ToUpper(f.Severity.String()), f.ID, f.Subject)
		wrap(&b, "  ", "", f.Summary, width)
		wrap(&b, "  why: ", "       ", f.Why, width)
		wrap(&b, "  fix: ", "       ", f.Fix, width)
		if f.Guide != "" {
			wrap(&b, "  see: ", "       ", "linkbeat doctor --guide, \""+f.Guide+"\"", width)
		}
		b.WriteString("\n")
	}
	if len(r.Findings) == 0 {
		b.WriteString("No findings.\n")
	} else {
		fmt.Fprintf(&b, "%d finding(s): %d error(s), %d warning(s), %d info. Exit status %d.\n",
			len(r.Findings), r.Counts[Error], r.Counts[Warning], r.Counts[Info], r.ExitStatus)
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

// wrap writes text after first, continuing lines after indent, breaking
// at spaces before width columns.
func wrap(b *strings.Builder, first, indent, text string, width int) {
	line := first
	empty := true
	for _, word := range strings.Fields(text) {
		if !empty && len(line)+1+len(word) > width {
			b.WriteString(line + "\n")
			line, empty = indent, true
		}
		if !empty {
			line += " "
		}
		line += word
		empty = false
	}
	b.WriteString(line + "\n")
}
