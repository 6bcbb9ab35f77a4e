// Package pathmon is linkbeat's active path health check for bonds: the
// bonding driver's ARP monitor and teamd's arp_ping, but running beside
// miimon and watching every slave, not only the active one.
//
// Every interval, each slave of a bond with ARP targets sends one ARP probe
// per target through an AF_PACKET socket bound to it, and a TC program on
// the slave's ingress (bpf/arp.c) counts the replies per (slave, target).
// IPv6 targets (ns_targets) get a neighbour solicitation instead, and
// bpf/ns.c counts the NAs (see probeSource for the source address). Both
// kinds add up to one verdict per slave: any target's answer keeps the
// path alive, as in the bonding driver with arp_ip_target and
// ns_ip6_target together.
// A slave whose targets stay silent for missed_max intervals is dead; the
// first reply makes it alive again. Each change of verdict is a
// bond.PathReport on Reports(); the bond manager decides whether to switch.
//
// The probes change nothing on the network: they are RFC 5227 probes
// (sender IP 0.0.0.0), so no target learns a neighbour entry from them,
// and they come from an address private to the slave (see chooseMAC), so
// no switch moves the bond's address to a backup's port. When that address
// is not the slave's own, it is added to the slave's unicast filter
// (`bridge fdb add ADDR dev SLAVE self permanent`) for as long as the slave
// is probed.
//
// Where the decision is made: step (verdict.go) and chooseMAC (mac.go),
// both pure. Where the kernel is touched: kernel.go, behind the kernel
// interface. SetBond, RemoveBond and Close do their netlink work on the
// caller's goroutine; the probe goroutines use only file descriptors (the
// packet sockets and the BPF map), so a caller in another network
// namespace keeps everything there.
package pathmon

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/linkbeat/linkbeat/internal/bond"
	"github.com/linkbeat/linkbeat/internal/monotime"
	"github.com/linkbeat/linkbeat/internal/tc"
)

// Bond is one bond's probing, as SetBond wants it.
type Bond struct {
	Index int
	Name  string
	// Targets are the addresses probed through every slave: IPv4 ones
	// by ARP, IPv6 ones by NS. None: the bond is not probed.
	Targets []netip.Addr
	// Interval between probes (default 100ms).
	Interval time.Duration
	// MissedMax intervals without a reply make a path dead (default 3).
	MissedMax int
	Slaves    []Slave
}

// Slave is one probed slave.
type Slave struct {
	Index int
	Name  string
	// MAC forces the probe's sender address (for tests, or a setup
	// chooseMAC cannot see); empty lets the monitor choose.
	MAC net.HardwareAddr
}

// TargetReplies is one target's reply counter on one slave.
type TargetReplies struct {
	Addr    netip.Addr `json:"addr"`
	Replies uint64     `json:"replies"`
	// LastNs is the latest reply's CLOCK_MONOTONIC time, 0 if none.
	LastNs int64 `json:"last_ns"`
}

// SlaveStatus is one slave's probing, for status and tests.
type SlaveStatus struct {
	Index int    `json:"ifindex"`
	Name  string `json:"ifname"`
	State
	// MAC is the probes' sender address, MACSource where it came from.
	MAC       string `json:"mac,omitempty"`
	MACSource string `json:"mac_source,omitempty"`
	// Filter says linkbeat added MAC to the slave's unicast filter.
	Filter bool `json:"filter,omitempty"`
	// ChangedNs is when the verdict last changed (CLOCK_MONOTONIC).
	ChangedNs int64           `json:"changed_ns,omitempty"`
	Targets   []TargetReplies `json:"targets,omitempty"`
	// Err says why the slave is not probed, or why its last probe or read
	// failed.
	Err string `json:"error,omitempty"`
}

// BondStatus is one probed bond.
type BondStatus struct {
	Index     int           `json:"ifindex"`
	Name      string        `json:"ifname"`
	Targets   []netip.Addr  `json:"targets"`
	Interval  time.Duration `json:"interval_ns"`
	MissedMax int           `json:"missed_max"`
	Slaves    []SlaveStatus `json:"slaves"`
}

// Options configures Open.
type Options struct {
	// PinDir pins the reply counter map there (as arp_replies). Empty: no
	// pinning.
	PinDir string
	// Mechanism forces "tcx" or "clsact"; empty probes. Give the traffic
	// counters' mechanism, so both use the same.
	Mechanism tc.Mechanism
	Log       *slog.Logger
}

// Monitor probes the slaves of the bonds it is given.
type Monitor struct {
	k       kernel
	log     *slog.Logger
	now     func() int64
	reports chan bond.PathReport

	mu     sync.Mutex
	bonds  map[int]*bondRun
	closed bool
}

type bondRun struct {
	index     int
	name      string
	targets   []netip.Addr
	stop      chan struct{}
	done      chan struct{}
	reset     chan struct{} // the interval changed
	mu        sync.Mutex
	interval  time.Duration
	missedMax int
	slaves    map[int]*slaveRun
}

type slaveRun struct {
	index  int
	name   string
	forced net.HardwareAddr // Slave.MAC
	mac    macChoice
	port   port // nil when opening failed
	st     State
	// probed: a probe went out since the last step, so the next step
	// judges an interval that had one.
	probed    bool
	changedNs int64
	targets   []TargetReplies
	err       error // opening failed
	// A failing probe or read is logged once, until it works again.
	probeFail, readFail failure
}

type failure struct {
	err    error
	logged bool
}

// Open loads the BPF program and its map. It touches no interface until
// SetBond.
func Open(opts Options) (*Monitor, error) {
	k, err := openKernel(opts)
	if err != nil {
		return nil, err
	}
	return newMonitor(k, opts.Log), nil
}

func newMonitor(k kernel, log *slog.Logger) *Monitor {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Monitor{k: k, log: log, now: monotime.NowNS, reports: make(chan bond.PathReport, 256), bonds: make(map[int]*bondRun)}
}

// Mechanism is the TC attachment path the monitor uses.
func (m *Monitor) Mechanism() tc.Mechanism { return m.k.mechanism() }

// Reports delivers each change of a slave's verdict, in order per slave.
// It is closed by Close. The probe goroutines wait for the reader, so read
// it steadily.
func (m *Monitor) Reports() <-chan bond.PathReport { return m.reports }

// SetBond starts, updates or (with no targets) stops the probing of one
// bond, to match b: slaves that left stop, slaves that joined start, and
// a change of targets starts over. It returns the slaves that could not
// be probed; the others are probed anyway.
func (m *Monitor) SetBond(b Bond) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return errors.New("path monitor closed")
	}
	if len(b.Targets) == 0 {
		return m.removeLocked(b.Index)
	}
	b, err := withDefaults(b)
	if err != nil {
		return err
	}
	r, err := m.bondRunLocked(b)
	errs := []error{err}
	r.configure(b)
	errs = append(errs, m.dropLeavers(r, b.Slaves))
	for _, w := range b.Slaves {
		errs = append(errs, m.setSlave(r, b.Name, w))
	}
	return errors.Join(errs...)
}

// withDefaults fills in b's unset interval and miss count, and checks its
// targets.
func withDefaults(b Bond) (Bond, error) {
	if b.Interval <= 0 {
		b.Interval = 100 * time.Millisecond
	}
	if b.MissedMax <= 0 {
		b.MissedMax = 3
	}
	for _, t := range b.Targets {
		if err := checkTarget(t); err != nil {
			return b, fmt.Errorf("bond %s: %w", b.Name, err)
		}
	}
	return b, nil
}

// bondRunLocked returns b's run, started anew when it is new or its
// targets changed; the error is stopping the old one's.
func (m *Monitor) bondRunLocked(b Bond) (*bondRun, error) {
	var err error
	r := m.bonds[b.Index]
	if r != nil && !slices.Equal(r.targets, b.Targets) {
		err = m.removeLocked(b.Index)
		r = nil
	}
	if r == nil {
		r = &bondRun{index: b.Index, name: b.Name, targets: slices.Clone(b.Targets), stop: make(chan struct{}), done: make(chan struct{}),
			reset: make(chan struct{}, 1), interval: b.Interval, missedMax: b.MissedMax, slaves: make(map[int]*slaveRun)}
		m.bonds[b.Index] = r
		go m.run(r)
		m.log.Info("path monitor: probing bond", "bond", b.Name, "targets", b.Targets, "interval", b.Interval, "missed_max", b.MissedMax)
	}
	return r, err
}

// configure takes b's name, interval and miss count; a new interval
// restarts the run's ticker.
func (r *bondRun) configure(b Bond) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.interval != b.Interval {
		select {
		case r.reset <- struct{}{}:
		default:
		}
	}
	r.name, r.interval, r.missedMax = b.Name, b.Interval, b.MissedMax
}

// dropLeavers stops the slaves that are not in want, or whose forced
// address changed. Leavers go first: an ifindex reused by a new slave
// starts clean.
func (m *Monitor) dropLeavers(r *bondRun, want []Slave) error {
	wanted := map[int]Slave{}
	for _, s := range want {
		wanted[s.Index] = s
	}
	r.mu.Lock()
	var leaving []*slaveRun
	for idx, s := range r.slaves {
		w, ok := wanted[idx]
		if !ok || !slices.Equal(w.MAC, s.forced) {
			leaving = append(leaving, s)
			delete(r.slaves, idx)
		}
	}
	r.mu.Unlock()
	var errs []error
	for _, s := range leaving {
		errs = append(errs, m.closeSlave(r, s, false))
	}
	return errors.Join(errs...)
}

// setSlave starts probing through w, or keeps the probing that works.
func (m *Monitor) setSlave(r *bondRun, bondName string, w Slave) error {
	r.mu.Lock()
	cur := r.slaves[w.Index]
	r.mu.Unlock()
	choice, err := m.choose(r.index, w)
	// A working slave keeps going unless its address must change; a
	// failed lookup changes nothing.
	if cur != nil && cur.port != nil && (err != nil || slices.Equal(choice.MAC, cur.mac.MAC)) {
		r.mu.Lock()
		cur.name = w.Name
		r.mu.Unlock()
		if err != nil {
			m.log.Warn("path monitor: cannot look up slave; probing on as before", "bond", bondName, "slave", w.Name, "err", err)
		}
		return nil
	}
	var errs []error
	if cur != nil {
		// Its address must change (or it failed before): start over.
		r.mu.Lock()
		delete(r.slaves, w.Index)
		r.mu.Unlock()
		errs = append(errs, m.closeSlave(r, cur, false))
	}
	s := &slaveRun{index: w.Index, name: w.Name, forced: w.MAC, mac: choice}
	if err == nil {
		s.port, err = m.k.open(portSpec{Ifindex: w.Index, Ifname: w.Name, MAC: choice.MAC, Filter: choice.Filter, Targets: r.targets})
	}
	if err != nil {
		s.err = err
		errs = append(errs, fmt.Errorf("bond %s: cannot probe through %s: %w", bondName, w.Name, err))
		m.log.Warn("path monitor: cannot probe through slave", "bond", bondName, "slave", w.Name, "err", err)
	} else {
		m.log.Info("path monitor: probing through slave", "bond", bondName, "slave", w.Name, "mac", choice.MAC.String(), "mac_source", choice.Source, "filter", choice.Filter)
		// The first probe now, so the first tick already judges.
		s.probeErr(m.log, r.name, s.port.probe())
		s.probed = true
	}
	r.mu.Lock()
	r.slaves[w.Index] = s
	r.mu.Unlock()
	return errors.Join(errs...)
}

// checkTarget accepts a unicast IPv4 address (ARP) or a global or
// link-local unicast IPv6 address (NS), as the bonding driver does.
func checkTarget(t netip.Addr) error {
	switch {
	case t.Is4():
		if t.IsUnspecified() || t.IsMulticast() {
			return fmt.Errorf("ARP target %s is not a unicast IPv4 address", t)
		}
	case t.Is4In6() || t.Zone() != "" || !(t.IsGlobalUnicast() || t.IsLinkLocalUnicast()):
		return fmt.Errorf("NS target %s is not a global or link-local unicast IPv6 address", t)
	}
	return nil
}

func (m *Monitor) choose(bondIndex int, w Slave) (macChoice, error) {
	if len(w.MAC) > 0 {
		if !usable(w.MAC) {
			return macChoice{}, fmt.Errorf("configured probe address %s is not a unicast Ethernet address", w.MAC)
		}
		in, err := m.k.macInput(bondIndex, w.Index)
		if err != nil {
			return macChoice{}, err
		}
		return macChoice{MAC: w.MAC, Filter: !slices.Equal(w.MAC, in.Current), Source: "configured"}, nil
	}
	in, err := m.k.macInput(bondIndex, w.Index)
	if err != nil {
		return macChoice{}, err
	}
	return chooseMAC(in)
}

// RemoveBond stops probing a bond: its slaves' programs, sockets, counters
// and filter entries go.
func (m *Monitor) RemoveBond(index int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.removeLocked(index)
}

// Forget is for an interface that no longer exists. A bond's probing
// stops as with RemoveBond (its released slaves are cleaned up); a slave
// is dropped from its bond's probing without touching it: the kernel took
// its programs and filter entries with it.
func (m *Monitor) Forget(ifindex int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.bonds[ifindex]; ok {
		return m.removeLocked(ifindex)
	}
	for _, r := range m.bonds {
		r.mu.Lock()
		s, ok := r.slaves[ifindex]
		delete(r.slaves, ifindex)
		r.mu.Unlock()
		if ok {
			return m.closeSlave(r, s, true)
		}
	}
	return nil
}

func (m *Monitor) removeLocked(index int) error {
	r, ok := m.bonds[index]
	if !ok {
		return nil
	}
	delete(m.bonds, index)
	close(r.stop)
	<-r.done
	var errs []error
	r.mu.Lock()
	slaves := r.slaves
	r.slaves = nil
	r.mu.Unlock()
	for _, s := range slaves {
		errs = append(errs, m.closeSlave(r, s, false))
	}
	m.log.Info("path monitor: stopped probing bond", "bond", r.name)
	return errors.Join(errs...)
}

func (m *Monitor) closeSlave(r *bondRun, s *slaveRun, gone bool) error {
	if s.port == nil {
		return nil
	}
	if err := s.port.close(gone); err != nil {
		return fmt.Errorf("bond %s: stop probing through %s: %w", r.name, s.name, err)
	}
	return nil
}

// Verdict is a slave's current verdict; Unknown when it is not probed.
func (m *Monitor) Verdict(bondIndex, slaveIndex int) Verdict {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.bonds[bondIndex]
	if !ok {
		return Unknown
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if s, ok := r.slaves[slaveIndex]; ok {
		return s.st.Verdict
	}
	return Unknown
}

// Status describes every probed bond, ordered by ifindex.
func (m *Monitor) Status() []BondStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := []BondStatus{}
	for _, r := range m.bonds {
		r.mu.Lock()
		b := BondStatus{Index: r.index, Name: r.name, Targets: slices.Clone(r.targets), Interval: r.interval, MissedMax: r.missedMax, Slaves: []SlaveStatus{}}
		for _, s := range r.slaves {
			st := SlaveStatus{Index: s.index, Name: s.name, State: s.st, MACSource: s.mac.Source, Filter: s.mac.Filter && s.port != nil,
				ChangedNs: s.changedNs, Targets: slices.Clone(s.targets)}
			if s.mac.MAC != nil {
				st.MAC = s.mac.MAC.String()
			}
			if err := s.lastErr(); err != nil {
				st.Err = err.Error()
			}
			b.Slaves = append(b.Slaves, st)
		}
		r.mu.Unlock()
		slices.SortFunc(b.Slaves, func(a, c SlaveStatus) int { return a.Index - c.Index })
		out = append(out, b)
	}
	slices.SortFunc(out, func(a, c BondStatus) int { return a.Index - c.Index })
	return out
}

// Close stops every probe, removes what the monitor added to the
// interfaces, closes Reports and unloads the program. The pinned map stays.
func (m *Monitor) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	m.closed = true
	var errs []error
	for idx := range m.bonds {
		errs = append(errs, m.removeLocked(idx))
	}
	close(m.reports)
	errs = append(errs, m.k.close())
	return errors.Join(errs...)
}

// run is one bond's probe loop.
func (m *Monitor) run(r *bondRun) {
	defer close(r.done)
	r.mu.Lock()
	t := time.NewTicker(r.interval)
	r.mu.Unlock()
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-r.reset:
			r.mu.Lock()
			interval := r.interval
			r.mu.Unlock()
			t.Reset(interval)
			continue
		case <-t.C:
		}
		for _, rep := range m.tick(r) {
			select {
			case m.reports <- rep:
			case <-r.stop:
				return
			}
		}
	}
}

// tick judges the interval that ended for every slave, then sends the
// next probes. It returns the verdicts that changed.
func (m *Monitor) tick(r *bondRun) []bond.PathReport {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := m.now()
	var out []bond.PathReport
	for _, s := range r.slaves {
		if s.port == nil {
			continue
		}
		if s.probed {
			counts, err := s.port.replies()
			replies := s.st.Replies
			if err != nil {
				s.readErr(m.log, r.name, err)
			} else {
				s.targets = counts
				replies = 0
				for _, c := range counts {
					replies += c.Replies
				}
			}
			next, changed := step(s.st, replies, r.missedMax)
			s.st = next
			if changed {
				s.changedNs = now
				out = append(out, bond.PathReport{BondIndex: r.index, SlaveIndex: s.index, Alive: next.Verdict == Alive, KernelNs: now})
				m.log.Info("path verdict", "bond", r.name, "slave", s.name, "verdict", next.Verdict, "missed", next.Missed, "replies", next.Replies)
			}
		}
		s.probeErr(m.log, r.name, s.port.probe())
		s.probed = true
	}
	return out
}

func (s *slaveRun) probeErr(log *slog.Logger, bond string, err error) {
	s.probeFail.note(log, "path monitor: probe failed", bond, s.name, err)
}

func (s *slaveRun) readErr(log *slog.Logger, bond string, err error) {
	s.readFail.note(log, "path monitor: cannot read reply counters", bond, s.name, err)
}

// lastErr is what status shows: why the slave is not probed, or why its
// probing fails now.
func (s *slaveRun) lastErr() error {
	return errors.Join(s.err, s.probeFail.err, s.readFail.err)
}

// note records one attempt, logging a failure once until it works again.
func (f *failure) note(log *slog.Logger, msg, bond, slave string, err error) {
	f.err = err
	if err == nil {
		if f.logged {
			log.Info(msg+": works again", "bond", bond, "slave", slave)
		}
		f.logged = false
		return
	}
	if !f.logged {
		f.logged = true
		log.Warn(msg, "bond", bond, "slave", slave, "err", err)
	}
}
