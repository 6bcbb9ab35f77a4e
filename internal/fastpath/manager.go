package fastpath

import (
	"context"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/linkbeat/linkbeat/internal/bond"
	"github.com/linkbeat/linkbeat/internal/carrier"
	"github.com/linkbeat/linkbeat/internal/tc"
)

// DefaultTTL bounds a redirect the daemon no longer refreshes.
const DefaultTTL = time.Second

// Hook names and clsact priority: after the counters (1) and the path
// monitor's ARP (2) and NA (3) counters, so a probe's answer is counted
// before the redirect takes the frame. clsact refuses two filters of one
// priority with different protocols.
const (
	hookEgress   = "lb_fastpath_egress"
	hookIngress  = "lb_fastpath_ingress"
	hookPriority = 4
)

// Options configure a Manager.
type Options struct {
	Objects   *Objects
	Mechanism tc.Mechanism
	Log       *slog.Logger
	// TTL is how long a redirect lasts after its mark or last refresh
	// (0: DefaultTTL).
	TTL time.Duration
	// Now is CLOCK_MONOTONIC in ns, the clock of bpf_ktime_get_ns.
	Now func() int64
	// Record gets each fast failover once its first frame was redirected.
	Record func(bond.Failover)
	// StateDir, if set, keeps each bond's fast path status (StateFile)
	// for `linkbeat status`.
	StateDir string
}

// BondStatus is one bond's fast path, for features, status and metrics.
type BondStatus struct {
	Name string `json:"bond"`
	Live bool   `json:"live"`
	Why  string `json:"why_not,omitempty"`
}

type input struct {
	view *bond.FastView
	gone int
	ev   *carrier.Event
}

// Manager keeps the kernel's tables in step with the bonds and follows
// each pending redirect, on one goroutine (Run). Its input methods never
// block.
type Manager struct {
	o     Options
	in    chan input
	bonds map[int]*bondRun
	hooks map[int][]*tc.HookLink // by slave ifindex
	// allmulti are the slaves of fast-path bonds: true where this run
	// put them in allmulticast mode, false where they already were.
	allmulti map[int]bool

	mu     sync.Mutex
	status map[int]BondStatus
}

type bondRun struct {
	view    bond.FastView
	live    bool
	why     string
	slaves  []int
	mac     net.HardwareAddr
	addrs   []netip.Addr
	pending *pendingRun
	// taken are the slaves' tx_taken counters when the last redirect
	// ended (none: zero). Frames move only while a redirect is in force,
	// so what the counters gained since is the current one's, frames
	// the kernel redirected before the daemon read the carrier event
	// included.
	taken map[int]uint64
}

type pendingRun struct {
	r        Redirect
	recorded bool
}

// New makes a Manager; Run starts it.
func New(o Options) *Manager {
	if o.TTL == 0 {
		o.TTL = DefaultTTL
	}
	return &Manager{o: o, in: make(chan input, 1024), bonds: map[int]*bondRun{}, hooks: map[int][]*tc.HookLink{}, status: map[int]BondStatus{},
		allmulti: map[int]bool{}}
}

func (m *Manager) send(x input) {
	select {
	case m.in <- x:
	default:
		m.o.Log.Error("fast path queue full: input dropped")
	}
}

// Bond takes a bond's view (bond.FastPath).
func (m *Manager) Bond(v bond.FastView) { m.send(input{view: &v}) }

// Gone drops a bond (bond.FastPath).
func (m *Manager) Gone(idx int) { m.send(input{gone: idx}) }

// Carrier takes a carrier change of any link. A change netlink reported
// (no BPF carrier path) is marked in the maps at once, on the caller's
// goroutine, as the carrier program would have: before the bond manager
// hears of it. Map updates do not block.
func (m *Manager) Carrier(ev carrier.Event) {
	if ev.Source == carrier.SourceNetlink || ev.Source == carrier.SourceResync {
		m.markNetlink(ev)
	}
	m.send(input{ev: &ev})
}

func (m *Manager) markNetlink(ev carrier.Event) {
	if ev.Up {
		if bondIdx, ok := m.o.Objects.setCarrier(ev.Ifindex, true); ok {
			if r, ok := m.o.Objects.Redirect(bondIdx); ok && int(r.Dead) == ev.Ifindex {
				m.o.Objects.endRedirect(bondIdx)
			}
		}
		return
	}
	if err := m.o.Objects.Mark(ev.Ifindex, int64(ev.Time)); err != nil {
		m.o.Log.Warn("fast path mark", "ifname", ev.Ifname, "err", err)
	}
}

var _ bond.FastPath = (*Manager)(nil)

// Status is every known bond's fast path.
func (m *Manager) Status() []BondStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := slices.Collect(maps.Values(m.status))
	slices.SortFunc(out, func(a, b BondStatus) int { return cmpString(a.Name, b.Name) })
	return out
}

// Run keeps the tables until ctx ends, then clears every redirect and
// table and detaches its hooks: nothing of it outlives the daemon.
func (m *Manager) Run(ctx context.Context) {
	m.o.Objects.clear()
	defer m.shutdown()
	// Timers run only while there is something to follow: no wakeups
	// while no redirect is pending and no bond is live.
	poll := time.NewTimer(time.Hour)
	poll.Stop()
	defer poll.Stop()
	addrs := time.NewTimer(time.Hour)
	addrs.Stop()
	defer addrs.Stop()
	addrsArmed := false
	for {
		select {
		case <-ctx.Done():
			return
		case x := <-m.in:
			switch {
			case x.ev != nil:
				m.carrier(*x.ev)
			case x.view != nil:
				m.bondView(*x.view)
			case x.gone != 0:
				m.removeBond(x.gone)
			}
		case <-poll.C:
			m.follow()
		case <-addrs.C:
			addrsArmed = false
			for _, b := range m.bonds {
				if b.live {
					m.readAddrs(b)
				}
			}
		}
		// While a redirect waits for its first frame, look more often:
		// the record's time comes from the kernel, only its report
		// waits, so this need not compete with the bond's switch.
		switch {
		case m.waitingFirst():
			poll.Reset(20 * time.Millisecond)
		case m.anyPending():
			poll.Reset(m.o.TTL / 4)
		default:
			poll.Stop()
		}
		if !addrsArmed && m.anyLive() {
			addrs.Reset(10 * time.Second)
			addrsArmed = true
		}
	}
}

func (m *Manager) shutdown() {
	m.o.Objects.clear()
	for idx, hs := range m.hooks {
		for _, h := range hs {
			if err := h.Close(false); err != nil {
				m.o.Log.Warn("detaching the fast path", "ifindex", idx, "err", err)
			}
		}
	}
	m.hooks = map[int][]*tc.HookLink{}
	for idx := range m.allmulti {
		m.multicast(idx, false)
	}
}

func (m *Manager) setStatus(b *bondRun) {
	st := BondStatus{Name: b.view.Name, Live: b.live, Why: b.why}
	m.mu.Lock()
	old, had := m.status[b.view.Index]
	m.status[b.view.Index] = st
	m.mu.Unlock()
	if !had || old != st {
		m.saveStatus()
	}
}

func (m *Manager) saveStatus() {
	if m.o.StateDir == "" {
		return
	}
	if err := WriteState(m.o.StateDir, m.Status()); err != nil {
		m.o.Log.Warn("cannot save the fast path's status", "err", err)
	}
}

func (m *Manager) bondView(v bond.FastView) {
	b, ok := m.bonds[v.Index]
	if !ok {
		b = &bondRun{}
		m.bonds[v.Index] = b
	}
	b.view = v
	live, why := Eligible(v)
	if live != b.live || why != b.why || !ok {
		if live {
			m.o.Log.Info("bond fast path live", "bond", v.Name)
		} else {
			m.o.Log.Warn("bond fast path off", "bond", v.Name, "reason", why)
		}
	}
	b.live, b.why = live, why
	if !live {
		m.unwire(b, nil)
		m.setStatus(b)
		return
	}
	if err := m.wire(b); err != nil {
		b.live, b.why = false, err.Error()
		m.o.Log.Error("bond fast path off", "bond", v.Name, "reason", b.why)
		m.unwire(b, nil)
	}
	m.setStatus(b)
	m.endIfSwitched(b)
}

// wire attaches the hooks and writes the tables for a live bond.
func (m *Manager) wire(b *bondRun) error {
	v := b.view
	var now []int
	for _, s := range v.Slaves {
		now = append(now, s.Index)
		if err := m.attach(s.Index, s.Name); err != nil {
			return err
		}
		m.multicast(s.Index, true)
		if err := m.o.Objects.SetSlave(s.Index, v.Index, s.Carrier); err != nil {
			return err
		}
	}
	m.unwire(b, now)
	b.slaves = now
	if b.mac == nil {
		m.readAddrs(b)
	}
	return m.o.Objects.SetBond(v.Index, v.Active, Candidates(v), m.o.TTL, Flags(v))
}

// unwire drops the slaves of b not in keep (all with nil), and with nil
// the bond's table and redirect.
func (m *Manager) unwire(b *bondRun, keep []int) {
	if keep == nil {
		m.o.Objects.removeBond(b.view.Index, b.slaves)
		b.pending = nil
	}
	for _, s := range b.slaves {
		if slices.Contains(keep, s) {
			continue
		}
		m.o.Objects.removeSlave(s, b.view.Index)
		m.detach(s)
		m.multicast(s, false)
	}
	if keep == nil {
		b.slaves = nil
	}
}

func (m *Manager) removeBond(idx int) {
	b, ok := m.bonds[idx]
	if !ok {
		return
	}
	m.unwire(b, nil)
	delete(m.bonds, idx)
	m.mu.Lock()
	delete(m.status, idx)
	m.mu.Unlock()
	m.saveStatus()
}

func (m *Manager) attach(idx int, name string) error {
	if _, ok := m.hooks[idx]; ok {
		return nil
	}
	var hs []*tc.HookLink
	for _, h := range []tc.Hook{
		{Program: m.o.Objects.FpEgress, Egress: true, Name: hookEgress, Priority: hookPriority},
		{Program: m.o.Objects.FpIngress, Name: hookIngress, Priority: hookPriority},
	} {
		l, err := tc.AttachHook(m.o.Mechanism, idx, name, h)
		if err != nil {
			for _, x := range hs {
				x.Close(false)
			}
			return err
		}
		hs = append(hs, l)
	}
	m.hooks[idx] = hs
	return nil
}

func (m *Manager) detach(idx int) {
	for _, h := range m.hooks[idx] {
		if err := h.Close(false); err != nil {
			m.o.Log.Debug("detaching the fast path", "ifindex", idx, "err", err)
		}
	}
	delete(m.hooks, idx)
}

// multicast keeps a slave in allmulticast mode while its bond has the fast
// path: an active-backup bond gives its multicast list (IPv6
// solicited-node groups among them) to the active slave only, so a backup
// NIC would filter neighbour solicitations out before the redirect to the
// bond could take them. Set ahead, since it takes RTNL; only what this run
// set is cleared.
func (m *Manager) multicast(idx int, on bool) {
	ours, known := m.allmulti[idx]
	if on == known || (!on && !ours) {
		if !on {
			delete(m.allmulti, idx)
		}
		return
	}
	l, err := netlink.LinkByIndex(idx)
	if err != nil {
		delete(m.allmulti, idx)
		return
	}
	switch {
	case on && l.Attrs().RawFlags&unix.IFF_ALLMULTI != 0:
		m.allmulti[idx] = false // someone else's: left alone
		return
	case on:
		err = netlink.LinkSetAllmulticastOn(l)
	default:
		err = netlink.LinkSetAllmulticastOff(l)
	}
	if err != nil {
		m.o.Log.Warn("fast path: allmulticast", "ifname", l.Attrs().Name, "on", on, "err", err)
	}
	if on && err == nil {
		m.allmulti[idx] = true
	} else {
		delete(m.allmulti, idx)
	}
}

// readAddrs caches the bond's MAC and addresses for the announcements:
// reading them takes RTNL, which a failover must not wait for.
func (m *Manager) readAddrs(b *bondRun) {
	l, err := netlink.LinkByIndex(b.view.Index)
	if err != nil {
		m.o.Log.Debug("cannot read the bond for its announcements", "bond", b.view.Name, "err", err)
		return
	}
	list, err := netlink.AddrList(l, unix.AF_UNSPEC)
	if err != nil {
		m.o.Log.Debug("cannot read the bond's addresses", "bond", b.view.Name, "err", err)
		return
	}
	b.mac = l.Attrs().HardwareAddr
	b.addrs = b.addrs[:0]
	for _, a := range list {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			b.addrs = append(b.addrs, ip.Unmap())
		}
	}
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
