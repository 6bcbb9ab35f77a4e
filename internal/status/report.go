package status

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/linkbeat/linkbeat/internal/bond"
	"github.com/linkbeat/linkbeat/internal/carrier"
	"github.com/linkbeat/linkbeat/internal/fastpath"
	"github.com/linkbeat/linkbeat/internal/pathmon"
	"github.com/linkbeat/linkbeat/internal/registry"
	"github.com/linkbeat/linkbeat/internal/routes"
	"github.com/linkbeat/linkbeat/internal/traffic"
)

// Inputs is everything status reads, gathered by the command.
type Inputs struct {
	Links []registry.Link
	// Counters and LinkStates come from the pinned maps; nil when there
	// are no pins (no daemon has run with this --bpffs-dir).
	Counters   map[int]traffic.Counters
	LinkStates map[int]traffic.LinkState
	// Paths are the path monitor's pinned counters (arp_replies,
	// ns_replies); nil when none are pinned.
	Paths []pathmon.Reply
	Bonds bond.State
	// FastPath is each bond's fast path as the daemon recorded it, and
	// FastRedirects the redirects in force now, by bond ifindex (from the
	// pinned map; nil without it).
	FastPath      map[string]fastpath.BondStatus
	FastRedirects map[int]fastpath.Redirect
	Withdrawn     []routes.WithdrawnLink
	// Sources is what the last daemon recorded at start; nil if none did.
	Sources *Sources
	// Running says whether that daemon's process is alive.
	Running bool
	// Exporter is what a daemon last recorded of its metrics exporter; nil
	// if none did.
	Exporter *Exporter
	BpffsDir string
	// Now and Mono are the wall clock and CLOCK_MONOTONIC, read together,
	// to turn the kernel's timestamps into times.
	Now  time.Time
	Mono time.Duration
}

// Report is `linkbeat status --json`.
type Report struct {
	Daemon    Daemon                 `json:"daemon"`
	Links     []Link                 `json:"links"`
	Bonds     []Bond                 `json:"bonds"`
	Withdrawn []routes.WithdrawnLink `json:"withdrawn_routes"`
}

// Daemon is the daemon's state and the paths it found live.
type Daemon struct {
	Running bool `json:"running"`
	// Recorded: a daemon recorded its sources in the state directory.
	Recorded      bool              `json:"recorded"`
	PID           int               `json:"pid,omitempty"`
	Started       *time.Time        `json:"started,omitempty"`
	Version       string            `json:"version,omitempty"`
	CarrierSource string            `json:"carrier_source,omitempty"`
	TCMechanism   string            `json:"tc_mechanism,omitempty"`
	Tracepoints   bool              `json:"tracepoints"`
	BpffsDir      string            `json:"bpffs_dir"`
	Pinned        bool              `json:"pinned"`
	ReplacedMaps  map[string]string `json:"replaced_maps,omitempty"`
	// Exporter is the running daemon's metrics listeners; left out when
	// no daemon runs, as an old record would mislead.
	Exporter []Listener `json:"exporter,omitempty"`
}

// Link is one interface.
type Link struct {
	Ifindex int    `json:"ifindex"`
	Name    string `json:"name"`
	Kind    string `json:"kind"`
	Master  string `json:"master,omitempty"`
	Carrier bool   `json:"carrier"`
	// Monitored: linkbeat counts this interface (it has pinned counters).
	Monitored bool `json:"monitored"`
	// LastChange is the last carrier change linkbeat saw, with the path
	// that reported it; nil when it saw none (see LastChangeNote).
	LastChange       *time.Time `json:"last_change,omitempty"`
	LastChangeSource string     `json:"last_change_source,omitempty"`
	LastChangeNote   string     `json:"last_change_note,omitempty"`
	Counters         *Counters  `json:"counters,omitempty"`
	RxLastSeen       *time.Time `json:"rx_last_seen,omitempty"`
	TxLastSeen       *time.Time `json:"tx_last_seen,omitempty"`
	// StpState is a bridge port's STP state (forwarding, blocking...).
	StpState string `json:"stp_state,omitempty"`
}

// Counters are an interface's pinned counters.
type Counters struct {
	RxPackets  uint64 `json:"rx_packets"`
	RxBytes    uint64 `json:"rx_bytes"`
	TxPackets  uint64 `json:"tx_packets"`
	TxBytes    uint64 `json:"tx_bytes"`
	TxErrors   uint64 `json:"tx_errors"`
	TxTimeouts uint64 `json:"tx_timeouts"`
}

// Bond is a bond in its own view.
type Bond struct {
	Name         string    `json:"name"`
	Mode         string    `json:"mode"`
	ActiveSlave  string    `json:"active_slave"`
	Primary      string    `json:"primary"`
	Slaves       []Slave   `json:"slaves"`
	LastFailover *Failover `json:"last_failover,omitempty"`
	// FastPath is linkbeat's fast path for the bond; nil when no daemon
	// recorded it.
	FastPath *FastPath `json:"fast_path,omitempty"`
	// Options are the bond's monitoring and failover settings.
	Options registry.Bond `json:"options"`
}

// Slave is a bond port in its bond's view.
type Slave struct {
	Name      string `json:"name"`
	Carrier   bool   `json:"carrier"`
	State     string `json:"state"`
	MiiStatus string `json:"mii_status"`
	// 802.3ad only.
	AggregatorID *uint16    `json:"ad_aggregator_id,omitempty"`
	ActorState   *uint8     `json:"ad_actor_oper_port_state,omitempty"`
	PartnerState *uint16    `json:"ad_partner_oper_port_state,omitempty"`
	RxLastSeen   *time.Time `json:"rx_last_seen,omitempty"`
	// RxShare and TxShare are the slave's part of its bond's bytes since
	// counting began (balance-tlb/alb spread load by them).
	RxShare *float64 `json:"rx_share,omitempty"`
	TxShare *float64 `json:"tx_share,omitempty"`
	// Paths are the answers to linkbeat's path probes through the slave,
	// per target: ARP replies or neighbour advertisements.
	Paths []PathTarget `json:"paths,omitempty"`
}

// PathTarget is one target's answers through one slave.
type PathTarget struct {
	Target   string     `json:"target"`
	Probe    string     `json:"probe"` // arp or ns
	Replies  uint64     `json:"replies"`
	LastSeen *time.Time `json:"last_seen,omitempty"`
}

// FastPath is a bond's fast path: whether it runs, why not, the redirect
// in force now and the last fast failover.
type FastPath struct {
	Live    bool      `json:"live"`
	Why     string    `json:"why_not,omitempty"`
	Pending *Pending  `json:"pending,omitempty"`
	Last    *Failover `json:"last_fast_failover,omitempty"`
}

// Pending is a fast failover in force: the bond still hands frames to
// From, which leave through To.
type Pending struct {
	From string `json:"from"`
	To   string `json:"to"`
	// Spread, in the hash modes (802.3ad, balance-xor), are the live
	// slaves the dead one's flows are spread over by flow hash; To is the
	// first of them.
	Spread  []string   `json:"spread,omitempty"`
	Since   *time.Time `json:"since,omitempty"`
	Expires *time.Time `json:"expires,omitempty"`
	// FirstRedirectNS is from the driver's call to the first redirected
	// frame (0: none yet).
	FirstRedirectNS int64 `json:"first_redirect_ns"`
}

// Failover is a bond's last change of active slave.
type Failover struct {
	From       string    `json:"from"`
	To         string    `json:"to"`
	Reason     string    `json:"reason"`
	By         string    `json:"by"`
	At         time.Time `json:"at"`
	DurationNS int64     `json:"duration_ns"`
}

// Build joins the inputs. Loopback is left out.
func Build(in Inputs) Report {
	r := Report{Links: []Link{}, Bonds: []Bond{}, Withdrawn: in.Withdrawn}
	if r.Withdrawn == nil {
		r.Withdrawn = []routes.WithdrawnLink{}
	}
	r.Daemon = buildDaemon(in)
	bd := builder{in: in, byIndex: map[int]registry.Link{}, links: slices.Clone(in.Links)}
	for _, l := range in.Links {
		bd.byIndex[l.Index] = l
	}
	slices.SortFunc(bd.links, func(a, b registry.Link) int { return a.Index - b.Index })
	for _, l := range bd.links {
		if l.Loopback {
			continue
		}
		r.Links = append(r.Links, bd.link(l))
		if l.Bond != nil {
			r.Bonds = append(r.Bonds, bd.bond(l))
		}
	}
	return r
}

func buildDaemon(in Inputs) Daemon {
	d := Daemon{Running: in.Running, BpffsDir: in.BpffsDir, Pinned: in.Counters != nil}
	if s := in.Sources; s != nil {
		started := s.Started
		d.Recorded, d.PID, d.Started, d.Version = true, s.PID, &started, s.Version
		d.CarrierSource, d.TCMechanism, d.Tracepoints = s.CarrierSource, s.TCMechanism, s.Tracepoints
		d.ReplacedMaps = s.ReplacedMaps
		if e := in.Exporter; e != nil && in.Running && e.PID == s.PID {
			d.Exporter = e.Listeners
		}
	}
	return d
}

// builder holds what Build's parts share: the inputs, the links by index
// and in index order.
type builder struct {
	in      Inputs
	byIndex map[int]registry.Link
	links   []registry.Link
}

// wall turns a CLOCK_MONOTONIC time into wall-clock time (nil for none).
func (bd *builder) wall(ns uint64) *time.Time {
	in := bd.in
	if ns == 0 || time.Duration(ns) > in.Mono {
		return nil
	}
	t := in.Now.Add(-(in.Mono - time.Duration(ns))).Round(time.Microsecond)
	return &t
}

func (bd *builder) link(l registry.Link) Link {
	out := Link{Ifindex: l.Index, Name: l.Name, Kind: l.Kind, Carrier: l.Carrier}
	if l.BridgePort != nil {
		out.StpState = l.BridgePort.State
	}
	if m, ok := bd.byIndex[l.MasterIndex]; ok && l.MasterIndex != 0 {
		out.Master = m.Name
	}
	if c, ok := bd.in.Counters[l.Index]; ok {
		out.Monitored = true
		out.Counters = &Counters{RxPackets: c.RxPackets, RxBytes: c.RxBytes, TxPackets: c.TxPackets, TxBytes: c.TxBytes,
			TxErrors: c.TxErrors, TxTimeouts: c.TxTimeouts}
		out.RxLastSeen, out.TxLastSeen = bd.wall(c.RxLastNS), bd.wall(c.TxLastNS)
	}
	if s, ok := bd.in.LinkStates[l.Index]; ok {
		switch {
		case s.Carrier != l.Carrier || s.UpCount != l.UpCount || s.DownCount != l.DownCount:
			out.LastChangeNote = "changed since linkbeat last saw it (the daemon was not watching)"
		case s.ChangedNS == 0:
			out.LastChangeNote = "no change seen since linkbeat first saw the link"
			if t := bd.wall(s.SeenNS); t != nil {
				out.LastChangeNote += " at " + t.Format(time.RFC3339)
			}
		default:
			out.LastChange = bd.wall(s.ChangedNS)
			out.LastChangeSource = carrier.Source(s.Source).String()
		}
	}
	return out
}

func (bd *builder) bond(l registry.Link) Bond {
	b := Bond{Name: l.Name, Mode: l.Bond.Mode, Slaves: []Slave{}, Options: *l.Bond}
	if a, ok := bd.byIndex[l.Bond.ActiveSlave]; ok && l.Bond.ActiveSlave != 0 {
		b.ActiveSlave = a.Name
	}
	if p, ok := bd.byIndex[l.Bond.Primary]; ok && l.Bond.Primary != 0 {
		b.Primary = p.Name
	}
	var rxTotal, txTotal uint64
	for _, s := range bd.links {
		if c, ok := bd.in.Counters[s.Index]; ok && s.MasterIndex == l.Index && s.BondSlave != nil {
			rxTotal += c.RxBytes
			txTotal += c.TxBytes
		}
	}
	for _, s := range bd.links {
		if s.MasterIndex == l.Index && s.BondSlave != nil {
			b.Slaves = append(b.Slaves, bd.slave(l.Bond.Mode, s, rxTotal, txTotal))
		}
	}
	if f, ok := bd.in.Bonds.Last[l.Name]; ok {
		b.LastFailover = &Failover{From: f.From, To: f.To, Reason: f.Reason, By: f.By, At: f.At, DurationNS: int64(f.Duration)}
	}
	b.FastPath = fastPathOf(bd.in, l, bd.byIndex, bd.wall)
	return b
}

// slave is one bond slave, its share of the bond's bytes and its path
// probes' answers.
func (bd *builder) slave(mode string, s registry.Link, rxTotal, txTotal uint64) Slave {
	sl := Slave{Name: s.Name, Carrier: s.Carrier, State: s.BondSlave.State, MiiStatus: s.BondSlave.MiiStatus}
	if mode == "802.3ad" {
		agg, actor, partner := s.BondSlave.AggregatorID, s.BondSlave.ActorState, s.BondSlave.PartnerState
		sl.AggregatorID, sl.ActorState, sl.PartnerState = &agg, &actor, &partner
	}
	if c, ok := bd.in.Counters[s.Index]; ok {
		sl.RxLastSeen = bd.wall(c.RxLastNS)
		sl.RxShare, sl.TxShare = share(c.RxBytes, rxTotal), share(c.TxBytes, txTotal)
	}
	for _, p := range bd.in.Paths {
		if p.Ifindex == s.Index {
			sl.Paths = append(sl.Paths, PathTarget{Target: p.Target.String(), Probe: p.Kind, Replies: p.Replies, LastSeen: bd.wall(p.LastNs)})
		}
	}
	return sl
}

func share(part, total uint64) *float64 {
	if total == 0 {
		return nil
	}
	v := float64(part) / float64(total)
	return &v
}

// WriteText prints the report for people.
func WriteText(w io.Writer, r Report, now time.Time) error {
	ago := func(t *time.Time) string {
		if t == nil {
			return "-"
		}
		return fmt.Sprintf("%s (%s ago)", t.Format("2006-01-02 15:04:05.000"), now.Sub(*t).Round(time.Millisecond))
	}
	writeDaemon(w, r.Daemon, ago)
	if err := writeLinks(w, r.Links, ago); err != nil {
		return err
	}
	for _, b := range r.Bonds {
		if err := writeBond(w, b, ago); err != nil {
			return err
		}
	}
	fmt.Fprintln(w)
	writeWithdrawn(w, r.Withdrawn)
	return nil
}

func writeDaemon(w io.Writer, d Daemon, ago func(*time.Time) string) {
	switch {
	case d.Running:
		fmt.Fprintf(w, "daemon:    running, pid %d, started %s\n", d.PID, ago(d.Started))
	case d.Recorded:
		fmt.Fprintf(w, "daemon:    not running (last started %s, pid %d)\n", ago(d.Started), d.PID)
	default:
		fmt.Fprintln(w, "daemon:    no record of a run in this --state-dir")
	}
	if d.Recorded {
		tp := "on"
		if !d.Tracepoints {
			tp = "off"
		}
		fmt.Fprintf(w, "sources:   carrier %s, tc %s, tx error counting %s (version %s)\n", d.CarrierSource, d.TCMechanism, tp, d.Version)
		for m, why := range d.ReplacedMaps {
			fmt.Fprintf(w, "replaced:  pinned map %s at start: %s\n", m, why)
		}
		for _, l := range d.Exporter {
			fmt.Fprintf(w, "metrics:   %s\n", l.Describe())
		}
	}
	pins := "none"
	if d.Pinned {
		pins = "present"
	}
	fmt.Fprintf(w, "pins:      %s (%s)\n\n", d.BpffsDir, pins)
}

func writeLinks(w io.Writer, links []Link, ago func(*time.Time) string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "LINK\tKIND\tCARRIER\tLAST CHANGE\tVIA\tRX PKTS\tRX BYTES\tTX PKTS\tTX BYTES\tTX ERR\tTX TMO\tRX LAST SEEN")
	for _, l := range links {
		car := "down"
		if l.Carrier {
			car = "up"
		}
		change, via := ago(l.LastChange), l.LastChangeSource
		if l.LastChange == nil && l.LastChangeNote != "" {
			change, via = "("+l.LastChangeNote+")", "-"
		}
		if via == "" {
			via = "-"
		}
		cnt := []string{"-", "-", "-", "-", "-", "-"}
		if c := l.Counters; c != nil {
			cnt = []string{fmt.Sprint(c.RxPackets), fmt.Sprint(c.RxBytes), fmt.Sprint(c.TxPackets), fmt.Sprint(c.TxBytes), fmt.Sprint(c.TxErrors), fmt.Sprint(c.TxTimeouts)}
		}
		kind := l.Kind
		if l.StpState != "" {
			kind += " (stp " + l.StpState + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", l.Name, kind, car, change, via, strings.Join(cnt, "\t"), ago(l.RxLastSeen))
	}
	return tw.Flush()
}

func writeBond(w io.Writer, b Bond, ago func(*time.Time) string) error {
	o := b.Options
	fmt.Fprintf(w, "\nbond %s: mode %s, active slave %s, primary %s (reselect %s), miimon %dms, updelay %dms, downdelay %dms, arp_interval %dms\n",
		b.Name, b.Mode, orDash(b.ActiveSlave), orDash(b.Primary), orDash(o.PrimaryReselect), o.Miimon, o.UpDelay, o.DownDelay, o.ArpInterval)
	if f := b.LastFailover; f != nil {
		fmt.Fprintf(w, "  last failover: %s -> %s, reason %s, by %s, at %s, took %s\n", orDash(f.From), orDash(f.To), f.Reason, f.By,
			f.At.Format("2006-01-02 15:04:05.000"), time.Duration(f.DurationNS))
	}
	writeFastPath(w, b.FastPath)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  SLAVE\tCARRIER\tSTATE\tMII\tAGGREGATOR\tACTOR\tPARTNER\tRX SHARE\tTX SHARE\tRX LAST SEEN")
	for _, s := range b.Slaves {
		agg, actor, partner := "-", "-", "-"
		if s.AggregatorID != nil {
			agg, actor, partner = fmt.Sprint(*s.AggregatorID), fmt.Sprintf("%#02x", *s.ActorState), fmt.Sprintf("%#02x", *s.PartnerState)
		}
		fmt.Fprintf(tw, "  %s\t%v\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, s.Carrier, s.State, s.MiiStatus, agg, actor, partner,
			percent(s.RxShare), percent(s.TxShare), ago(s.RxLastSeen))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return writePaths(w, b, ago)
}

func writeWithdrawn(w io.Writer, withdrawn []routes.WithdrawnLink) {
	if len(withdrawn) == 0 {
		fmt.Fprintln(w, "withdrawn routes: none")
		return
	}
	fmt.Fprintln(w, "withdrawn routes:")
	for _, wl := range withdrawn {
		fmt.Fprintf(w, "  %s (ifindex %d) since %s\n", wl.Ifname, wl.Ifindex, wl.Since.Format(time.RFC3339))
		for _, rt := range wl.Routes {
			fmt.Fprintf(w, "    route %s\n", rt)
		}
		for _, nh := range wl.Nexthops {
			fmt.Fprintf(w, "    nexthop %s\n", nh)
		}
	}
}

// writePaths lists the bond's path probe answers, one line per slave and
// target; nothing when the bond is not probed.
func writePaths(w io.Writer, b Bond, ago func(*time.Time) string) error {
	if !slices.ContainsFunc(b.Slaves, func(s Slave) bool { return len(s.Paths) > 0 }) {
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  PATH\tTARGET\tPROBE\tREPLIES\tLAST REPLY")
	for _, s := range b.Slaves {
		for _, p := range s.Paths {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%s\n", s.Name, p.Target, p.Probe, p.Replies, ago(p.LastSeen))
		}
	}
	return tw.Flush()
}

func writeFastPath(w io.Writer, fp *FastPath) {
	switch {
	case fp == nil:
		return
	case !fp.Live:
		fmt.Fprintf(w, "  fast path: off: %s\n", fp.Why)
	case fp.Pending != nil:
		p := fp.Pending
		to := p.To
		if len(p.Spread) > 0 {
			to = strings.Join(p.Spread, ", ") + " (by flow hash)"
		}
		fmt.Fprintf(w, "  fast path: PENDING: %s's frames leave through %s, first redirected %s after the driver's call\n",
			p.From, to, time.Duration(p.FirstRedirectNS))
	default:
		fmt.Fprintln(w, "  fast path: live, nothing pending")
	}
	if f := fp.Last; f != nil {
		fmt.Fprintf(w, "  last fast failover: %s -> %s at %s, first frame redirected %s after the driver's call\n", f.From, f.To,
			f.At.Format("2006-01-02 15:04:05.000"), time.Duration(f.DurationNS))
	}
}

func percent(v *float64) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", *v*100)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// spreadOf names the slaves of hash-mode bond b that take a dead slave's
// flows: those the bond transmits on (active in its view) with carrier,
// in ifindex order.
func spreadOf(b registry.Link, dead int, byIndex map[int]registry.Link) []string {
	var idx []int
	for i, s := range byIndex {
		if i != dead && s.MasterIndex == b.Index && s.BondSlave != nil && s.BondSlave.State == "active" && s.Carrier {
			idx = append(idx, i)
		}
	}
	slices.Sort(idx)
	out := make([]string, len(idx))
	for i, x := range idx {
		out[i] = byIndex[x].Name
	}
	return out
}

// fastPathOf joins a bond's recorded fast path status, its redirect in
// force and its last fast failover.
func fastPathOf(in Inputs, l registry.Link, byIndex map[int]registry.Link, wall func(uint64) *time.Time) *FastPath {
	st, ok := in.FastPath[l.Name]
	if !ok {
		return nil
	}
	fp := &FastPath{Live: st.Live, Why: st.Why}
	if r, ok := in.FastRedirects[l.Index]; ok {
		p := &Pending{From: byIndex[int(r.Dead)].Name, To: byIndex[int(r.To)].Name, Since: wall(r.DeadNs), Expires: wall(r.ExpiresNs)}
		if l.Bond != nil && fastpath.HashMode(l.Bond.Mode) {
			p.Spread = spreadOf(l, int(r.Dead), byIndex)
		}
		if r.FirstNs != 0 {
			p.FirstRedirectNS = int64(r.FirstNs - r.DeadNs)
		}
		fp.Pending = p
	}
	if f, ok := in.Bonds.LastFast[l.Name]; ok {
		fp.Last = &Failover{From: f.From, To: f.To, Reason: f.Reason, By: f.By, At: f.At, DurationNS: int64(f.Duration)}
	}
	return fp
}
