package metrics

import (
	"errors"
	"maps"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/linkbeat/linkbeat/internal/fastpath"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/linkbeat/linkbeat/internal/actions"
	"github.com/linkbeat/linkbeat/internal/bond"
	"github.com/linkbeat/linkbeat/internal/buildinfo"
	"github.com/linkbeat/linkbeat/internal/carrier"
	"github.com/linkbeat/linkbeat/internal/policy"
	"github.com/linkbeat/linkbeat/internal/registry"
	"github.com/linkbeat/linkbeat/internal/routes"
	"github.com/linkbeat/linkbeat/internal/script"
	"github.com/linkbeat/linkbeat/internal/traffic"
)

func newTest(dump func() ([]registry.Link, error)) *Metrics {
	if dump == nil {
		dump = func() ([]registry.Link, error) { return nil, nil }
	}
	return New(Options{Dump: dump})
}

// sliceCollector feeds a pure function's output to testutil.
type sliceCollector []prometheus.Metric

func (s sliceCollector) Describe(chan<- *prometheus.Desc) {}
func (s sliceCollector) Collect(ch chan<- prometheus.Metric) {
	for _, m := range s {
		ch <- m
	}
}

func TestCarrierChangesByDirectionAndState(t *testing.T) {
	m := newTest(nil)
	m.Link(registry.Change{Kind: registry.Added, Link: registry.Link{Index: 2, Name: "eth0", Carrier: true}})
	for _, up := range []bool{false, true, false} {
		m.Carrier(carrier.Event{Ifindex: 2, Ifname: "eth0", Up: up, Source: carrier.SourceNetlink})
	}
	want := `
# HELP linkbeat_interface_carrier Carrier of a monitored interface as linkbeat last saw it: 1 carrier, 0 none.
# TYPE linkbeat_interface_carrier gauge
linkbeat_interface_carrier{interface="eth0"} 0
# HELP linkbeat_interface_carrier_changes_total Carrier changes of a monitored interface, by direction (up, down).
# TYPE linkbeat_interface_carrier_changes_total counter
linkbeat_interface_carrier_changes_total{direction="down",interface="eth0"} 2
linkbeat_interface_carrier_changes_total{direction="up",interface="eth0"} 1
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "linkbeat_interface_carrier", "linkbeat_interface_carrier_changes_total"); err != nil {
		t.Fatal(err)
	}
	m.Link(registry.Change{Kind: registry.Removed, Link: registry.Link{Index: 2, Name: "eth0"}})
	if n := testutil.CollectAndCount(m.carrierChanges.vec); n != 0 {
		t.Fatalf("removed link keeps %d carrier-change series", n)
	}
}

func TestFirstSightCreatesSeriesAtZero(t *testing.T) {
	m := newTest(nil)
	m.Link(registry.Change{Kind: registry.Added, Link: registry.Link{Index: 3, Name: "eth1"}})
	want := `
# HELP linkbeat_interface_carrier_changes_total Carrier changes of a monitored interface, by direction (up, down).
# TYPE linkbeat_interface_carrier_changes_total counter
linkbeat_interface_carrier_changes_total{direction="down",interface="eth1"} 0
linkbeat_interface_carrier_changes_total{direction="up",interface="eth1"} 0
# HELP linkbeat_route_withdrawals_total Routes and nexthop objects withdrawn because the interface lost carrier.
# TYPE linkbeat_route_withdrawals_total counter
linkbeat_route_withdrawals_total{interface="eth1"} 0
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "linkbeat_interface_carrier_changes_total", "linkbeat_route_withdrawals_total"); err != nil {
		t.Fatal(err)
	}
}

func TestResyncsRingDropsScriptsAndDeclined(t *testing.T) {
	m := newTest(nil)
	m.Resync("start")
	m.Resync("netlink_overflow")
	m.Resync("netlink_overflow")
	m.RingbufDrops(7)
	m.ScriptResult(script.Result{Job: script.Job{Ifname: "eth0", Up: false}, Outcome: "success"})
	m.ScriptResult(script.Result{Job: script.Job{Ifname: "eth0", Up: true}, Outcome: "timeout"})
	m.Declined(bond.Declined{Bond: "bond0", Slave: "eth1", Reason: "target_not_up"})
	want := `
# HELP linkbeat_resyncs_total Full netlink resyncs, by reason (start, netlink_overflow, counter_gap, ringbuf_drop).
# TYPE linkbeat_resyncs_total counter
linkbeat_resyncs_total{reason="counter_gap"} 0
linkbeat_resyncs_total{reason="netlink_overflow"} 2
linkbeat_resyncs_total{reason="ringbuf_drop"} 0
linkbeat_resyncs_total{reason="start"} 1
# HELP linkbeat_ringbuf_drops_total Carrier events the BPF ring buffer could not queue (each leads to a resync).
# TYPE linkbeat_ringbuf_drops_total counter
linkbeat_ringbuf_drops_total 7
# HELP linkbeat_script_runs_total Action script runs, by interface, action (up, down) and result (success, failure, timeout, error).
# TYPE linkbeat_script_runs_total counter
linkbeat_script_runs_total{action="down",interface="eth0",result="success"} 1
linkbeat_script_runs_total{action="up",interface="eth0",result="timeout"} 1
# HELP linkbeat_script_timeouts_total Action script runs killed because they outlived their timeout.
# TYPE linkbeat_script_timeouts_total counter
linkbeat_script_timeouts_total{interface="eth0"} 1
# HELP linkbeat_bond_failovers_declined_total Switches linkbeat wanted but left to the bond, by reason.
# TYPE linkbeat_bond_failovers_declined_total counter
linkbeat_bond_failovers_declined_total{bond="bond0",reason="target_not_up"} 1
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "linkbeat_resyncs_total", "linkbeat_ringbuf_drops_total",
		"linkbeat_script_runs_total", "linkbeat_script_timeouts_total", "linkbeat_bond_failovers_declined_total"); err != nil {
		t.Fatal(err)
	}
}

// The failover histogram must tell 50µs from 100µs at the low end and
// still bound a one-second switch.
func TestFailoverHistogramResolves50usTo1s(t *testing.T) {
	if FailoverBuckets[0] != 50e-6 || FailoverBuckets[len(FailoverBuckets)-1] != 1 {
		t.Fatalf("buckets %v: want 50µs first and 1s last", FailoverBuckets)
	}
	m := newTest(nil)
	for _, d := range []time.Duration{40 * time.Microsecond, 80 * time.Microsecond, 700 * time.Millisecond} {
		m.Failover(bond.Failover{Bond: "bond0", From: "eth0", To: "eth1", Reason: bond.ReasonCarrier, By: "linkbeat", Duration: d})
	}
	m.Failover(bond.Failover{Bond: "bond0", From: "eth1", To: "eth0", Reason: bond.ReasonBond, By: "bond"}) // no duration known
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	for _, mf := range mfs {
		switch mf.GetName() {
		case "linkbeat_bond_failover_duration_seconds":
			found[mf.GetName()] = true
			h := mf.GetMetric()[0].GetHistogram()
			if h.GetSampleCount() != 3 {
				t.Errorf("histogram counted %d failovers, want the 3 with a duration", h.GetSampleCount())
			}
			cum := map[float64]uint64{}
			for _, b := range h.GetBucket() {
				cum[b.GetUpperBound()] = b.GetCumulativeCount()
			}
			if cum[50e-6] != 1 || cum[100e-6] != 2 || cum[500e-3] != 2 || cum[1] != 3 {
				t.Errorf("cumulative buckets %v: want 40µs in le=5e-05, 80µs in le=0.0001, 700ms in le=1", cum)
			}
		case "linkbeat_bond_failovers_total":
			found[mf.GetName()] = true
			got := map[string]float64{}
			for _, mm := range mf.GetMetric() {
				got[label(mm, "bond")+" "+label(mm, "reason")] = mm.GetCounter().GetValue()
			}
			if want := map[string]float64{"bond0 carrier": 3, "bond0 bond": 1}; !maps.Equal(got, want) {
				t.Errorf("failovers by bond and reason %v, want %v", got, want)
			}
		}
	}
	for _, name := range []string{"linkbeat_bond_failover_duration_seconds", "linkbeat_bond_failovers_total"} {
		if !found[name] {
			t.Errorf("no %s gathered", name)
		}
	}
}

// label is the value of a series' label, "" when it has none of that name.
func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func TestReactionLatencySkipsFirstSight(t *testing.T) {
	m := newTest(nil)
	ev := carrier.Event{Ifname: "eth0", Time: 5 * time.Second, Source: carrier.SourceFentry}
	m.Reaction(policy.Decision{Ifname: "eth0", Event: ev, Reason: "carrier"}, 300*time.Microsecond)
	m.Reaction(policy.Decision{Ifname: "eth0", Event: carrier.Event{Ifname: "eth0"}, Reason: "initial"}, 0)
	if n := testutil.CollectAndCount(m.reaction.vec); n != 1 {
		t.Fatalf("%d reaction series, want 1 (fentry)", n)
	}
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, mf := range mfs {
		if mf.GetName() == "linkbeat_reaction_latency_seconds" {
			found = true
			if n := len(mf.GetMetric()); n != 1 || label(mf.GetMetric()[0], "source") != "fentry" {
				t.Fatalf("reaction histogram: %d series %v, want one, source fentry", n, mf.GetMetric())
			}
			h := mf.GetMetric()[0].GetHistogram()
			if h.GetSampleCount() != 1 || h.GetSampleSum() != 300e-6 {
				t.Fatalf("reaction histogram: count %d sum %v, want 1 and 0.0003", h.GetSampleCount(), h.GetSampleSum())
			}
		}
	}
	if !found {
		t.Fatal("no linkbeat_reaction_latency_seconds gathered")
	}
}

// The actions' observer counts each route change and follows the
// withdrawn-now snapshot; an interface that had routes withdrawn keeps its
// series, at 0.
func TestRouteChangeCountsAndSnapshots(t *testing.T) {
	m := newTest(nil)
	m.RouteChange(actions.OpDown, "eth1", routes.Result{Withdrawn: 3}, map[string]int{"eth1": 3})
	withdrawn := `
# HELP linkbeat_routes_withdrawn Routes and nexthop objects withdrawn now, by interface.
# TYPE linkbeat_routes_withdrawn gauge
linkbeat_routes_withdrawn{interface="eth1"} %d
`
	check := func(n int) {
		t.Helper()
		if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(strings.Replace(withdrawn, "%d", string(rune('0'+n)), 1)), "linkbeat_routes_withdrawn"); err != nil {
			t.Fatal(err)
		}
	}
	check(3)
	m.RouteChange(actions.OpUp, "eth1", routes.Result{Restored: 3}, map[string]int{})
	check(0) // the series stays, at 0
	m.RouteChange(actions.OpForget, "eth1", routes.Result{}, map[string]int{})
	want := `
# HELP linkbeat_route_restores_total Withdrawn routes and nexthop objects restored because the interface's carrier returned.
# TYPE linkbeat_route_restores_total counter
linkbeat_route_restores_total{interface="eth1"} 3
# HELP linkbeat_route_withdrawals_total Routes and nexthop objects withdrawn because the interface lost carrier.
# TYPE linkbeat_route_withdrawals_total counter
linkbeat_route_withdrawals_total{interface="eth1"} 3
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "linkbeat_route_withdrawals_total", "linkbeat_route_restores_total"); err != nil {
		t.Fatal(err)
	}
}

// A scrape that stalls while collecting a vector holds the vector's read
// lock; the event path must still get through for a link it has seen.
func TestEventPathDoesNotWaitForAStalledScrape(t *testing.T) {
	m := newTest(nil)
	m.Link(registry.Change{Kind: registry.Added, Link: registry.Link{Index: 2, Name: "eth0", Carrier: true}})
	stalled := make(chan prometheus.Metric) // never read: Collect blocks inside the vector
	go m.carrierChanges.vec.Collect(stalled)
	go m.carrierState.vec.Collect(stalled)
	time.Sleep(10 * time.Millisecond)
	// A new series elsewhere takes the write lock and waits behind the
	// stalled reader; RWMutex then holds up new readers too.
	go m.carrierChanges.with("eth9", "up")
	time.Sleep(10 * time.Millisecond)

	done := make(chan struct{})
	go func() {
		m.Carrier(carrier.Event{Ifindex: 2, Ifname: "eth0", Up: false, Source: carrier.SourceNetlink})
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Carrier blocked behind a stalled scrape")
	}
}

func TestTrafficMetricsFromCounters(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	mono := 1000 * time.Second
	counters := map[int]traffic.Counters{
		2: {RxPackets: 10, RxBytes: 1000, RxLastNS: uint64(999 * time.Second), TxPackets: 4, TxBytes: 400, TxErrors: 1, TxTimeouts: 2},
		9: {RxPackets: 5}, // interface gone: no name, left out
	}
	got := trafficMetrics(newDescs(), counters, map[int]string{2: "eth0"}, now, mono)
	want := `
# HELP linkbeat_interface_receive_bytes_total Bytes received, counted by linkbeat's TC ingress program.
# TYPE linkbeat_interface_receive_bytes_total counter
linkbeat_interface_receive_bytes_total{interface="eth0"} 1000
# HELP linkbeat_interface_receive_last_seen_timestamp_seconds Unix time of the last packet received.
# TYPE linkbeat_interface_receive_last_seen_timestamp_seconds gauge
linkbeat_interface_receive_last_seen_timestamp_seconds{interface="eth0"} 1.699999999e+09
# HELP linkbeat_interface_receive_packets_total Packets received, counted by linkbeat's TC ingress program.
# TYPE linkbeat_interface_receive_packets_total counter
linkbeat_interface_receive_packets_total{interface="eth0"} 10
# HELP linkbeat_interface_transmit_bytes_total Bytes sent, counted by linkbeat's TC egress program.
# TYPE linkbeat_interface_transmit_bytes_total counter
linkbeat_interface_transmit_bytes_total{interface="eth0"} 400
# HELP linkbeat_interface_transmit_errors_total Transmissions the driver failed (net_dev_xmit with rc != 0).
# TYPE linkbeat_interface_transmit_errors_total counter
linkbeat_interface_transmit_errors_total{interface="eth0"} 1
# HELP linkbeat_interface_transmit_packets_total Packets sent, counted by linkbeat's TC egress program.
# TYPE linkbeat_interface_transmit_packets_total counter
linkbeat_interface_transmit_packets_total{interface="eth0"} 4
# HELP linkbeat_interface_transmit_timeouts_total Transmit queue timeouts (net_dev_xmit_timeout).
# TYPE linkbeat_interface_transmit_timeouts_total counter
linkbeat_interface_transmit_timeouts_total{interface="eth0"} 2
`
	// TxLastNS 0: never sent, so no transmit last-seen series.
	if err := testutil.CollectAndCompare(sliceCollector(got), strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
}

// The fast path's counters by slave name, its bonds and what is pending.
func TestFastPathMetrics(t *testing.T) {
	status := []fastpath.BondStatus{{Name: "bond0", Live: true}, {Name: "bond1", Why: "off in the config"}}
	stats := map[int]fastpath.Stats{
		11: {TxRedirected: 7, TxSkipped: 1},
		12: {RxRedirected: 3, TxTaken: 7},
		19: {TxTaken: 4}, // slave gone: no name, left out
	}
	got := fastPathMetrics(newDescs(), status, 1, stats, map[int]string{11: "eth0", 12: "eth1"})
	want := `
# HELP linkbeat_bond_fast_path_live 1 if the bond fast path runs for the bond, 0 if it is off for it (linkbeat status says why).
# TYPE linkbeat_bond_fast_path_live gauge
linkbeat_bond_fast_path_live{bond="bond0"} 1
linkbeat_bond_fast_path_live{bond="bond1"} 0
# HELP linkbeat_bond_fast_path_pending Fast failovers in force now: the bond still hands frames to a dead slave, which leave through another.
# TYPE linkbeat_bond_fast_path_pending gauge
linkbeat_bond_fast_path_pending 1
# HELP linkbeat_bond_fast_path_redirected_packets_total Frames the bond fast path redirected, by slave: tx, frames the bond gave this dead slave, sent out of a live one; rx, frames this replacement received, handed to the bond.
# TYPE linkbeat_bond_fast_path_redirected_packets_total counter
linkbeat_bond_fast_path_redirected_packets_total{direction="rx",interface="eth0"} 0
linkbeat_bond_fast_path_redirected_packets_total{direction="rx",interface="eth1"} 3
linkbeat_bond_fast_path_redirected_packets_total{direction="tx",interface="eth0"} 7
linkbeat_bond_fast_path_redirected_packets_total{direction="tx",interface="eth1"} 0
# HELP linkbeat_bond_fast_path_skipped_packets_total Frames for a dead slave the fast path left alone: no replacement with carrier.
# TYPE linkbeat_bond_fast_path_skipped_packets_total counter
linkbeat_bond_fast_path_skipped_packets_total{interface="eth0"} 1
linkbeat_bond_fast_path_skipped_packets_total{interface="eth1"} 0
# HELP linkbeat_bond_fast_path_taken_packets_total Frames of a dead slave the fast path sent out of this live slave: all of them go through the replacement in active-backup, and are spread by flow over the live slaves in the hash modes.
# TYPE linkbeat_bond_fast_path_taken_packets_total counter
linkbeat_bond_fast_path_taken_packets_total{interface="eth0"} 0
linkbeat_bond_fast_path_taken_packets_total{interface="eth1"} 7
`
	if err := testutil.CollectAndCompare(sliceCollector(got), strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
}

func TestLinkMetricsBondsLACPAndSTP(t *testing.T) {
	links := []registry.Link{
		{Index: 10, Name: "bond0", Kind: "bond", Bond: &registry.Bond{Mode: "active-backup", ActiveSlave: 11}},
		{Index: 11, Name: "eth0", MasterIndex: 10, BondSlave: &registry.BondSlave{State: "active", MiiStatus: "up"}},
		{Index: 12, Name: "eth1", MasterIndex: 10, BondSlave: &registry.BondSlave{State: "backup", MiiStatus: "going_down"}},
		{Index: 20, Name: "bond1", Kind: "bond", Bond: &registry.Bond{Mode: "802.3ad"}},
		{Index: 21, Name: "eth2", MasterIndex: 20, BondSlave: &registry.BondSlave{State: "active", MiiStatus: "up", AggregatorID: 1, ActorState: 0x3d, PartnerState: 0x3f}},
		{Index: 30, Name: "br0", Kind: "bridge"},
		{Index: 31, Name: "eth3", MasterIndex: 30, BridgePort: &registry.BridgePort{State: "forwarding"}},
	}
	got := linkMetrics(newDescs(), links)
	want := `
# HELP linkbeat_bond_active_slave_info A bond's current active slave.
# TYPE linkbeat_bond_active_slave_info gauge
linkbeat_bond_active_slave_info{bond="bond0",slave="eth0"} 1
# HELP linkbeat_bond_info A bond and its mode.
# TYPE linkbeat_bond_info gauge
linkbeat_bond_info{bond="bond0",mode="active-backup"} 1
linkbeat_bond_info{bond="bond1",mode="802.3ad"} 1
# HELP linkbeat_bond_slave_ad_actor_oper_port_state 802.3ad: the slave's LACP actor port state bits (activity 1, timeout 2, aggregation 4, synchronization 8, collecting 16, distributing 32, defaulted 64, expired 128).
# TYPE linkbeat_bond_slave_ad_actor_oper_port_state gauge
linkbeat_bond_slave_ad_actor_oper_port_state{bond="bond1",slave="eth2"} 61
# HELP linkbeat_bond_slave_ad_aggregator_id 802.3ad: the aggregator a slave is in.
# TYPE linkbeat_bond_slave_ad_aggregator_id gauge
linkbeat_bond_slave_ad_aggregator_id{bond="bond1",slave="eth2"} 1
# HELP linkbeat_bond_slave_ad_partner_oper_port_state 802.3ad: the partner's LACP port state bits, as for the actor.
# TYPE linkbeat_bond_slave_ad_partner_oper_port_state gauge
linkbeat_bond_slave_ad_partner_oper_port_state{bond="bond1",slave="eth2"} 63
# HELP linkbeat_bond_slave_mii_status A slave's link in its bond's view: 1 for the current status (up, going_down, down, going_back).
# TYPE linkbeat_bond_slave_mii_status gauge
linkbeat_bond_slave_mii_status{bond="bond0",slave="eth0",status="down"} 0
linkbeat_bond_slave_mii_status{bond="bond0",slave="eth0",status="going_back"} 0
linkbeat_bond_slave_mii_status{bond="bond0",slave="eth0",status="going_down"} 0
linkbeat_bond_slave_mii_status{bond="bond0",slave="eth0",status="up"} 1
linkbeat_bond_slave_mii_status{bond="bond0",slave="eth1",status="down"} 0
linkbeat_bond_slave_mii_status{bond="bond0",slave="eth1",status="going_back"} 0
linkbeat_bond_slave_mii_status{bond="bond0",slave="eth1",status="going_down"} 1
linkbeat_bond_slave_mii_status{bond="bond0",slave="eth1",status="up"} 0
linkbeat_bond_slave_mii_status{bond="bond1",slave="eth2",status="down"} 0
linkbeat_bond_slave_mii_status{bond="bond1",slave="eth2",status="going_back"} 0
linkbeat_bond_slave_mii_status{bond="bond1",slave="eth2",status="going_down"} 0
linkbeat_bond_slave_mii_status{bond="bond1",slave="eth2",status="up"} 1
# HELP linkbeat_bond_slave_state A slave's role in its bond's view: 1 for the current state (active, backup).
# TYPE linkbeat_bond_slave_state gauge
linkbeat_bond_slave_state{bond="bond0",slave="eth0",state="active"} 1
linkbeat_bond_slave_state{bond="bond0",slave="eth0",state="backup"} 0
linkbeat_bond_slave_state{bond="bond0",slave="eth1",state="active"} 0
linkbeat_bond_slave_state{bond="bond0",slave="eth1",state="backup"} 1
linkbeat_bond_slave_state{bond="bond1",slave="eth2",state="active"} 1
linkbeat_bond_slave_state{bond="bond1",slave="eth2",state="backup"} 0
# HELP linkbeat_bridge_port_stp_state A bridge port's STP state: 1 for the current one (disabled, listening, learning, forwarding, blocking).
# TYPE linkbeat_bridge_port_stp_state gauge
linkbeat_bridge_port_stp_state{bridge="br0",port="eth3",state="blocking"} 0
linkbeat_bridge_port_stp_state{bridge="br0",port="eth3",state="disabled"} 0
linkbeat_bridge_port_stp_state{bridge="br0",port="eth3",state="forwarding"} 1
linkbeat_bridge_port_stp_state{bridge="br0",port="eth3",state="learning"} 0
linkbeat_bridge_port_stp_state{bridge="br0",port="eth3",state="listening"} 0
`
	if err := testutil.CollectAndCompare(sliceCollector(got), strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
}

func TestStateMetricsInfoAndReplacedMaps(t *testing.T) {
	got := stateMetrics(newDescs(), &DaemonInfo{CarrierSource: "netlink", TCMechanism: "clsact", Tracepoints: false,
		Pinned: []string{"if_stats", "link_state"}, Replaced: map[string]string{"if_stats": "value: struct if_counters: size 64 changed to 72"}},
		map[string]int{"eth1": 2})
	want := `
# HELP linkbeat_carrier_source_info The live carrier source (fentry, kprobe or netlink).
# TYPE linkbeat_carrier_source_info gauge
linkbeat_carrier_source_info{source="netlink"} 1
# HELP linkbeat_pinned_map_replaced 1 when this run replaced a pinned map because its layout changed, losing its contents; 0 when it reused it.
# TYPE linkbeat_pinned_map_replaced gauge
linkbeat_pinned_map_replaced{map="if_stats"} 1
linkbeat_pinned_map_replaced{map="link_state"} 0
# HELP linkbeat_routes_withdrawn Routes and nexthop objects withdrawn now, by interface.
# TYPE linkbeat_routes_withdrawn gauge
linkbeat_routes_withdrawn{interface="eth1"} 2
# HELP linkbeat_tc_mechanism_info The live TC attachment (tcx, clsact, or none when traffic counting is off).
# TYPE linkbeat_tc_mechanism_info gauge
linkbeat_tc_mechanism_info{mechanism="clsact"} 1
# HELP linkbeat_tracepoints_enabled Whether transmit errors and timeouts are counted (1) or the tracepoints were refused (0).
# TYPE linkbeat_tracepoints_enabled gauge
linkbeat_tracepoints_enabled 0
`
	if err := testutil.CollectAndCompare(sliceCollector(got), strings.NewReader(want), "linkbeat_carrier_source_info", "linkbeat_pinned_map_replaced",
		"linkbeat_routes_withdrawn", "linkbeat_tc_mechanism_info", "linkbeat_tracepoints_enabled"); err != nil {
		t.Fatal(err)
	}
}

// linkbeat_build_info is client_golang's version collector's, with the
// version the Makefile stamps into buildinfo.
func TestBuildInfo(t *testing.T) {
	m := newTest(nil)
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var found int
	for _, f := range fams {
		if f.GetName() != "linkbeat_build_info" {
			continue
		}
		for _, s := range f.GetMetric() {
			found++
			got := map[string]string{}
			for _, l := range s.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			for _, name := range []string{"version", "revision", "branch", "goversion", "goos", "goarch", "tags"} {
				if _, ok := got[name]; !ok {
					t.Errorf("linkbeat_build_info has no %s label: %v", name, got)
				}
			}
			if got["version"] != buildinfo.Version || got["goversion"] != runtime.Version() || s.GetGauge().GetValue() != 1 {
				t.Errorf("linkbeat_build_info %v = %v, want version %s, goversion %s, value 1", got, s.GetGauge().GetValue(), buildinfo.Version, runtime.Version())
			}
		}
	}
	if found != 1 {
		t.Fatalf("%d linkbeat_build_info series, want 1", found)
	}
}

// A failing netlink dump costs its collectors' series, not the scrape:
// the rest is served and the failure shows as success 0.
func TestCollectorFailureIsVisibleNotFatal(t *testing.T) {
	m := newTest(func() ([]registry.Link, error) { return nil, errors.New("netlink: EPERM") })
	m.Resync("start")
	want := `
# HELP linkbeat_scrape_collector_success Whether a collector of the last scrape read its source: 1 yes, 0 no (the daemon logs why).
# TYPE linkbeat_scrape_collector_success gauge
linkbeat_scrape_collector_success{collector="fastpath"} 1
linkbeat_scrape_collector_success{collector="links"} 0
linkbeat_scrape_collector_success{collector="paths"} 1
linkbeat_scrape_collector_success{collector="state"} 1
linkbeat_scrape_collector_success{collector="traffic"} 1
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "linkbeat_scrape_collector_success"); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(m.resyncs.vec); n != len(ResyncReasons) {
		t.Fatalf("%d resync series, want %d", n, len(ResyncReasons))
	}
}

// promlint is what `promtool check metrics` runs: every series linkbeat
// can produce must pass it without a problem.
func TestEveryMetricPassesPromlint(t *testing.T) {
	links := []registry.Link{
		{Index: 2, Name: "eth0"},
		{Index: 10, Name: "bond0", Kind: "bond", Bond: &registry.Bond{Mode: "802.3ad", ActiveSlave: 11}},
		{Index: 11, Name: "eth1", MasterIndex: 10, BondSlave: &registry.BondSlave{State: "active", MiiStatus: "up"}},
		{Index: 30, Name: "br0", Kind: "bridge"},
		{Index: 31, Name: "eth3", MasterIndex: 30, BridgePort: &registry.BridgePort{State: "forwarding"}},
	}
	m := newTest(func() ([]registry.Link, error) { return links, nil })
	m.SetDaemon(DaemonInfo{CarrierSource: "fentry", TCMechanism: "tcx", Tracepoints: true, Pinned: []string{"if_stats"}})
	m.Link(registry.Change{Kind: registry.Added, Link: links[0]})
	m.Carrier(carrier.Event{Ifname: "eth0", Up: false, Time: time.Second, Source: carrier.SourceFentry})
	m.Reaction(policy.Decision{Ifname: "eth0", Event: carrier.Event{Ifname: "eth0", Time: time.Second, Source: carrier.SourceFentry}}, time.Millisecond)
	m.RouteChange(actions.OpDown, "eth0", routes.Result{Withdrawn: 1}, map[string]int{"eth0": 1})
	m.ScriptResult(script.Result{Job: script.Job{Ifname: "eth0"}, Outcome: "timeout"})
	m.Failover(bond.Failover{Bond: "bond0", Reason: bond.ReasonCarrier, Duration: time.Millisecond})
	m.Declined(bond.Declined{Bond: "bond0", Reason: "no_live_slave"})
	m.RingbufDrops(1)
	all := append(sliceCollector{}, trafficMetrics(newDescs(), map[int]traffic.Counters{2: {RxPackets: 1, RxLastNS: 1, TxLastNS: 1}}, map[int]string{2: "eth0"}, time.Now(), time.Hour)...)
	reg := prometheus.NewRegistry()
	reg.MustRegister(all)
	for _, g := range []prometheus.Gatherer{m.Registry(), reg} {
		problems, err := testutil.GatherAndLint(g)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range problems {
			t.Errorf("%s: %s", p.Metric, p.Text)
		}
	}
}

func TestWebListenStateAndFailures(t *testing.T) {
	m := newTest(nil)
	m.WebListen("127.0.0.1:9089", false, true)
	m.WebListen("127.0.0.1:9089", false, true)
	m.WebListen("[::1]:9089", true, false)
	m.WebListen("127.0.0.1:9089", true, false)
	want := `
# HELP linkbeat_web_listen_failures_total Failed attempts to listen on a --web.listen-address (each is retried with backoff; failover runs on).
# TYPE linkbeat_web_listen_failures_total counter
linkbeat_web_listen_failures_total{address="127.0.0.1:9089"} 2
linkbeat_web_listen_failures_total{address="[::1]:9089"} 0
# HELP linkbeat_web_listen_up Whether the exporter listens on a --web.listen-address: 1 yes, 0 no (binding it failed; retried). Seen only through an address that does listen.
# TYPE linkbeat_web_listen_up gauge
linkbeat_web_listen_up{address="127.0.0.1:9089"} 1
linkbeat_web_listen_up{address="[::1]:9089"} 1
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "linkbeat_web_listen_up", "linkbeat_web_listen_failures_total"); err != nil {
		t.Fatal(err)
	}
}
