package deploy

import (
	"os/exec"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

func TestPrometheusRulesCheck(t *testing.T) {
	out, err := exec.Command(promtool(t), "check", "rules", repoFile(t, "deploy/prometheus/rules.yml")).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	t.Logf("%s", strings.TrimSpace(string(out)))
}

// promtool's unit tests feed series and assert the alerts; every alert
// must have a case where it fires and one where it does not.
func TestPrometheusRulesUnitTests(t *testing.T) {
	tool := promtool(t)
	var f struct {
		Tests []struct {
			Name  string `yaml:"name"`
			Cases []struct {
				Alert  string `yaml:"alertname"`
				Alerts []any  `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	if err := yaml.Unmarshal(readFile(t, "deploy/prometheus/rules_test.yml"), &f); err != nil {
		t.Fatal(err)
	}
	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, tc := range f.Tests {
		for _, c := range tc.Cases {
			if len(c.Alerts) > 0 {
				fires[c.Alert] = true
			} else {
				quiet[c.Alert] = true
			}
		}
	}
	for alert := range ruleExprs(t, "deploy/prometheus/rules.yml") {
		if !fires[alert] || !quiet[alert] {
			t.Errorf("alert %s: rules_test.yml has a firing case: %v, a quiet one: %v; want both", alert, fires[alert], quiet[alert])
		}
	}
	cmd := exec.Command(tool, "test", "rules", "rules_test.yml")
	cmd.Dir = repoFile(t, "deploy/prometheus")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
	t.Logf("%s", strings.TrimSpace(string(out)))
}
