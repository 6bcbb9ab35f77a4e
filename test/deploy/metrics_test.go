package deploy

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	dto "github.com/prometheus/client_model/go"
	"go.yaml.in/yaml/v3"

	"github.com/linkbeat/linkbeat/gen"
	"github.com/linkbeat/linkbeat/internal/bond"
	"github.com/linkbeat/linkbeat/internal/carrier"
	"github.com/linkbeat/linkbeat/internal/metrics"
	"github.com/linkbeat/linkbeat/internal/policy"
	"github.com/linkbeat/linkbeat/internal/registry"
	"github.com/linkbeat/linkbeat/internal/script"
	"github.com/linkbeat/linkbeat/internal/traffic"
)

// series is what the exporter serves under one name: its label names, and
// the values each label took.
type series struct {
	labels map[string]map[string]bool
}

// exportedSeries drives linkbeat's real metrics registry through every
// path that creates series — the event-path methods, and the scrape-time
// collectors over a host with bonds (active-backup and 802.3ad), a bridge
// and a real BPF counter map — and returns every name it serves, with the
// _bucket, _sum and _count names of histograms.
func exportedSeries(t *testing.T) map[string]series {
	t.Helper()
	requireRoot(t, "the traffic collector reads a real BPF if_stats map")
	links := []registry.Link{
		{Index: 2, Name: "eth0", Kind: "device", Carrier: true, MasterIndex: 10, BondSlave: &registry.BondSlave{State: "active", MiiStatus: "up"}},
		{Index: 3, Name: "eth1", Kind: "device", MasterIndex: 10, BondSlave: &registry.BondSlave{State: "backup", MiiStatus: "down"}},
		{Index: 4, Name: "eth2", Kind: "device", Carrier: true, MasterIndex: 11, BondSlave: &registry.BondSlave{State: "active", MiiStatus: "up", AggregatorID: 1, ActorState: 61, PartnerState: 61}},
		{Index: 5, Name: "eth3", Kind: "device", Carrier: true, MasterIndex: 12, BridgePort: &registry.BridgePort{State: "forwarding"}},
		{Index: 10, Name: "bond0", Kind: "bond", Carrier: true, Bond: &registry.Bond{Mode: "active-backup", ActiveSlave: 2}},
		{Index: 11, Name: "bond1", Kind: "bond", Carrier: true, Bond: &registry.Bond{Mode: "802.3ad", ActiveSlave: 4}},
		{Index: 12, Name: "br0", Kind: "bridge", Carrier: true},
	}
	m := metrics.New(metrics.Options{Dump: func() ([]registry.Link, error) { return links, nil }})

	spec, err := gen.LoadTraffic()
	if err != nil {
		t.Fatal(err)
	}
	ms := spec.Maps[traffic.MapCounters].Copy()
	ms.Pinning = ebpf.PinNone
	counters, err := ebpf.NewMap(ms)
	if err != nil {
		t.Fatalf("create the if_stats map: %v", err)
	}
	defer counters.Close()
	percpu := make([]gen.TrafficIfCounters, ebpf.MustPossibleCPU())
	percpu[0] = gen.TrafficIfCounters{RxPackets: 1, RxBytes: 100, TxPackets: 1, TxBytes: 100, RxLastNs: 1, TxLastNs: 1, TxErrors: 1, TxTimeouts: 1}
	if err := counters.Put(uint32(2), percpu); err != nil {
		t.Fatal(err)
	}
	m.SetDaemon(metrics.DaemonInfo{
		CarrierSource: carrier.SourceNetlink.String(), TCMechanism: string(traffic.TCX), Tracepoints: true,
		Counters: counters, Pinned: []string{traffic.MapCounters}, Replaced: map[string]string{},
	})

	for _, l := range links {
		m.Link(registry.Change{Kind: registry.Added, Link: l})
	}
	ev := carrier.Event{Time: time.Millisecond, Ifindex: 3, Ifname: "eth1", Up: false, Source: carrier.SourceNetlink}
	m.Carrier(ev)
	m.Reaction(policy.Decision{Ifindex: 3, Ifname: "eth1", Event: ev}, time.Millisecond)
	for _, outcome := range []string{"success", "failure", "timeout", "error"} {
		m.ScriptResult(script.Result{Job: script.Job{Ifname: "eth1"}, Outcome: outcome})
	}
	m.Failover(bond.Failover{Bond: "bond0", From: "eth1", To: "eth0", Reason: "carrier", Duration: time.Millisecond})
	m.Declined(bond.Declined{Bond: "bond0", Slave: "eth1", Reason: "target_not_up"})
	m.SetWithdrawn(map[string]int{"eth1": 2})
	m.Resync("ringbuf_drop")
	m.RingbufDrops(1)

	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]series{}
	add := func(name string, ms []*dto.Metric, extra ...string) {
		s := series{labels: map[string]map[string]bool{}}
		for _, m := range ms {
			for _, lp := range m.GetLabel() {
				if s.labels[lp.GetName()] == nil {
					s.labels[lp.GetName()] = map[string]bool{}
				}
				s.labels[lp.GetName()][lp.GetValue()] = true
			}
		}
		for _, l := range extra {
			s.labels[l] = map[string]bool{}
		}
		out[name] = s
	}
	for _, f := range fams {
		add(f.GetName(), f.GetMetric())
		if f.GetType() == dto.MetricType_HISTOGRAM {
			add(f.GetName()+"_bucket", f.GetMetric(), "le")
			add(f.GetName()+"_sum", f.GetMetric())
			add(f.GetName()+"_count", f.GetMetric())
		}
	}
	for _, scrape := range []string{"linkbeat_scrape_collector_success"} {
		if _, ok := out[scrape]; !ok {
			t.Fatalf("the registry served no %s: the scrape-time collectors did not run", scrape)
		}
	}
	return out
}

var (
	metricRef = regexp.MustCompile(`\b(linkbeat_[A-Za-z0-9_]+)\b(\{[^}]*\})?`)
	matcher   = regexp.MustCompile(`([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"`)
)

// targetLabels are the labels Prometheus adds at scrape, and node, which
// the optional monitors add by relabelling.
var targetLabels = map[string]bool{"job": true, "instance": true, "node": true}

// checkExpr checks every linkbeat_* name and every label matcher of a
// PromQL expression against what the exporter serves: the name must exist,
// a matched label must be one of its labels, and an = or != value must be
// one it takes.
func checkExpr(expr string, served map[string]series) []error {
	var errs []error
	for _, ref := range metricRef.FindAllStringSubmatch(expr, -1) {
		name, sel := ref[1], ref[2]
		s, ok := served[name]
		if !ok {
			errs = append(errs, fmt.Errorf("%s: linkbeat serves no such metric", name))
			continue
		}
		for _, m := range matcher.FindAllStringSubmatch(sel, -1) {
			label, op, value := m[1], m[2], m[3]
			if targetLabels[label] {
				continue
			}
			vals, ok := s.labels[label]
			if !ok {
				errs = append(errs, fmt.Errorf("%s: no label %q (it has %v)", name, label, keys(s.labels)))
				continue
			}
			if (op == "=" || op == "!=") && !strings.Contains(value, "$") && !vals[value] {
				errs = append(errs, fmt.Errorf("%s{%s%s%q}: the exporter never sets %s to %q (seen: %v)", name, label, op, value, label, value, keys(vals)))
			}
		}
	}
	return errs
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// ruleExprs reads every expr of a Prometheus rule file, by rule name.
func ruleExprs(t *testing.T, rel string) map[string]string {
	t.Helper()
	var f struct {
		Groups []struct {
			Rules []struct {
				Alert  string `yaml:"alert"`
				Record string `yaml:"record"`
				Expr   string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(readFile(t, rel), &f); err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
	out := map[string]string{}
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			out[r.Alert+r.Record] = r.Expr
		}
	}
	if len(out) == 0 {
		t.Fatalf("%s: no rules", rel)
	}
	return out
}

// dashboard is the part of a Grafana dashboard these tests read.
type dashboard struct {
	UID           string `json:"uid"`
	SchemaVersion int    `json:"schemaVersion"`
	Templating    struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
	Panels []dashPanel `json:"panels"`
}

type dashPanel struct {
	ID         int                       `json:"id"`
	Type       string                    `json:"type"`
	Title      string                    `json:"title"`
	Datasource json.RawMessage           `json:"datasource"`
	GridPos    *struct{ H, W, X, Y int } `json:"gridPos"`
	Targets    []struct {
		Expr       string          `json:"expr"`
		RefID      string          `json:"refId"`
		Datasource json.RawMessage `json:"datasource"`
	} `json:"targets"`
	Panels []dashPanel `json:"panels"`
}

func readDashboard(t *testing.T) dashboard {
	t.Helper()
	var d dashboard
	if err := json.Unmarshal(readFile(t, "deploy/grafana/linkbeat.json"), &d); err != nil {
		t.Fatalf("deploy/grafana/linkbeat.json: %v", err)
	}
	return d
}

// dashboardExprs returns every PromQL expression of the dashboard: panel
// targets (rows included) and query variables, by where they are.
func dashboardExprs(d dashboard) map[string]string {
	out := map[string]string{}
	var walk func(ps []dashPanel)
	walk = func(ps []dashPanel) {
		for _, p := range ps {
			for _, tg := range p.Targets {
				out[fmt.Sprintf("panel %q %s", p.Title, tg.RefID)] = tg.Expr
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if json.Unmarshal(v.Query, &q) != nil {
			_ = json.Unmarshal(v.Query, &q.Query)
		}
		out["variable "+v.Name] = q.Query
	}
	return out
}

func TestRulesAndDashboardUseServedMetrics(t *testing.T) {
	served := exportedSeries(t)
	exprs := map[string]string{}
	for k, v := range ruleExprs(t, "deploy/prometheus/rules.yml") {
		exprs["rule "+k] = v
	}
	for k, v := range dashboardExprs(readDashboard(t)) {
		exprs["dashboard "+k] = v
	}
	used := map[string]bool{}
	for where, e := range exprs {
		if strings.TrimSpace(e) == "" {
			t.Errorf("%s: empty expression", where)
		}
		for _, err := range checkExpr(e, served) {
			t.Errorf("%s: %v", where, err)
		}
		for _, ref := range metricRef.FindAllStringSubmatch(e, -1) {
			used[ref[1]] = true
		}
	}
	var linkbeat []string
	for name := range served {
		if strings.HasPrefix(name, "linkbeat_") {
			linkbeat = append(linkbeat, name)
		}
	}
	slices.Sort(linkbeat)
	t.Logf("%d expressions use %d of the %d linkbeat series names served: %v", len(exprs), len(used), len(linkbeat), linkbeat)

	// What the check must catch.
	for _, bad := range []string{
		`rate(linkbeat_interface_carrier_change_total[5m])`,
		`linkbeat_bond_slave_mii_status{state="up"}`,
		`linkbeat_bond_slave_mii_status{status="UP"}`,
		`linkbeat_script_runs_total{result!="failed"}`,
	} {
		if len(checkExpr(bad, served)) == 0 {
			t.Errorf("%s passed the check", bad)
		}
	}
}

// Each panel and variable must parse as PromQL: promtool checks them as
// recording rules, with Grafana's variables given values.
func TestDashboardExprsParse(t *testing.T) {
	tool := promtool(t)
	d := readDashboard(t)
	exprs := dashboardExprs(d)
	vars := strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h", "$job", ".*", "$instance", ".*", "$bond", ".*")
	type rule struct {
		Record string `yaml:"record"`
		Expr   string `yaml:"expr"`
	}
	var rules []rule
	names := keys(exprs)
	for i, where := range names {
		e := exprs[where]
		if strings.HasPrefix(where, "variable ") {
			// label_values(SELECTOR, LABEL) is Grafana's, not PromQL: check the selector.
			inner, ok := strings.CutPrefix(e, "label_values(")
			if !ok {
				t.Errorf("%s: %q is not label_values(...)", where, e)
				continue
			}
			e = inner[:strings.LastIndex(inner, ",")]
		}
		rules = append(rules, rule{Record: fmt.Sprintf("dashboard:expr_%d", i), Expr: vars.Replace(e)})
	}
	b, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}})
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "dashboard_rules.yml")
	if err := os.WriteFile(f, b, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(tool, "check", "rules", f).CombinedOutput()
	if err != nil {
		for i, where := range names {
			t.Logf("dashboard:expr_%d is %s", i, where)
		}
		t.Fatalf("promtool check rules on the dashboard's expressions: %v\n%s", err, out)
	}
}

func TestDashboardLayout(t *testing.T) {
	d := readDashboard(t)
	if d.UID == "" || d.SchemaVersion < 36 {
		t.Errorf("uid %q schemaVersion %d: want a uid and schema 36 or later", d.UID, d.SchemaVersion)
	}
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type
	}
	if vars["datasource"] != "datasource" || vars["instance"] != "query" {
		t.Errorf("variables %v: want a datasource variable and an instance query variable", vars)
	}
	ids := map[int]string{}
	var walk func(ps []dashPanel)
	walk = func(ps []dashPanel) {
		for _, p := range ps {
			if prev, ok := ids[p.ID]; ok || p.ID == 0 {
				t.Errorf("panel %q: id %d (also %q)", p.Title, p.ID, prev)
			}
			ids[p.ID] = p.Title
			if p.GridPos == nil || p.GridPos.W == 0 || p.GridPos.H == 0 || p.GridPos.X+p.GridPos.W > 24 {
				t.Errorf("panel %q: gridPos %+v", p.Title, p.GridPos)
			}
			if p.Type != "row" && !strings.Contains(string(p.Datasource), "${datasource}") {
				t.Errorf("panel %q: datasource %s is not the ${datasource} variable", p.Title, p.Datasource)
			}
			for _, tg := range p.Targets {
				if !strings.Contains(tg.Expr, `instance=~"$instance"`) {
					t.Errorf("panel %q %s: ignores the instance variable", p.Title, tg.RefID)
				}
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	// What the operator asked to see, each with the metric that shows it.
	want := map[string]string{
		"carrier state":             "linkbeat_interface_carrier{",
		"flaps":                     "linkbeat_interface_carrier_changes_total",
		"bond failovers":            "linkbeat_bond_failovers_total",
		"failover-duration heatmap": "linkbeat_bond_failover_duration_seconds_bucket",
		"traffic per slave":         "linkbeat_interface_receive_bytes_total",
		"withdrawn routes":          "linkbeat_routes_withdrawn",
		"script failures":           "linkbeat_script_runs_total",
		"carrier source":            "linkbeat_carrier_source_info",
		"tc mechanism":              "linkbeat_tc_mechanism_info",
		"ring-buffer drops":         "linkbeat_ringbuf_drops_total",
	}
	all := strings.Join(slices.Collect(mapValues(dashboardExprs(d))), "\n")
	for what, metric := range want {
		if !strings.Contains(all, metric) {
			t.Errorf("no panel shows %s (%s)", what, metric)
		}
	}
	heat := false
	var find func(ps []dashPanel)
	find = func(ps []dashPanel) {
		for _, p := range ps {
			for _, tg := range p.Targets {
				if p.Type == "heatmap" && strings.Contains(tg.Expr, "linkbeat_bond_failover_duration_seconds_bucket") {
					heat = true
				}
			}
			find(p.Panels)
		}
	}
	find(d.Panels)
	if !heat {
		t.Error("no heatmap panel of linkbeat_bond_failover_duration_seconds_bucket")
	}
}

func mapValues(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for _, v := range m {
			if !yield(v) {
				return
			}
		}
	}
}
