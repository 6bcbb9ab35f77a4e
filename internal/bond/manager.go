package bond

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/linkbeat/linkbeat/internal/config"
	"github.com/linkbeat/linkbeat/internal/registry"
	"github.com/linkbeat/linkbeat/internal/source"
)

// Options configure a Manager.
type Options struct {
	Kernel Kernel
	Log    *slog.Logger
	// Observer, if set, is told of every failover and declined switch.
	Observer Observer
	// Settings gives a bond's settings by name (the live config).
	Settings func(bond string) config.BondSettings
	// StateDir keeps the last failover of each bond (empty: none).
	StateDir string
	// Now is CLOCK_MONOTONIC in ns, the clock of the kernel's events.
	Now func() int64
	// Paths says the path monitor runs: without it, configured ARP and NS
	// targets are not checked (and no slave counts as path-dead).
	Paths bool
	// FastPath, if set, is told of each bond after each decision.
	FastPath FastPath
}

type input struct {
	link *source.LinkEvent
	path *PathReport
	ping func()
	fast *Failover
}

// Manager owns the bonds' state on one goroutine (Run). Its input methods
// never block.
type Manager struct {
	o  Options
	in chan input

	bonds map[int]*Bond
	ports map[int]*port
	order map[int][]string // bond ifindex -> slave names in bond order
	// declined remembers the last reason a bond's switch was left to
	// the bond, so it is logged and counted once per episode.
	declined map[int]string
	wake     map[int]int64
	state    State
}

// port is a bond slave and the bond it belongs to.
type port struct {
	Slave
	master int
	// agg and backup are the port's 802.3ad aggregator and the bond's
	// backup flag, and noticed is its last notice's operstate, for the
	// fast path only.
	agg     int
	backup  bool
	noticed bool
}

// NewManager makes a Manager; Run starts it.
func NewManager(o Options) *Manager {
	if o.Settings == nil {
		o.Settings = func(string) config.BondSettings { return (&config.Config{}).ForBond("") }
	}
	m := &Manager{
		o: o, in: make(chan input, 1024),
		bonds: map[int]*Bond{}, ports: map[int]*port{}, order: map[int][]string{},
		declined: map[int]string{}, wake: map[int]int64{},
	}
	if o.StateDir != "" {
		if st, err := ReadState(o.StateDir); err == nil {
			m.state = st
		} else {
			o.Log.Warn("ignoring unreadable bond state", "err", err)
		}
	}
	if m.state.Last == nil {
		m.state.Last = map[string]Failover{}
	}
	return m
}

func (m *Manager) send(x input) {
	select {
	case m.in <- x:
	default:
		// The manager is stuck; the next netlink update or event
		// brings its view up to date again.
		m.o.Log.Error("bond manager queue full: input dropped")
	}
}

// Link feeds a bond's or a slave's change, carrier included, as the event
// source ordered it (internal/source): the manager takes carrier as it
// comes and orders nothing itself.
func (m *Manager) Link(ev source.LinkEvent) { m.send(input{link: &ev}) }

// Path feeds the path monitor's verdict on a slave.
func (m *Manager) Path(r PathReport) { m.send(input{path: &r}) }

// Ping has the manager's goroutine call f once the inputs queued before
// it are handled: a liveness tick. False if the queue is full.
func (m *Manager) Ping(f func()) bool {
	select {
	case m.in <- input{ping: f}:
		return true
	default:
		return false
	}
}

// FastFailover records a failover the fast path made (By "fastpath"),
// as the bond's last fast failover in the state file.
func (m *Manager) FastFailover(f Failover) { m.send(input{fast: &f}) }

// Run handles inputs until ctx ends.
func (m *Manager) Run(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case x := <-m.in:
			switch {
			case x.link != nil:
				m.link(*x.link)
			case x.path != nil:
				m.pathReport(*x.path)
			case x.ping != nil:
				x.ping()
			case x.fast != nil:
				m.recordFast(*x.fast)
			}
		case <-timer.C:
			now := m.o.Now()
			for idx, at := range m.wake {
				if at <= now {
					delete(m.wake, idx)
					m.evaluate(idx)
				}
			}
		}
		// One timer for the earliest pending delay.
		if len(m.wake) > 0 {
			next := slices.Min(slices.Collect(maps.Values(m.wake)))
			timer.Reset(time.Duration(max(next-m.o.Now(), 0)))
		}
	}
}

// setCarrier takes the source's ordered carrier; at is when it changed
// (0: not known, now).
func (m *Manager) setCarrier(p *port, up bool, at int64) bool {
	if up == p.Carrier {
		return false
	}
	if at == 0 {
		at = m.o.Now()
	}
	p.Carrier, p.CarrierNs = up, at
	return true
}

func (m *Manager) pathReport(r PathReport) {
	p, ok := m.ports[r.SlaveIndex]
	v := PathDead
	if r.Alive {
		v = PathAlive
	}
	if !ok || p.Path == v {
		return
	}
	p.Path, p.PathNs = v, r.KernelNs
	m.o.Log.Info("bond slave path", "bond", m.name(p.master), "slave", p.Name, "alive", r.Alive)
	m.evaluate(p.master)
}

func (m *Manager) link(ev source.LinkEvent) {
	c, l := ev.Change, ev.Link
	if c.Kind == registry.Removed {
		if p, ok := m.ports[l.Index]; ok {
			delete(m.ports, l.Index)
			m.membership(p.master)
			m.tellFast(p.master)
		}
		if _, ok := m.bonds[l.Index]; ok {
			delete(m.bonds, l.Index)
			delete(m.order, l.Index)
			delete(m.declined, l.Index)
			delete(m.wake, l.Index)
			if m.o.FastPath != nil {
				m.o.FastPath.Gone(l.Index)
			}
		}
		return
	}
	if l.Bond != nil {
		m.bondLink(l)
	}
	p, had := m.ports[l.Index]
	switch {
	case l.BondSlave == nil && had:
		// Released from its bond.
		delete(m.ports, l.Index)
		m.membership(p.master)
		m.tellFast(p.master)
		return
	case l.BondSlave == nil:
		return
	case !had:
		p = &port{Slave: Slave{Index: l.Index, Carrier: l.Carrier, CarrierNs: ev.CarrierNs}, master: l.MasterIndex}
		if p.CarrierNs == 0 {
			p.CarrierNs = m.o.Now()
		}
		m.ports[l.Index] = p
	}
	moved := p.master != l.MasterIndex
	old := p.master
	p.master = l.MasterIndex
	p.Name, p.AdminUp, p.BondUp = l.Name, l.AdminUp, l.BondSlave.LinkUp()
	p.agg, p.backup, p.noticed = int(l.BondSlave.AggregatorID), l.BondSlave.State == "backup", !l.OperDown
	m.setCarrier(p, l.Carrier, ev.CarrierNs)
	if !had || moved || c.Renamed() {
		m.membership(l.MasterIndex)
	}
	if moved {
		m.membership(old)
		m.evaluate(old)
	}
	m.evaluate(p.master)
}

// bondLink takes a bond's own netlink state, and notices the bond
// switching by itself.
func (m *Manager) bondLink(l registry.Link) {
	b, had := m.bonds[l.Index]
	if !had {
		b = &Bond{Index: l.Index, Name: l.Name, Active: l.Bond.ActiveSlave}
		m.bonds[l.Index] = b
		m.o.Log.Info("bond found", "bond", l.Name, "mode", l.Bond.Mode, "miimon", l.Bond.Miimon,
			"active_slave", m.portName(l.Bond.ActiveSlave), "fast_failover", m.o.Settings(l.Name).FastFailover && Switchable(l.Bond.Mode))
	}
	renamed := b.Name != l.Name
	b.Name, b.Mode, b.Miimon, b.ArpInterval = l.Name, l.Bond.Mode, l.Bond.Miimon, l.Bond.ArpInterval
	b.UpDelay = time.Duration(l.Bond.UpDelay) * time.Millisecond
	b.DownDelay = time.Duration(l.Bond.DownDelay) * time.Millisecond
	b.Primary, b.PrimaryReselect, b.FailOverMac = l.Bond.Primary, l.Bond.PrimaryReselect, l.Bond.FailOverMac
	b.AdAggregator = l.Bond.AdAggregator
	if !had || renamed {
		m.membership(l.Index)
	}
	if had && l.Bond.ActiveSlave != b.Active {
		m.bondMoved(b, l.Bond.ActiveSlave)
	}
	m.evaluate(l.Index)
}

// membership refreshes a bond's slave order after slaves come or go.
func (m *Manager) membership(bondIdx int) {
	b, ok := m.bonds[bondIdx]
	if !ok {
		return
	}
	order, err := m.o.Kernel.SlaveOrder(b.Name)
	if err != nil {
		// Without sysfs (another netns), ifindex order is the best
		// guess: it is the enslave order unless ports were re-created.
		m.o.Log.Debug("bond slave order unknown, using ifindex order", "bond", b.Name, "err", err)
		order = nil
	}
	m.order[bondIdx] = order
}

// view fills a bond's slaves and settings for Decide.
func (m *Manager) view(b *Bond) {
	s := m.o.Settings(b.Name)
	b.FastFailover, b.PathChecks = s.FastFailover, m.o.Paths && len(s.Targets()) > 0
	b.Slaves = b.Slaves[:0]
	var mine []*port
	for _, idx := range slices.Sorted(maps.Keys(m.ports)) {
		if p := m.ports[idx]; p.master == b.Index {
			mine = append(mine, p)
		}
	}
	rank := func(p *port) int {
		if i := slices.Index(m.order[b.Index], p.Name); i >= 0 {
			return i
		}
		return len(m.order[b.Index])
	}
	slices.SortStableFunc(mine, func(x, y *port) int { return rank(x) - rank(y) })
	for _, p := range mine {
		b.Slaves = append(b.Slaves, &p.Slave)
	}
	// primary_reselect=better compares the primary with the active slave
	// when the primary is back: read those two speeds then, not on every
	// event (they are sysfs reads).
	if pr, act := b.slave(b.Primary), b.slave(b.Active); b.PrimaryReselect == "better" && pr != nil && act != nil && pr != act && pr.Carrier {
		for _, s := range []*Slave{pr, act} {
			s.Speed, s.Duplex = m.o.Kernel.Speed(s.Name)
		}
	}
}

// evaluate decides for one bond and acts: where the decision meets the
// kernel.
func (m *Manager) evaluate(bondIdx int) {
	b, ok := m.bonds[bondIdx]
	if !ok {
		return
	}
	m.view(b)
	d := Decide(b, m.o.Now())
	// Netlink notices of the bond's own view of its slaves can lag (a
	// busy host, a daemon just started): before acting on that view,
	// or giving up for want of a live slave, read it fresh.
	if (d.To != 0 || d.Declined == "no_live_slave") && m.refresh(b) {
		m.view(b)
		d = Decide(b, m.o.Now())
	}
	delete(m.wake, bondIdx)
	switch {
	case d.WakeNs != 0:
		m.wake[bondIdx] = d.WakeNs
	case d.Declined != "":
		m.decline(b, d.Declined, "")
	case d.To != 0:
		m.switchTo(b, d)
	default:
		delete(m.declined, bondIdx)
	}
	m.tellFast(bondIdx)
}

// tellFast gives the fast path the bond as it stands now.
func (m *Manager) tellFast(bondIdx int) {
	b, ok := m.bonds[bondIdx]
	if !ok || m.o.FastPath == nil {
		return
	}
	m.view(b)
	v := FastView{Index: b.Index, Name: b.Name, Mode: b.Mode, FailOverMac: b.FailOverMac, DownDelay: b.DownDelay,
		Active: b.Active, Primary: b.Primary, On: m.o.Settings(b.Name).FastPath, AdAggregator: b.AdAggregator}
	for _, s := range b.Slaves {
		fs := FastSlave{Index: s.Index, Name: s.Name, AdminUp: s.AdminUp, BondUp: s.BondUp, Carrier: s.Carrier}
		if p, ok := m.ports[s.Index]; ok {
			fs.Aggregator, fs.Backup, fs.NoticedCarrier = p.agg, p.backup, p.noticed
		}
		v.Slaves = append(v.Slaves, fs)
	}
	m.o.FastPath.Bond(v)
}

// refresh reads the bond's own view of its slaves (admin state and
// BOND_LINK_UP) from the kernel into the ports, reporting whether it
// changed. Carrier is not taken from the read: its one owner is the
// source's ordered stream, and a read can be older than an event the
// manager already has. The carrier programs run at netif_carrier_off's
// entry with the counts it is about to set, so a read in the window
// before the driver flips the bit still shows the old carrier. The
// bond's view has no such event: a fresh read is the newest there is.
func (m *Manager) refresh(b *Bond) bool {
	links, err := m.o.Kernel.Slaves(b.Index)
	if err != nil {
		m.o.Log.Debug("cannot read the bond's slaves", "bond", b.Name, "err", err)
		return false
	}
	changed := false
	for _, l := range links {
		p, ok := m.ports[l.Index]
		if !ok || p.master != b.Index {
			continue
		}
		if p.AdminUp != l.AdminUp || p.BondUp != l.BondSlave.LinkUp() {
			p.AdminUp, p.BondUp = l.AdminUp, l.BondSlave.LinkUp()
			changed = true
		}
	}
	return changed
}

func (m *Manager) decline(b *Bond, reason, detail string) {
	if m.declined[b.Index] == reason {
		return
	}
	m.declined[b.Index] = reason
	m.o.Log.Warn("bond switch left to the bond", "bond", b.Name, "active_slave", m.portName(b.Active), "reason", reason, "detail", detail)
	if m.o.Observer != nil {
		m.o.Observer.Declined(Declined{Bond: b.Name, Slave: m.portName(b.Active), Reason: reason})
	}
}

func (m *Manager) switchTo(b *Bond, d Decision) {
	start := m.o.Now()
	// Never fight the bond: if it has already moved, take its choice.
	cur, err := m.o.Kernel.Active(b.Index)
	if err != nil {
		m.decline(b, "kernel_read_failed", err.Error())
		return
	}
	if cur != b.Active {
		m.bondMoved(b, cur)
		return
	}
	setAt := m.o.Now()
	if err := m.o.Kernel.SetActive(b.Index, d.To); err != nil {
		m.decline(b, "kernel_refused", err.Error())
		return
	}
	setDone := m.o.Now()
	got, err := m.o.Kernel.Active(b.Index)
	now := m.o.Now()
	if err != nil || got != d.To {
		m.decline(b, "kernel_refused", "the active slave did not change")
		if err == nil && got != b.Active {
			m.bondMoved(b, got)
		}
		return
	}
	from := b.Active
	b.Active = d.To
	delete(m.declined, b.Index)
	// Where the time went: the decision's start after the kernel event
	// (delays included), and the switch request, which waits for the
	// RTNL lock that the kernel's own linkwatch work may hold.
	m.o.Log.Debug("bond failover timing", "bond", b.Name, "decided_after", time.Duration(start-d.TriggerNs),
		"set_took", time.Duration(setDone-setAt), "reads_took", time.Duration((setAt-start)+(now-setDone)))
	m.record(Failover{Bond: b.Name, From: m.portName(from), To: m.portName(d.To), Reason: d.Reason, By: "linkbeat",
		KernelNs: d.TriggerNs, Duration: time.Duration(now - d.TriggerNs), At: time.Now()})
}

// bondMoved records a switch the bonding driver made by itself.
func (m *Manager) bondMoved(b *Bond, to int) {
	from := b.Active
	b.Active = to
	if to == 0 {
		m.o.Log.Warn("bond has no active slave", "bond", b.Name, "was", m.portName(from))
		return
	}
	f := Failover{Bond: b.Name, From: m.portName(from), To: m.portName(to), Reason: ReasonBond, By: "bond", At: time.Now()}
	// Time it from the old slave's failure when that is what it was.
	if p, ok := m.ports[from]; ok && !p.Carrier {
		f.KernelNs, f.Duration = p.CarrierNs, time.Duration(m.o.Now()-p.CarrierNs)
	}
	m.record(f)
}

func (m *Manager) record(f Failover) {
	m.o.Log.Info("bond failover", "bond", f.Bond, "from", f.From, "to", f.To, "reason", f.Reason, "by", f.By,
		"duration", f.Duration, "duration_us", f.Duration.Microseconds())
	if m.o.Observer != nil {
		m.o.Observer.Failover(f)
	}
	m.state.Last[f.Bond] = f
	if m.o.StateDir != "" {
		if err := writeState(m.o.StateDir, m.state); err != nil {
			m.o.Log.Warn("cannot save bond state", "err", err)
		}
	}
}

func (m *Manager) recordFast(f Failover) {
	if m.state.LastFast == nil {
		m.state.LastFast = map[string]Failover{}
	}
	m.state.LastFast[f.Bond] = f
	if m.o.StateDir != "" {
		if err := writeState(m.o.StateDir, m.state); err != nil {
			m.o.Log.Warn("cannot save bond state", "err", err)
		}
	}
}

func (m *Manager) portName(idx int) string {
	if p, ok := m.ports[idx]; ok {
		return p.Name
	}
	return ""
}

func (m *Manager) name(idx int) string {
	if b, ok := m.bonds[idx]; ok {
		return b.Name
	}
	return ""
}
