package doctor

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/linkbeat/linkbeat/internal/carrier"
	"github.com/linkbeat/linkbeat/internal/registry"
)

// allIDs are every finding doctor makes; docs/doctor.md documents each.
var allIDs = []string{
	"config-invalid", "doctor-incomplete",
	"bond-no-link-monitor", "bond-arp-validate-none", "bond-arp-no-targets", "bond-delay-rounded",
	"bond-ab-mixed-speed-no-primary", "bond-lacp-speed-duplex-mismatch", "bond-lacp-no-partner",
	"bond-lacp-split-aggregators", "bond-mode-outside-guide", "bond-fast-path-off",
	"multipath-nexthop-linkdown", "multipath-linkdown-not-ignored", "routes-not-monitored", "routes-kept",
	"monitored-interface-missing",
	"carrier-path-netlink", "carrier-path-kprobe", "carrier-path-unprobed", "carrier-path-refused",
	"bpffs-not-mounted",
}

func TestConfigInvalid(t *testing.T) {
	s := clean()
	s.Monitor.ConfigErr = "/etc/linkbeat.yaml: line 5: field down_dely is not a known key"
	if f := only(t, checkConfig, s, "config-invalid")[0]; f.Severity != Error {
		t.Errorf("severity %s, want error", f.Severity)
	}
	only(t, checkConfig, clean())
}

func TestProblems(t *testing.T) {
	s := clean()
	s.Problems = []Problem{{What: "the routes", Err: "dump routes: EPERM", Severity: Warning}}
	f := only(t, checkProblems, s, "doctor-incomplete")[0]
	if f.Severity != Warning || !strings.Contains(f.Summary, "dump routes: EPERM") {
		t.Errorf("got %+v", f)
	}
	only(t, checkProblems, clean())
}

func TestCheckOrderAndExitStatus(t *testing.T) {
	if fs := Check(clean(nic(2, "eth0"))); len(fs) != 0 || ExitStatus(fs) != 0 {
		t.Fatalf("a clean host: %v", ids(fs))
	}
	s := abBond("balance-rr", func(b *registry.Bond) { b.Miimon = 0 }) // error and info
	s.Bpffs.Mounted = false                                            // warning
	fs := Check(s)
	got := strings.Join(ids(fs), " ")
	if got != "bond-no-link-monitor(error) bpffs-not-mounted(warning) bond-mode-outside-guide(info)" {
		t.Errorf("order: %s", got)
	}
	if ExitStatus(fs) != 2 || ExitStatus(fs[1:]) != 1 || ExitStatus(fs[2:]) != 0 {
		t.Errorf("exit statuses %d %d %d, want 2 1 0", ExitStatus(fs), ExitStatus(fs[1:]), ExitStatus(fs[2:]))
	}
}

func TestReportJSON(t *testing.T) {
	s := withPaths(clean(nic(2, "eth0")), carrier.SourceNetlink, fentryEPERM, kprobeNone, netlinkOK)
	var buf bytes.Buffer
	if err := NewReport(Check(s)).WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var back struct {
		Findings []struct {
			ID, Severity, Subject, Summary, Why, Fix, Guide string
		} `json:"findings"`
		Counts     map[string]int `json:"counts"`
		ExitStatus int            `json:"exit_status"`
	}
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil {
		t.Fatalf("%v\n%s", err, buf.String())
	}
	if len(back.Findings) != 1 || back.Findings[0].ID != "carrier-path-netlink" || back.Findings[0].Severity != "warning" ||
		back.Findings[0].Guide != guideLinkbeat {
		t.Errorf("findings: %+v", back.Findings)
	}
	if back.Counts["warning"] != 1 || back.Counts["error"] != 0 || back.Counts["info"] != 0 || back.ExitStatus != 1 {
		t.Errorf("counts %v, exit %d", back.Counts, back.ExitStatus)
	}
	buf.Reset()
	if err := NewReport(nil).WriteJSON(&buf); err != nil || !strings.Contains(buf.String(), `"findings": []`) {
		t.Errorf("empty report: %v\n%s", err, buf.String())
	}
}

func TestSeverityText(t *testing.T) {
	for _, s := range []Severity{Info, Warning, Error} {
		b, _ := s.MarshalText()
		var back Severity
		if err := back.UnmarshalText(b); err != nil || back != s {
			t.Errorf("%s: round trip gave %s, %v", s, back, err)
		}
	}
	var s Severity
	if err := s.UnmarshalText([]byte("fatal")); err == nil {
		t.Error("unknown severity accepted")
	}
}

func TestReportText(t *testing.T) {
	var buf bytes.Buffer
	fs := Check(abBond("active-backup", func(b *registry.Bond) { b.Miimon = 0 }))
	if err := NewReport(fs).WriteText(&buf, 60); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	mustContain(t, "text", out, "WARNING bond-no-link-monitor: bond0 (active-backup)\n", "\n  why: ", "\n  fix: ",
		"see: linkbeat doctor --guide, \"bonding, every mode\"", "1 finding(s): 0 error(s), 1 warning(s), 0 info. Exit status 1.")
	for _, line := range strings.Split(out, "\n") {
		if len(line) > 60 && !strings.Contains(line, "finding(s)") && strings.Contains(strings.TrimSpace(line), " ") {
			t.Errorf("line longer than 60 columns: %q", line)
		}
	}
	buf.Reset()
	NewReport(nil).WriteText(&buf, 80)
	if buf.String() != "No findings.\n" {
		t.Errorf("empty: %q", buf.String())
	}
}

func TestGuideHasEverySection(t *testing.T) {
	for _, sec := range []string{guideTree, guideSTP, guideBonding, guideActiveBackup, guideLACP, guideALB, guideRoutes, guideLinkbeat} {
		if !strings.Contains(strings.ToLower(Guide), "\n"+strings.ToLower(sec)+"\n") {
			t.Errorf("the guide has no section %q", sec)
		}
	}
	// The seed's decision tree, step by step.
	mustContain(t, "guide", Guide, "1. Do you control the switches", "Yes: STP.  No: bonding: active-backup.",
		"Yes: bonding: 802.3ad.", "Yes: bonding: balance-alb.")
}

// TestDocsListEveryFinding keeps docs/doctor.md in step with the code.
func TestDocsListEveryFinding(t *testing.T) {
	b, err := os.ReadFile("../../docs/doctor.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range allIDs {
		if !bytes.Contains(b, []byte("`"+id+"`")) {
			t.Errorf("docs/doctor.md does not document %s", id)
		}
	}
}
