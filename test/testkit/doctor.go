package testkit

import (
	"encoding/json"
	"strings"
)

// DoctorFinding is one finding of `linkbeat doctor --json`.
type DoctorFinding struct {
	ID       string `json:"id"`
	Severity string `json:"severity"`
	Subject  string `json:"subject"`
	Summary  string `json:"summary"`
	Why      string `json:"why"`
	Fix      string `json:"fix"`
	Guide    string `json:"guide"`
}

// DoctorReport is the whole of `linkbeat doctor --json`.
type DoctorReport struct {
	Findings   []DoctorFinding `json:"findings"`
	Counts     map[string]int  `json:"counts"`
	ExitStatus int             `json:"exit_status"`
}

// Find returns the findings with id whose subject contains subject.
func (r DoctorReport) Find(id, subject string) []DoctorFinding {
	var out []DoctorFinding
	for _, f := range r.Findings {
		if f.ID == id && strings.Contains(f.Subject, subject) {
			out = append(out, f)
		}
	}
	return out
}

func (r DoctorReport) String() string {
	b, _ := json.MarshalIndent(r.Findings, "", "  ")
	return string(b)
}
