package source

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/linkbeat/linkbeat/internal/carrier"
	"github.com/linkbeat/linkbeat/internal/monotime"
	"github.com/linkbeat/linkbeat/internal/registry"
)

type netlinkBatch struct {
	updates []registry.Update
	err     error
}

// loop is the state owned by Run's goroutine.
type loop struct {
	d         *Source
	h         Handler
	table     *registry.Table
	tracker   *carrier.Tracker
	lastDrops uint64
	// bpfEvents and handledSeq let a netlink notice wait for the BPF
	// events queued before it (see catchUp).
	bpfEvents  <-chan carrier.Event
	handledSeq uint64
	// sawBPF asks for a drop check once the BPF queue is drained.
	sawBPF bool
}

// Run streams events to the handler until ctx ends. Where an event
// enters: the BPF reader and the netlink reader below; where it is
// ordered: the carrier tracker; where it leaves: the handler.
func (d *Source) Run(ctx context.Context, h Handler) error {
	l := &loop{d: d, h: d.observe(h), table: registry.NewTable(), tracker: carrier.NewTracker()}
	nlBatches, stopReaders := l.startReaders(ctx)
	defer stopReaders()
	if err := l.start(ctx); err != nil {
		return err
	}
	// Only a watchdog needs a timer: otherwise the loop sleeps until an event.
	var beat <-chan time.Time
	if d.cfg.Heartbeat > 0 && h.Heartbeat != nil {
		t := time.NewTicker(d.cfg.Heartbeat)
		defer t.Stop()
		beat = t.C
	}
	l.serve(ctx, nlBatches, beat)
	return nil
}

// startReaders starts the BPF and netlink readers; stop closes their
// sources and waits for them, so nothing outlives Run.
func (l *loop) startReaders(ctx context.Context) (nlBatches <-chan netlinkBatch, stop func()) {
	d := l.d
	bpfEvents := make(chan carrier.Event, 1024)
	l.bpfEvents = bpfEvents
	batches := make(chan netlinkBatch, 64)
	readersDone := make(chan struct{}, 2)
	bpf, watcher := d.bpf, d.watcher
	if bpf != nil {
		go func() { readBPF(ctx, bpf, d, bpfEvents); readersDone <- struct{}{} }()
	} else {
		readersDone <- struct{}{}
	}
	go func() { readNetlink(ctx, watcher, d, batches); readersDone <- struct{}{} }()
	return batches, func() {
		d.closeSources()
		<-readersDone
		<-readersDone
	}
}

// start makes the first resync and tells the handler it is ready.
func (l *loop) start(ctx context.Context) error {
	d := l.d
	// The subscription is open since Open, so nothing is lost between
	// this dump and the first notice.
	if err := l.resync(ctx, "start"); err != nil {
		return err
	}
	d.pruneTraffic()
	for name := range d.wanted {
		if _, ok := l.table.ByName(name); !ok {
			// Not an error: hot-plugged NICs, VLANs and bonds come later.
			d.log.Warn("configured interface not present: monitored once it appears", "ifname", name)
		}
	}
	d.log.Info("ready", "interfaces", l.attachedCount(), "carrier_source", d.features.CarrierSource, "tc", d.features.TCMechanism)
	if l.h.Ready != nil {
		var s Startup
		for _, link := range l.table.Links() {
			if l.monitored(link) {
				s.Monitored = append(s.Monitored, link)
			} else {
				s.Unmonitored = append(s.Unmonitored, link)
			}
		}
		l.h.Ready(ctx, s)
	}
	return nil
}

// serve is the event loop: one event at a time, until ctx ends.
func (l *loop) serve(ctx context.Context, nlBatches <-chan netlinkBatch, beat <-chan time.Time) {
	// The drop counter is read when a burst of BPF events has been
	// drained, and once more a little later (a drop is counted just after
	// the reservation that failed, so it can land after the drain): no
	// timer runs while the links are quiet.
	settle := l.d.cfg.DropSettle
	if settle == 0 {
		settle = 250 * time.Millisecond
	}
	recheck := time.NewTimer(settle)
	recheck.Stop()
	defer recheck.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-l.bpfEvents:
			l.kernelEvent(ctx, ev)
		case b := <-nlBatches:
			l.netlinkBatch(ctx, b)
		case <-recheck.C:
			l.checkDrops(ctx)
		case <-beat:
			l.h.Heartbeat(ctx)
		case r := <-l.d.interfaces:
			l.reload(ctx, r)
		}
		if l.sawBPF && len(l.bpfEvents) == 0 {
			l.sawBPF = false
			l.checkDrops(ctx)
			recheck.Reset(settle)
		}
	}
}

// netlinkBatch takes what one netlink read returned; lost notices mean a
// resync.
func (l *loop) netlinkBatch(ctx context.Context, b netlinkBatch) {
	if errors.Is(b.err, registry.ErrOverflow) {
		l.d.log.Warn("netlink notices lost, resyncing", "err", b.err)
		if err := l.resync(ctx, "netlink_overflow"); err != nil {
			l.d.log.Error("resync failed", "err", err)
		}
		return
	}
	if b.err != nil {
		l.d.log.Warn("bad netlink message", "err", b.err)
	}
	for _, u := range b.updates {
		l.netlinkUpdate(ctx, u, carrier.SourceNetlink)
	}
}

func readBPF(ctx context.Context, bpf ring, d *Source, out chan<- carrier.Event) {
	for {
		ev, err := bpf.Read()
		if err != nil {
			if errors.Is(err, os.ErrClosed) || ctx.Err() != nil {
				return
			}
			d.log.Warn("bad carrier event", "err", err)
			continue
		}
		select {
		case out <- ev:
		case <-ctx.Done():
			return
		}
	}
}

func readNetlink(ctx context.Context, w linkWatcher, d *Source, out chan<- netlinkBatch) {
	for {
		updates, err := w.Receive()
		if ctx.Err() != nil {
			return
		}
		if err != nil && !errors.Is(err, registry.ErrOverflow) && len(updates) == 0 {
			// A closed or broken socket: only shutdown closes it.
			d.log.Error("netlink receive failed", "err", err)
			time.Sleep(100 * time.Millisecond)
		}
		select {
		case out <- netlinkBatch{updates: updates, err: err}:
		case <-ctx.Done():
			return
		}
	}
}

func (l *loop) kernelEvent(ctx context.Context, ev carrier.Event) {
	l.handledSeq = max(l.handledSeq, ev.Seq)
	l.sawBPF = true
	report, gap := l.tracker.Kernel(ev)
	if report {
		l.report(ctx, nil, []carrier.Event{ev})
	}
	if gap {
		l.d.log.Warn("carrier counters jumped: events were lost", "ifname", ev.Ifname, "up_count", ev.UpCount, "down_count", ev.DownCount)
		if err := l.resync(ctx, "counter_gap"); err != nil {
			l.d.log.Error("resync failed", "err", err)
		}
	}
}

func (l *loop) netlinkUpdate(ctx context.Context, u registry.Update, src carrier.Source) {
	changes := l.table.Apply(u)
	for _, c := range changes {
		l.linkChanged(ctx, c)
	}
	var evs []carrier.Event
	if !u.Deleted && !u.Bridge {
		if up, known := l.tracker.Carrier(u.Link.Index); known && up != u.Link.Carrier {
			l.catchUp(ctx)
		}
		if ev, ok := l.tracker.Netlink(u.Link.CarrierState(), monotime.Now(), src); ok {
			evs = append(evs, ev)
		}
	}
	l.report(ctx, changes, evs)
}

// report hands out what one step learnt, once the tracker has ordered it:
// the bonds' side first (each change of a bond or slave, with the
// carrier the tracker holds), then each carrier change.
func (l *loop) report(ctx context.Context, changes []registry.Change, evs []carrier.Event) {
	if l.h.Bond != nil {
		l.tellBonds(ctx, changes, evs)
	}
	for _, ev := range evs {
		l.h.Carrier(ctx, Event{Event: ev, Membership: l.membership(ev.Ifindex), Monitored: l.monitoredIndex(ev.Ifindex, ev.Ifname)})
	}
}

// tellBonds gives the bond side one LinkEvent per bond or slave a step
// touched: a change of the link, a carrier change, or both.
func (l *loop) tellBonds(ctx context.Context, changes []registry.Change, evs []carrier.Event) {
	carrierNs := func(idx int) int64 {
		for _, ev := range evs {
			if ev.Ifindex == idx {
				return int64(ev.Time)
			}
		}
		return 0
	}
	for _, c := range changes {
		l.tellBond(ctx, c, carrierNs(c.Link.Index))
	}
	for _, ev := range evs {
		if slices.ContainsFunc(changes, func(c registry.Change) bool { return c.Link.Index == ev.Ifindex }) {
			continue
		}
		if link, ok := l.table.Get(ev.Ifindex); ok {
			l.tellBond(ctx, registry.Change{Kind: registry.Updated, Link: link, Old: link}, int64(ev.Time))
		}
	}
}

// tellBond hands a bond or slave's change to Handler.Bond, with the
// tracker's carrier: the one ordering of carrier.
func (l *loop) tellBond(ctx context.Context, c registry.Change, carrierNs int64) {
	if !bondish(c.Link) && !(c.Kind == registry.Updated && bondish(c.Old)) {
		return
	}
	l.h.Bond(ctx, LinkEvent{Change: l.ordered(c), Membership: l.membership(c.Link.Index), CarrierNs: carrierNs, Bonds: BondsTouched(l.table, c)})
}

// ordered gives a change the carrier the tracker holds, when it knows the
// link: a BPF event may be newer than the table's last notice.
func (l *loop) ordered(c registry.Change) registry.Change {
	if st, ok := l.tracker.State(c.Link.Index); ok && c.Kind != registry.Removed {
		c.Link.Carrier, c.Link.UpCount, c.Link.DownCount = st.Carrier, st.UpCount, st.DownCount
	}
	return c
}

func bondish(l registry.Link) bool { return l.Bond != nil || l.BondSlave != nil }

// BondsTouched lists the bonds whose membership a change of table t may
// alter (the link's bond, the bond it was in, the link itself if it is or
// was a bond), each with its slaves as t holds them after the change.
func BondsTouched(t *registry.Table, c registry.Change) []BondMembers {
	var idx []int
	add := func(i int) {
		if i != 0 && !slices.Contains(idx, i) {
			idx = append(idx, i)
		}
	}
	if c.Link.BondSlave != nil {
		add(c.Link.MasterIndex)
	}
	if c.Old.BondSlave != nil {
		add(c.Old.MasterIndex)
	}
	if c.Link.Bond != nil || c.Old.Bond != nil {
		add(c.Link.Index)
	}
	out := make([]BondMembers, 0, len(idx))
	for _, i := range idx {
		out = append(out, bondMembers(t, i))
	}
	return out
}

// bondMembers reads a bond and its slaves from the table.
func bondMembers(t *registry.Table, idx int) BondMembers {
	b := BondMembers{Index: idx}
	if link, ok := t.Get(idx); ok && link.Bond != nil {
		b.Name = link.Name
	}
	for _, s := range t.Slaves(idx) {
		if s.BondSlave != nil {
			b.Slaves = append(b.Slaves, Member{Index: s.Index, Name: s.Name})
		}
	}
	return b
}

// Bonds is every bond in table t, with its slaves.
func Bonds(t *registry.Table) []BondMembers {
	var out []BondMembers
	for _, link := range t.Links() {
		if link.Bond != nil {
			out = append(out, bondMembers(t, link.Index))
		}
	}
	return out
}

// linkChanged keeps the TC attachments and the tracker in step with the
// interfaces: new ones, deleted ones, renamed ones.
func (l *loop) linkChanged(ctx context.Context, c registry.Change) {
	// Not a logger With the link: that formats its attributes on every
	// change, a carrier loss included, and most changes log nothing.
	log := func(msg string, args ...any) {
		l.d.log.Info(msg, append([]any{"ifname", c.Link.Name, "ifindex", c.Link.Index}, args...)...)
	}
	now, was := l.monitored(c.Link), c.Kind == registry.Updated && l.monitored(c.Old)
	switch c.Kind {
	case registry.Removed:
		l.tracker.Forget(c.Link.Index)
		l.detach(c.Link, true)
		if l.monitored(c.Link) {
			log("interface removed")
			l.tellLink(ctx, c)
		}
		return
	case registry.Updated:
		if c.Renamed() {
			log("interface renamed", "old", c.Old.Name)
			if was {
				l.d.observeRenamed(c, now)
			}
		}
	}
	switch {
	case now && (c.Kind == registry.Added || !was):
		log("interface added", "kind", c.Link.Kind, "carrier", c.Link.Carrier)
		l.attach(c.Link)
		l.tellLink(ctx, registry.Change{Kind: registry.Added, Link: c.Link})
	case !now && was:
		// Renamed out of the monitored set.
		l.detach(c.Link, false)
		l.tellLink(ctx, registry.Change{Kind: registry.Removed, Link: c.Link, Old: c.Old, Released: true})
	}
}

// reload applies a config reload: the monitored set first, then the
// handler hears of the reload, behind what the set's change reported.
func (l *loop) reload(ctx context.Context, r Reload) {
	if r.SetInterfaces {
		l.setInterfaces(ctx, r.Interfaces)
	}
	if r.Notify && l.h.Reload != nil {
		l.h.Reload(ctx, Bonds(l.table))
	}
}

// setInterfaces changes the monitored set: links that join are attached
// and reported as added, with their carrier; links that leave are
// detached and reported as released. Others are not touched.
func (l *loop) setInterfaces(ctx context.Context, names []string) {
	before := map[int]bool{}
	for _, link := range l.table.Links() {
		before[link.Index] = l.monitored(link)
	}
	l.d.setWanted(names)
	for _, link := range l.table.Links() {
		now, was := l.monitored(link), before[link.Index]
		switch {
		case now && !was:
			l.d.log.Info("interface now monitored", "ifname", link.Name, "ifindex", link.Index, "carrier", link.Carrier)
			l.attach(link)
			l.tellLink(ctx, registry.Change{Kind: registry.Added, Link: link})
		case !now && was:
			l.d.log.Info("interface no longer monitored", "ifname", link.Name, "ifindex", link.Index)
			l.detach(link, false)
			l.tellLink(ctx, registry.Change{Kind: registry.Removed, Link: link, Released: true})
		}
	}
}

func (l *loop) tellLink(ctx context.Context, c registry.Change) {
	if l.h.Link != nil {
		l.h.Link(ctx, LinkEvent{Change: l.ordered(c), Membership: l.membership(c.Link.Index)})
	}
}

// membership reads a link's bond from the table as it is now.
func (l *loop) membership(idx int) Membership {
	link, ok := l.table.Get(idx)
	if !ok {
		return Membership{}
	}
	name := func(i int) string {
		if o, ok := l.table.Get(i); ok && i != 0 {
			return o.Name
		}
		return ""
	}
	switch {
	case link.BondSlave != nil:
		return Membership{Bond: name(link.MasterIndex), Slave: link.Name}
	case link.Bond != nil:
		return Membership{Bond: link.Name, Slave: name(link.Bond.ActiveSlave)}
	}
	return Membership{}
}

func (l *loop) attach(link registry.Link) {
	if l.d.traffic == nil {
		return
	}
	if err := l.d.traffic.Attach(link.Index, link.Name); err != nil {
		l.d.log.Warn("cannot count traffic", "ifname", link.Name, "err", err)
	}
}

func (l *loop) detach(link registry.Link, gone bool) {
	if l.d.traffic == nil {
		return
	}
	if err := l.d.traffic.Detach(link.Index, gone); err != nil {
		l.d.log.Warn("cannot stop counting traffic", "ifname", link.Name, "err", err)
	}
}

func (l *loop) attachedCount() int {
	if l.d.traffic == nil {
		return 0
	}
	return len(l.d.traffic.Attached())
}

// monitoredIndex decides for a BPF event, which may come before netlink
// has told us of the interface.
func (l *loop) monitoredIndex(idx int, name string) bool {
	if link, ok := l.table.Get(idx); ok {
		return l.monitored(link)
	}
	return l.d.monitored(registry.Link{Index: idx, Name: name, Loopback: name == "lo"}, "")
}

func (l *loop) monitored(link registry.Link) bool {
	master := ""
	if m, ok := l.table.Get(link.MasterIndex); ok && link.MasterIndex != 0 {
		master = m.Name
	}
	return l.d.monitored(link, master)
}

// resync makes the table and tracker equal to a full dump and reports the
// carrier changes that were missed.
func (l *loop) resync(ctx context.Context, reason string) error {
	dump, err := l.d.dump()
	if err != nil {
		return fmt.Errorf("resync (%s): %w", reason, err)
	}
	changes := l.table.Replace(dump)
	for _, c := range changes {
		l.linkChanged(ctx, c)
	}
	now := monotime.Now()
	var evs []carrier.Event
	for _, link := range dump {
		if ev, ok := l.tracker.Netlink(link.CarrierState(), now, carrier.SourceResync); ok {
			evs = append(evs, ev)
		}
	}
	l.report(ctx, changes, evs)
	l.d.observeResync(reason)
	if reason != "start" {
		l.d.log.Info("resynced from netlink dump", "reason", reason, "links", len(dump))
	}
	return nil
}

// catchUp handles the BPF events queued before a netlink notice that shows
// a change. The driver's call, and so its BPF event, always precedes
// linkwatch's notice, but the two readers race: without this, a slow ring
// reader (as under emulation) lets netlink report the change first, late.
func (l *loop) catchUp(ctx context.Context) {
	if l.d.bpf == nil {
		return
	}
	queued, err := l.d.bpf.Queued()
	if err != nil {
		l.d.log.Warn("cannot read carrier sequence", "err", err)
		return
	}
	// Bounded: a stuck reader must not stall netlink, the fallback.
	timeout := time.NewTimer(time.Second)
	defer timeout.Stop()
	for l.handledSeq < queued {
		select {
		case ev := <-l.bpfEvents:
			l.kernelEvent(ctx, ev)
		case <-timeout.C:
			l.d.log.Warn("carrier ring reader is behind; trusting netlink", "handled", l.handledSeq, "queued", queued)
			return
		case <-ctx.Done():
			return
		}
	}
}

func (l *loop) checkDrops(ctx context.Context) {
	if l.d.bpf == nil {
		return
	}
	n, err := l.d.bpf.Drops()
	if err != nil {
		l.d.log.Warn("cannot read drop counter", "err", err)
		return
	}
	l.d.observeDrops(n)
	if n > l.lastDrops {
		l.d.log.Warn("carrier ring buffer dropped events", "dropped", n-l.lastDrops)
		l.lastDrops = n
		if err := l.resync(ctx, "ringbuf_drop"); err != nil {
			l.d.log.Error("resync failed", "err", err)
		}
	}
}
