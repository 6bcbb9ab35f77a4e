package deploy

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// jsonnet evaluates a snippet against the repository (imports resolve from
// its root) with the jsonnet tool in packaging/go.mod.
func jsonnet(t *testing.T, snippet string) []byte {
	t.Helper()
	cmd := exec.Command("go", "tool", "-modfile=packaging/go.mod", "jsonnet", "-e", snippet)
	cmd.Dir = repoRoot(t)
	cmd.Env = append(os.Environ(), "GOFLAGS=")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("jsonnet: %v\n%s", err, stderr.String())
	}
	return out
}

type mixinRule struct {
	Alert       string            `json:"alert" yaml:"alert"`
	Expr        string            `json:"expr" yaml:"expr"`
	Annotations map[string]string `json:"annotations" yaml:"annotations"`
}

type mixinRules struct {
	Groups []struct {
		Rules []mixinRule `json:"rules" yaml:"rules"`
	} `json:"groups" yaml:"groups"`
}

func (m mixinRules) all() []mixinRule {
	var out []mixinRule
	for _, g := range m.Groups {
		out = append(out, g.Rules...)
	}
	return out
}

// The committed rules.yml is what `make mixin` writes from deploy/mixin.
func TestMixinRulesUpToDate(t *testing.T) {
	out := filepath.Join(t.TempDir(), "rules.yml")
	if o, err := makeCmd(t, "mixin", "MIXIN_OUT="+out); err != nil {
		t.Fatalf("make mixin: %v\n%s", err, o)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, readFile(t, "deploy/prometheus/rules.yml")) {
		t.Error("deploy/prometheus/rules.yml is not what deploy/mixin generates: run `make mixin` and commit the result")
	}
}

var seriesRef = regexp.MustCompile(`\b(up|linkbeat_[a-z_]+)(\{[^}]*\})?`)

// Every series an alert reads is selected by linkbeatSelector: built with
// another selector, no expression names the default job, and each
// reference carries the new selector.
func TestMixinSelectsWithItsSelector(t *testing.T) {
	const sel = `cluster="c1", job="lb-custom"`
	var m mixinRules
	out := jsonnet(t, `((import "deploy/mixin/mixin.libsonnet") + {_config+:: {linkbeatSelector: '`+sel+`'}}).prometheusAlerts`)
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	if len(m.all()) == 0 {
		t.Fatal("the mixin has no alerts")
	}
	for _, r := range m.all() {
		if strings.Contains(r.Expr, `job="linkbeat"`) {
			t.Errorf("%s: still names job=\"linkbeat\": %s", r.Alert, r.Expr)
		}
		refs := seriesRef.FindAllStringSubmatch(r.Expr, -1)
		if len(refs) == 0 {
			t.Errorf("%s: reads no series: %s", r.Alert, r.Expr)
		}
		for _, ref := range refs {
			if !strings.Contains(ref[2], sel) {
				t.Errorf("%s: %s%s is not selected with linkbeatSelector", r.Alert, ref[1], ref[2])
			}
		}
	}
}

// Every alert links its runbook, a section of docs/runbooks.md, and every
// runbook section is an alert's.
func TestRunbooks(t *testing.T) {
	var m mixinRules
	if err := yaml.Unmarshal(readFile(t, "deploy/prometheus/rules.yml"), &m); err != nil {
		t.Fatal(err)
	}
	doc := string(readFile(t, "docs/runbooks.md"))
	sections := map[string]bool{}
	for _, h := range regexp.MustCompile(`(?m)^## (\S+)$`).FindAllStringSubmatch(doc, -1) {
		sections[h[1]] = true
	}
	alerts := map[string]bool{}
	for _, r := range m.all() {
		alerts[r.Alert] = true
		want := "https://github.com/linkbeat/linkbeat/blob/main/docs/runbooks.md#" + strings.ToLower(r.Alert)
		if got := r.Annotations["runbook_url"]; got != want {
			t.Errorf("%s: runbook_url %q, want %q", r.Alert, got, want)
		}
		if !sections[r.Alert] {
			t.Errorf("%s: docs/runbooks.md has no section \"## %s\"", r.Alert, r.Alert)
		}
	}
	for s := range sections {
		if !alerts[s] {
			t.Errorf("docs/runbooks.md: section %s is no alert's", s)
		}
	}
}
