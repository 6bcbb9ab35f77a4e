package metrics

import (
	"errors"
	"log/slog"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/linkbeat/linkbeat/internal/registry"
	"github.com/linkbeat/linkbeat/internal/traffic"
)

// collector is one source of scrape-time metrics, as in node_exporter: one
// method, which reads its source and sends what it found.
type collector interface {
	Update(ch chan<- prometheus.Metric) error
}

// errNoData marks a collector with nothing to read (traffic counting off,
// daemon not opened yet): not a failure.
var errNoData = errors.New("no data")

// exporter runs the collectors at each scrape and reports how each fared.
type exporter struct {
	log        *slog.Logger
	collectors map[string]collector
	success    *prometheus.Desc
	duration   *prometheus.Desc
}

func newExporter(m *Metrics, opts Options) *exporter {
	d := newDescs()
	dump := newSharedDump(opts.Dump, opts.Now).get
	return &exporter{
		log: opts.Log,
		collectors: map[string]collector{
			"traffic":  &trafficCollector{d: d, m: m, dump: dump, now: opts.Now, mono: opts.Monotonic},
			"links":    &linksCollector{d: d, dump: dump},
			"state":    &stateCollector{d: d, m: m},
			"paths":    &pathsCollector{d: newPathDescs(), m: m, dump: dump, now: opts.Now, mono: opts.Monotonic},
			"fastpath": &fastPathCollector{d: d, m: m, dump: dump},
		},
		success: prometheus.NewDesc(namespace+"_scrape_collector_success",
			"Whether a collector of the last scrape read its source: 1 yes, 0 no (the daemon logs why).", []string{"collector"}, nil),
		duration: prometheus.NewDesc(namespace+"_scrape_collector_duration_seconds",
			"How long a collector of the last scrape took.", []string{"collector"}, nil),
	}
}

// Describe sends nothing: the exporter is unchecked, its series depend on
// the host's links.
func (e *exporter) Describe(chan<- *prometheus.Desc) {}

func (e *exporter) Collect(ch chan<- prometheus.Metric) {
	names := make([]string, 0, len(e.collectors))
	for n := range e.collectors {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, name := range names {
		start := time.Now()
		err := e.collectors[name].Update(ch)
		ok := 1.0
		if err != nil && !errors.Is(err, errNoData) {
			// The rest of the scrape stands: say which part is missing.
			ok = 0
			e.log.Warn("metrics collector failed", "collector", name, "err", err)
		}
		ch <- prometheus.MustNewConstMetric(e.duration, prometheus.GaugeValue, time.Since(start).Seconds(), name)
		ch <- prometheus.MustNewConstMetric(e.success, prometheus.GaugeValue, ok, name)
	}
}

// descs are the scrape-time metrics' descriptions.
type descs struct {
	rxPackets, rxBytes, txPackets, txBytes, txErrors, txTimeouts *prometheus.Desc
	rxLastSeen, txLastSeen                                       *prometheus.Desc

	bondInfo, bondActive, slaveState, slaveMii          *prometheus.Desc
	slaveAggregator, slaveActorState, slavePartnerState *prometheus.Desc
	bridgeSTP                                           *prometheus.Desc

	carrierSource, tcMechanism, tracepoints, mapReplaced, withdrawn *prometheus.Desc

	fpRedirected, fpSkipped, fpTaken, fpLive, fpPending *prometheus.Desc
}

func newDescs() *descs {
	n := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(namespace+"_"+name, help, labels, nil)
	}
	return &descs{
		rxPackets:  n("interface_receive_packets_total", "Packets received, counted by linkbeat's TC ingress program.", "interface"),
		rxBytes:    n("interface_receive_bytes_total", "Bytes received, counted by linkbeat's TC ingress program.", "interface"),
		txPackets:  n("interface_transmit_packets_total", "Packets sent, counted by linkbeat's TC egress program.", "interface"),
		txBytes:    n("interface_transmit_bytes_total", "Bytes sent, counted by linkbeat's TC egress program.", "interface"),
		txErrors:   n("interface_transmit_errors_total", "Transmissions the driver failed (net_dev_xmit with rc != 0).", "interface"),
		txTimeouts: n("interface_transmit_timeouts_total", "Transmit queue timeouts (net_dev_xmit_timeout).", "interface"),
		rxLastSeen: n("interface_receive_last_seen_timestamp_seconds", "Unix time of the last packet received.", "interface"),
		txLastSeen: n("interface_transmit_last_seen_timestamp_seconds", "Unix time of the last packet sent.", "interface"),

		bondInfo:          n("bond_info", "A bond and its mode.", "bond", "mode"),
		bondActive:        n("bond_active_slave_info", "A bond's current active slave.", "bond", "slave"),
		slaveState:        n("bond_slave_state", "A slave's role in its bond's view: 1 for the current state (active, backup).", "bond", "slave", "state"),
		slaveMii:          n("bond_slave_mii_status", "A slave's link in its bond's view: 1 for the current status (up, going_down, down, going_back).", "bond", "slave", "status"),
		slaveAggregator:   n("bond_slave_ad_aggregator_id", "802.3ad: the aggregator a slave is in.", "bond", "slave"),
		slaveActorState:   n("bond_slave_ad_actor_oper_port_state", "802.3ad: the slave's LACP actor port state bits (activity 1, timeout 2, aggregation 4, synchronization 8, collecting 16, distributing 32, defaulted 64, expired 128).", "bond", "slave"),
		slavePartnerState: n("bond_slave_ad_partner_oper_port_state", "802.3ad: the partner's LACP port state bits, as for the actor.", "bond", "slave"),
		bridgeSTP:         n("bridge_port_stp_state", "A bridge port's STP state: 1 for the current one (disabled, listening, learning, forwarding, blocking).", "bridge", "port", "state"),

		carrierSource: n("carrier_source_info", "The live carrier source (fentry, kprobe or netlink).", "source"),
		tcMechanism:   n("tc_mechanism_info", "The live TC attachment (tcx, clsact, or none when traffic counting is off).", "mechanism"),
		tracepoints:   n("tracepoints_enabled", "Whether transmit errors and timeouts are counted (1) or the tracepoints were refused (0).", nil...),
		mapReplaced:   n("pinned_map_replaced", "1 when this run replaced a pinned map because its layout changed, losing its contents; 0 when it reused it.", "map"),
		withdrawn:     n("routes_withdrawn", "Routes and nexthop objects withdrawn now, by interface.", "interface"),

		fpRedirected: n("bond_fast_path_redirected_packets_total", "Frames the bond fast path redirected, by slave: tx, frames the bond gave this dead slave, sent out of a live one; rx, frames this replacement received, handed to the bond.", "interface", "direction"),
		fpSkipped:    n("bond_fast_path_skipped_packets_total", "Frames for a dead slave the fast path left alone: no replacement with carrier.", "interface"),
		fpTaken:      n("bond_fast_path_taken_packets_total", "Frames of a dead slave the fast path sent out of this live slave: all of them go through the replacement in active-backup, and are spread by flow over the live slaves in the hash modes.", "interface"),
		fpLive:       n("bond_fast_path_live", "1 if the bond fast path runs for the bond, 0 if it is off for it (linkbeat status says why).", "bond"),
		fpPending:    n("bond_fast_path_pending", "Fast failovers in force now: the bond still hands frames to a dead slave, which leave through another.", nil...),
	}
}

// trafficCollector reads the BPF counter map.
type trafficCollector struct {
	d    *descs
	m    *Metrics
	dump func() ([]registry.Link, error)
	now  func() time.Time
	mono func() time.Duration
}

func (c *trafficCollector) Update(ch chan<- prometheus.Metric) error {
	info := c.m.daemon.Load()
	if info == nil || info.Counters == nil {
		return errNoData
	}
	counters, err := traffic.ReadAll(info.Counters)
	if err != nil {
		return err
	}
	links, err := c.dump()
	if err != nil {
		return err
	}
	for _, m := range trafficMetrics(c.d, counters, linkNames(links), c.now(), c.mono()) {
		ch <- m
	}
	return nil
}

// linkNames are the dump's link names by ifindex.
func linkNames(links []registry.Link) map[int]string {
	names := make(map[int]string, len(links))
	for _, l := range links {
		names[l.Index] = l.Name
	}
	return names
}

// trafficMetrics turns counters into metrics. Entries of interfaces that
// are gone (no name) are left out; last-seen times are turned from
// CLOCK_MONOTONIC into Unix time with the two clocks read together.
func trafficMetrics(d *descs, counters map[int]traffic.Counters, names map[int]string, now time.Time, mono time.Duration) []prometheus.Metric {
	var out []prometheus.Metric
	idx := make([]int, 0, len(counters))
	for i := range counters {
		idx = append(idx, i)
	}
	slices.Sort(idx)
	counter := func(desc *prometheus.Desc, v uint64, name string) {
		out = append(out, prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(v), name))
	}
	lastSeen := func(desc *prometheus.Desc, ns uint64, name string) {
		if ns == 0 || time.Duration(ns) > mono {
			return // never, or from another boot's clock
		}
		at := now.Add(-(mono - time.Duration(ns)))
		out = append(out, prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, float64(at.UnixNano())/1e9, name))
	}
	for _, i := range idx {
		name, ok := names[i]
		if !ok {
			continue
		}
		c := counters[i]
		counter(d.rxPackets, c.RxPackets, name)
		counter(d.rxBytes, c.RxBytes, name)
		counter(d.txPackets, c.TxPackets, name)
		counter(d.txBytes, c.TxBytes, name)
		counter(d.txErrors, c.TxErrors, name)
		counter(d.txTimeouts, c.TxTimeouts, name)
		lastSeen(d.rxLastSeen, c.RxLastNS, name)
		lastSeen(d.txLastSeen, c.TxLastNS, name)
	}
	return out
}

// linksCollector reads bonds and bridge ports from a netlink dump.
type linksCollector struct {
	d    *descs
	dump func() ([]registry.Link, error)
}

func (c *linksCollector) Update(ch chan<- prometheus.Metric) error {
	links, err := c.dump()
	if err != nil {
		return err
	}
	for _, m := range linkMetrics(c.d, links) {
		ch <- m
	}
	return nil
}

var (
	slaveStates  = []string{"active", "backup"}
	miiStatuses  = []string{"up", "going_down", "down", "going_back"}
	bridgeStates = []string{"disabled", "listening", "learning", "forwarding", "blocking"}
)

// linkMetrics describes bonds, their slaves in the bond's view, and bridge
// ports' STP states.
func linkMetrics(d *descs, links []registry.Link) []prometheus.Metric {
	byIndex := make(map[int]registry.Link, len(links))
	for _, l := range links {
		byIndex[l.Index] = l
	}
	var out []prometheus.Metric
	gauge := func(desc *prometheus.Desc, v float64, labels ...string) {
		out = append(out, prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, v, labels...))
	}
	stateSet := func(desc *prometheus.Desc, all []string, cur string, labels ...string) {
		for _, s := range all {
			v := 0.0
			if s == cur {
				v = 1
			}
			gauge(desc, v, append(labels, s)...)
		}
		if cur != "" && !slices.Contains(all, cur) {
			gauge(desc, 1, append(labels, cur)...)
		}
	}
	for _, l := range links {
		if l.Bond != nil {
			gauge(d.bondInfo, 1, l.Name, l.Bond.Mode)
			if a, ok := byIndex[l.Bond.ActiveSlave]; ok && l.Bond.ActiveSlave != 0 {
				gauge(d.bondActive, 1, l.Name, a.Name)
			}
		}
		master, hasMaster := byIndex[l.MasterIndex]
		if !hasMaster || l.MasterIndex == 0 {
			continue
		}
		if s := l.BondSlave; s != nil {
			stateSet(d.slaveState, slaveStates, s.State, master.Name, l.Name)
			stateSet(d.slaveMii, miiStatuses, s.MiiStatus, master.Name, l.Name)
			if master.Bond != nil && master.Bond.Mode == "802.3ad" {
				gauge(d.slaveAggregator, float64(s.AggregatorID), master.Name, l.Name)
				gauge(d.slaveActorState, float64(s.ActorState), master.Name, l.Name)
				gauge(d.slavePartnerState, float64(s.PartnerState), master.Name, l.Name)
			}
		}
		if p := l.BridgePort; p != nil {
			stateSet(d.bridgeSTP, bridgeStates, p.State, master.Name, l.Name)
		}
	}
	return out
}

// stateCollector sends what needs no I/O: feature info, and the
// snapshots the event path publishes.
type stateCollector struct {
	d *descs
	m *Metrics
}

func (c *stateCollector) Update(ch chan<- prometheus.Metric) error {
	var withdrawn map[string]int
	if w := c.m.withdrawn.Load(); w != nil {
		withdrawn = *w
	}
	for _, m := range stateMetrics(c.d, c.m.daemon.Load(), withdrawn) {
		ch <- m
	}
	return nil
}

func stateMetrics(d *descs, info *DaemonInfo, withdrawn map[string]int) []prometheus.Metric {
	var out []prometheus.Metric
	gauge := func(desc *prometheus.Desc, v float64, labels ...string) {
		out = append(out, prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, v, labels...))
	}
	if info != nil {
		gauge(d.carrierSource, 1, info.CarrierSource)
		gauge(d.tcMechanism, 1, info.TCMechanism)
		tp := 0.0
		if info.Tracepoints {
			tp = 1
		}
		gauge(d.tracepoints, tp)
		for _, name := range info.Pinned {
			v := 0.0
			if _, ok := info.Replaced[name]; ok {
				v = 1
			}
			gauge(d.mapReplaced, v, name)
		}
	}
	names := make([]string, 0, len(withdrawn))
	for n := range withdrawn {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		gauge(d.withdrawn, float64(withdrawn[n]), n)
	}
	return out
}
