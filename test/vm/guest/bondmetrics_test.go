//go:build vmguest

package guest

import (
	"fmt"
	"maps"
	"math"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/linkbeat/linkbeat/test/testkit"
	dto "github.com/prometheus/client_model/go"
)

// Bond metrics: linkbeat's exporter counts a failover, with its reason
// and duration. See bondnet_test.go for the testbed.

// metricsSnapshot is one parsed scrape of linkbeat's /metrics.
type metricsSnapshot map[string]*dto.MetricFamily

// freeLoopbackAddr returns a 127.0.0.1 address with a port nothing listens
// on now, for --web.listen-address (9089 may be taken by another daemon of
// the test).
func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// scrapeMetrics GETs url and parses the text exposition.
func scrapeMetrics(url string) (metricsSnapshot, error) {
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: nil}}
	resp, err := c.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	fams, err := testkit.Families(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", url, err)
	}
	return metricsSnapshot(fams), nil
}

// series returns the metrics of family name whose labels include labels.
func (s metricsSnapshot) series(name string, labels map[string]string) []*dto.Metric {
	return testkit.Series(s, name, labels)
}

// label is the value of a metric's label k.
func label(m *dto.Metric, k string) string {
	for _, lp := range m.GetLabel() {
		if lp.GetName() == k {
			return lp.GetValue()
		}
	}
	return ""
}

// selector writes name{k="v",...} with the labels in order, for messages.
func selector(name string, labels map[string]string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		parts = append(parts, fmt.Sprintf("%s=%q", k, labels[k]))
	}
	return name + "{" + strings.Join(parts, ",") + "}"
}

// counter is the value of the one counter series of name with exactly
// labels; 0 when the series does not exist (yet).
func (s metricsSnapshot) counter(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	ms := s.series(name, labels)
	switch len(ms) {
	case 0:
		return 0
	case 1:
		return ms[0].GetCounter().GetValue()
	}
	t.Fatalf("%s matches %d series", selector(name, labels), len(ms))
	return 0
}

// counterSum adds up every series of counter name that has labels.
func (s metricsSnapshot) counterSum(name string, labels map[string]string) float64 {
	sum := 0.0
	for _, m := range s.series(name, labels) {
		sum += m.GetCounter().GetValue()
	}
	return sum
}

// histogram is the one histogram series of name with labels; an empty one
// when it does not exist (yet).
func (s metricsSnapshot) histogram(t *testing.T, name string, labels map[string]string) *dto.Histogram {
	t.Helper()
	ms := s.series(name, labels)
	switch len(ms) {
	case 0:
		return &dto.Histogram{}
	case 1:
		return ms[0].GetHistogram()
	}
	t.Fatalf("%s matches %d series", selector(name, labels), len(ms))
	return nil
}

// activeSlaves are the slaves linkbeat_bond_active_slave_info shows at 1
// for bond.
func (s metricsSnapshot) activeSlaves(bond string) []string {
	var out []string
	for _, m := range s.series("linkbeat_bond_active_slave_info", map[string]string{"bond": bond}) {
		if m.GetGauge().GetValue() == 1 {
			out = append(out, label(m, "slave"))
		}
	}
	slices.Sort(out)
	return out
}

// waitMetrics scrapes until cond holds on a scrape and returns that one.
func waitMetrics(t *testing.T, url string, timeout time.Duration, what string, cond func(metricsSnapshot) bool) metricsSnapshot {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var lastErr error
	for {
		s, err := scrapeMetrics(url)
		if err == nil && cond(s) {
			return s
		}
		lastErr = err
		if time.Now().After(deadline) {
			t.Fatalf("no scrape of %s with %s within %v (last error: %v)", url, what, timeout, lastErr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestBondMetrics checks that a failover is counted: linkbeat runs with its
// exporter on a loopback port of its own, the active slave eth0 of an
// active-backup bond (miimon slowMiimon, 500 ms) is cut (QMP) right after a miimon tick,
// and linkbeat switches to eth1 (reason carrier). Scrapes before and after
// show linkbeat_bond_failovers_total{bond="bond0",reason="carrier"} up by
// exactly 1 (and no other reason counted), the failover-duration histogram
// with one more observation, of the duration bonds.json records, in the
// buckets that hold it, and linkbeat_bond_active_slave_info moved from
// eth0 to eth1.
func TestBondMetrics(t *testing.T) {
	requireLinkbeat(t)
	n := newBondNet(t, bondConfig{Mode: "active-backup", Miimon: slowMiimon})
	b := n.Bond
	addr := freeLoopbackAddr(t)
	lb := startBondRun(t, "--web.listen-address", addr)
	// The stream starts after linkbeat, as in TestBondPath (the int3 trap
	// under TCG).
	s := n.startStream(t, streamRate)
	k := openKmsg(t)
	url := "http://" + addr + "/metrics"

	const (
		failovers = "linkbeat_bond_failovers_total"
		duration  = "linkbeat_bond_failover_duration_seconds"
	)
	byBond := map[string]string{"bond": b.Name}
	carrier := map[string]string{"bond": b.Name, "reason": "carrier"}

	before := waitMetrics(t, url, pathEventTimeout, "eth0 as "+b.Name+"'s active slave", func(s metricsSnapshot) bool {
		return slices.Equal(s.activeSlaves(b.Name), []string{"eth0"})
	})
	c0, all0 := before.counter(t, failovers, carrier), before.counterSum(failovers, byBond)
	h0 := before.histogram(t, duration, byBond)
	t.Logf("before: %s = %v (all reasons %v); %s count %d sum %v; active slave %v",
		selector(failovers, carrier), c0, all0, selector(duration, byBond), h0.GetSampleCount(), h0.GetSampleSum(), before.activeSlaves(b.Name))

	n.alignTick(t, lb)
	lm := lb.logMark()
	r := n.cutActive(t, s, k, "eth1")
	t.Logf("eth0 cut: eth1 active after %v; %s", r.SeenAt.Round(time.Millisecond), r.Outage)
	f := checkLinkbeatSwitched(t, lb, lm, b.Name, r, "carrier")
	t.Logf("TIMING metrics: failover duration %v (bonds.json, kernel event to switch confirmed)", f.DurationNs)

	after := waitMetrics(t, url, 10*time.Second, "the failover counted and eth1 active", func(s metricsSnapshot) bool {
		return s.counter(t, failovers, carrier) > c0 && slices.Equal(s.activeSlaves(b.Name), []string{"eth1"})
	})
	c1, all1 := after.counter(t, failovers, carrier), after.counterSum(failovers, byBond)
	h1 := after.histogram(t, duration, byBond)
	t.Logf("after: %s = %v (all reasons %v); %s count %d sum %v; active slave %v",
		selector(failovers, carrier), c1, all1, selector(duration, byBond), h1.GetSampleCount(), h1.GetSampleSum(), after.activeSlaves(b.Name))
	if c1-c0 != 1 {
		t.Errorf("%s went from %v to %v, want +1", selector(failovers, carrier), c0, c1)
	}
	if all1-all0 != 1 {
		t.Errorf("%s over all reasons went from %v to %v, want +1", selector(failovers, byBond), all0, all1)
	}
	if d := h1.GetSampleCount() - h0.GetSampleCount(); d != 1 {
		t.Errorf("%s_count went from %d to %d, want +1", selector(duration, byBond), h0.GetSampleCount(), h1.GetSampleCount())
	}
	dsum := h1.GetSampleSum() - h0.GetSampleSum()
	if !(h1.GetSampleSum() > 0) || !(dsum > 0) {
		t.Errorf("%s_sum went from %v to %v, want it to grow above 0", selector(duration, byBond), h0.GetSampleSum(), h1.GetSampleSum())
	}
	if want := f.DurationNs.Seconds(); math.Abs(dsum-want) > 1e-6 {
		t.Errorf("%s_sum grew by %vs; bonds.json says the failover took %vs", selector(duration, byBond), dsum, want)
	}
	// The observation is in every bucket whose bound holds it, and only
	// there (the buckets are cumulative).
	prev := map[float64]uint64{}
	for _, bk := range h0.GetBucket() {
		prev[bk.GetUpperBound()] = bk.GetCumulativeCount()
	}
	if len(h1.GetBucket()) == 0 {
		t.Errorf("%s has no buckets", selector(duration, byBond))
	}
	for _, bk := range h1.GetBucket() {
		var want uint64
		if f.DurationNs.Seconds() <= bk.GetUpperBound() {
			want = 1
		}
		if d := bk.GetCumulativeCount() - prev[bk.GetUpperBound()]; d != want {
			t.Errorf("%s{bond=%q,le=\"%g\"} grew by %d for a failover of %v, want %d",
				duration, b.Name, bk.GetUpperBound(), d, f.DurationNs, want)
		}
	}
	if got := after.activeSlaves(b.Name); !slices.Equal(got, []string{"eth1"}) {
		t.Errorf("linkbeat_bond_active_slave_info{bond=%q} shows %v at 1, want [eth1]", b.Name, got)
	}
	if ms := after.series("linkbeat_bond_active_slave_info", map[string]string{"bond": b.Name, "slave": "eth0"}); len(ms) > 0 {
		t.Errorf("linkbeat_bond_active_slave_info{bond=%q,slave=\"eth0\"} is still exposed after the switch: %v", b.Name, ms)
	}
	n.restoreSlave(t, "eth0")
}
