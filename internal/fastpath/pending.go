package fastpath

import (
	"strconv"
	"strings"
	"time"

	"github.com/linkbeat/linkbeat/internal/bond"
	"github.com/linkbeat/linkbeat/internal/carrier"
)

// carrier follows a carrier change: for a slave whose loss started a
// redirect, it announces the bond's addresses out of the replacement.
func (m *Manager) carrier(ev carrier.Event) {
	for idx, b := range m.bonds {
		if !b.live || !b.has(ev.Ifindex) {
			continue
		}
		r, ok := m.o.Objects.Redirect(idx)
		if ev.Up || !ok || int(r.Dead) != ev.Ifindex {
			m.settle(idx, b)
			continue
		}
		if b.pending != nil && b.pending.r.DeadNs == r.DeadNs {
			continue
		}
		b.pending = &pendingRun{r: r}
		to := m.slaveName(b, int(r.To))
		if Flags(b.view)&FlagHash != 0 {
			// The partner sees one aggregated port: the bond's MAC
			// has not moved, so there is nothing to announce.
			m.o.Log.Info("bond fast failover started", "bond", b.view.Name, "from", ev.Ifname, "to", strings.Join(spread(b.view, ev.Ifindex), ","),
				"spread", "flow hash")
			continue
		}
		err := sendFrames(int(r.To), announcements(b.mac, b.addrs))
		m.o.Log.Info("bond fast failover started", "bond", b.view.Name, "from", ev.Ifname, "to", to,
			"announced", len(b.addrs), "announce_err", err)
	}
}

// sendsTo says whether the bond may still hand frames to a dead slave:
// in active-backup while it is the active slave, in tlb and alb while the
// bond has not marked it down (it rebalances then), in the hash modes
// until linkwatch's notice of the carrier loss (operstate down, which
// linkwatch sets and first sends after its notifiers): the bond's NETDEV_CHANGE
// notifier, which runs first, rebuilt its transmit array without the
// slave (bond_update_slave_arr drops a slave without carrier,
// bond_slave_can_tx), whatever speed the driver reports and long before
// miimon marks it down; never once carrier is back.
func (b *bondRun) sendsTo(dead int) bool {
	for _, s := range b.view.Slaves {
		if s.Index != dead {
			continue
		}
		if s.Carrier {
			return false
		}
		if Flags(b.view)&FlagHash != 0 {
			return s.NoticedCarrier && s.BondUp && inTxArray(b.view, s)
		}
		if Flags(b.view)&FlagAny != 0 {
			return s.BondUp
		}
		return b.view.Active == dead
	}
	return false
}

func (b *bondRun) has(idx int) bool {
	for _, s := range b.slaves {
		if s == idx {
			return true
		}
	}
	return false
}

func (m *Manager) slaveName(b *bondRun, idx int) string {
	for _, s := range b.view.Slaves {
		if s.Index == idx {
			return s.Name
		}
	}
	return ""
}

// endIfSwitched ends a bond's redirect once the bond no longer hands
// frames to the dead slave (it switched) or the dead slave has carrier
// again.
func (m *Manager) endIfSwitched(b *bondRun) {
	r, ok := m.o.Objects.Redirect(b.view.Index)
	if !ok {
		m.settle(b.view.Index, b)
		return
	}
	if b.sendsTo(int(r.Dead)) {
		return
	}
	if b.pending == nil || b.pending.r.DeadNs != r.DeadNs {
		// The bond switched before the carrier event was read: the
		// redirect still gets its record.
		b.pending = &pendingRun{r: r}
	}
	b.pending.r.FirstNs = r.FirstNs
	if Flags(b.view)&FlagAny != 0 && Flags(b.view)&FlagHash == 0 && !b.carrier(int(r.Dead)) {
		// tlb and alb rebalance just after the notice that marks the
		// slave down: no longer refreshed, the redirect runs out by
		// itself (the TTL; follow ends it) instead of racing the
		// rebalance. The hash modes rebuilt before the notice.
		return
	}
	m.o.Objects.endRedirect(b.view.Index)
	m.settle(b.view.Index, b)
}

func (b *bondRun) carrier(idx int) bool {
	for _, s := range b.view.Slaves {
		if s.Index == idx {
			return s.Carrier
		}
	}
	return false
}

// settle reports a pending run whose redirect is gone.
func (m *Manager) settle(idx int, b *bondRun) {
	if b.pending == nil {
		return
	}
	if _, ok := m.o.Objects.Redirect(idx); ok {
		return
	}
	m.firstFrame(b, true)
	st, _ := m.slaveStats(int(b.pending.r.Dead))
	m.o.Log.Info("bond fast failover ended", "bond", b.view.Name, "from", m.slaveName(b, int(b.pending.r.Dead)),
		"active_slave", m.slaveName(b, b.view.Active), "redirected_total", st.TxRedirected, "taken", m.takenSince(b))
	b.pending = nil
}

// takenSince says how many of the dead slave's frames each live slave
// sent since the last redirect ended ("eth1:12,eth2:9"; in active-backup
// one slave, in the hash modes the flows' spread), and moves the mark.
func (m *Manager) takenSince(b *bondRun) string {
	if b.taken == nil {
		b.taken = map[int]uint64{}
	}
	var parts []string
	for _, idx := range b.slaves {
		st, ok := m.slaveStats(idx)
		if !ok {
			continue
		}
		n := st.TxTaken
		if base := b.taken[idx]; base <= n {
			n -= base // else the counter started again: all of it is new
		}
		if n > 0 {
			parts = append(parts, m.slaveName(b, idx)+":"+strconv.FormatUint(n, 10))
		}
		b.taken[idx] = st.TxTaken
	}
	return strings.Join(parts, ",")
}

// spread names the live slaves a hash-mode bond's dead slave's flows are
// spread over: its candidates with carrier, as the egress program picks
// them (by flow hash).
func spread(v bond.FastView, dead int) []string {
	var out []string
	for _, c := range Candidates(v) {
		for _, s := range v.Slaves {
			if s.Index == int(c) && s.Index != dead && s.Carrier {
				out = append(out, s.Name)
			}
		}
	}
	return out
}

func (m *Manager) slaveStats(idx int) (Stats, bool) {
	var st Stats
	err := m.o.Objects.FpSlaveStats.Lookup(uint32(idx), &st)
	return st, err == nil
}

// follow refreshes each redirect that still waits for the bond, and
// records the first redirected frame.
func (m *Manager) follow() {
	now := m.o.Now()
	for idx, b := range m.bonds {
		if b.pending == nil {
			continue
		}
		r, ok := m.o.Objects.Redirect(idx)
		if !ok || r.DeadNs != b.pending.r.DeadNs {
			m.settle(idx, b)
			continue
		}
		b.pending.r.FirstNs = r.FirstNs
		if now > int64(r.ExpiresNs) {
			// Run out, unrefreshed (the bond no longer sends to the
			// dead slave): void in the kernel already, gone now.
			m.o.Objects.endExpired(idx, r)
			m.settle(idx, b)
			continue
		}
		m.firstFrame(b, false)
		if b.sendsTo(int(r.Dead)) {
			m.o.Objects.refresh(idx, r, now, m.o.TTL)
		}
	}
}

// anyPending says whether a redirect is in force, which follow refreshes
// and watches for its end.
func (m *Manager) anyPending() bool {
	for _, b := range m.bonds {
		if b.pending != nil {
			return true
		}
	}
	return false
}

// anyLive says whether a bond has the fast path on, whose addresses are
// read again now and then for the announcements.
func (m *Manager) anyLive() bool {
	for _, b := range m.bonds {
		if b.live {
			return true
		}
	}
	return false
}

func (m *Manager) waitingFirst() bool {
	for _, b := range m.bonds {
		if b.pending != nil && !b.pending.recorded {
			return true
		}
	}
	return false
}

// firstFrame records the failover once its first frame was redirected;
// ending says the redirect is over, so it is recorded (or not) now.
func (m *Manager) firstFrame(b *bondRun, ending bool) {
	p := b.pending
	if p.recorded {
		return
	}
	if p.r.FirstNs == 0 {
		if ending {
			p.recorded = true
			m.o.Log.Info("bond fast failover redirected no frame", "bond", b.view.Name, "from", m.slaveName(b, int(p.r.Dead)),
				"to", m.slaveName(b, int(p.r.To)), "kernel_ns", p.r.DeadNs)
		}
		return
	}
	p.recorded = true
	d := time.Duration(p.r.FirstNs - p.r.DeadNs)
	f := bond.Failover{Bond: b.view.Name, From: m.slaveName(b, int(p.r.Dead)), To: m.slaveName(b, int(p.r.To)),
		Reason: bond.ReasonCarrier, By: "fastpath", KernelNs: int64(p.r.DeadNs), Duration: d, At: time.Now()}
	m.o.Log.Info("bond fast failover", "bond", f.Bond, "from", f.From, "to", f.To, "reason", f.Reason, "by", f.By,
		"first_redirect", d, "first_redirect_us", d.Microseconds(), "source", sourceName(p.r.Source), "kernel_ns", p.r.DeadNs)
	if m.o.Record != nil {
		m.o.Record(f)
	}
}

func sourceName(s uint32) string {
	switch s {
	case 1:
		return "fentry"
	case 2:
		return "kprobe"
	case SourceNetlink:
		return "netlink"
	}
	return "unknown"
}
