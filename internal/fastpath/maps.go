package fastpath

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"

	"github.com/linkbeat/linkbeat/gen"
	"github.com/linkbeat/linkbeat/internal/tc"
)

// Map names, as pinned under <pin dir>/fastpath and shown by bpftool.
const (
	MapBonds     = gen.FastpathMapFpBonds     // candidate table, by bond ifindex
	MapSlaves    = gen.FastpathMapFpSlaves    // slave -> bond, carrier
	MapRedirects = gen.FastpathMapFpRedirects // pending redirects, by bond ifindex
	MapStats     = gen.FastpathMapFpSlaveStats
)

// PinSubdir is the fast path's directory under the daemon's pin directory.
const PinSubdir = "fastpath"

// SourceNetlink marks a redirect the daemon made on a netlink notice
// (fp_redirect.source; 1 and 2 are the carrier programs' fentry and kprobe).
const SourceNetlink = 3

// fp_bond.flags (linkbeat.h).
const (
	FlagIngress = 1 // hand the replacement's frames to the bond (active-backup)
	FlagAny     = 2 // any slave's loss counts (tlb, alb, hash modes)
	FlagHash    = 4 // spread a dead slave's frames over the live candidates by flow (hash modes)
)

// Redirect is one pending fast failover, as the kernel holds it.
type Redirect = gen.FastpathFpRedirect

// Stats are one slave's redirect counters.
type Stats = gen.FastpathFpStats

// Objects are the fast path's maps and TC programs, loaded.
type Objects struct {
	gen.FastpathObjects
	// slaves holds every ifindex fp_slaves may have an entry for, so that
	// the carrier change of a link that is no slave (most of them) costs
	// no map lookup: that lookup is a system call on the caller's
	// goroutine, the source's, ahead of the routes' reaction.
	slavesMu sync.Mutex
	slaves   map[uint32]struct{}
}

// maySlave says whether fp_slaves may hold idx. It is added before the
// entry is written and removed after it is deleted, so a false is sure.
func (o *Objects) maySlave(idx int) bool {
	o.slavesMu.Lock()
	defer o.slavesMu.Unlock()
	_, ok := o.slaves[uint32(idx)]
	return ok
}

func (o *Objects) knowSlave(idx int, known bool) {
	o.slavesMu.Lock()
	defer o.slavesMu.Unlock()
	if o.slaves == nil {
		o.slaves = map[uint32]struct{}{}
	}
	if known {
		o.slaves[uint32(idx)] = struct{}{}
	} else {
		delete(o.slaves, uint32(idx))
	}
}

// Load creates the maps and loads the TC programs. The maps are fresh: a
// redirect an earlier run left is not carried over.
func Load(kernelTypes *btf.Spec) (*Objects, error) {
	spec, err := gen.LoadFastpath()
	if err != nil {
		return nil, fmt.Errorf("load embedded fast path object: %w", err)
	}
	o := &Objects{}
	if err := spec.LoadAndAssign(&o.FastpathObjects, &ebpf.CollectionOptions{
		Programs: ebpf.ProgramOptions{KernelTypes: kernelTypes},
	}); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("load fast path programs: %w", ve)
		}
		return nil, fmt.Errorf("load fast path programs: %w", err)
	}
	return o, nil
}

// Shared are the maps the carrier programs use too (carrier.BPFOptions).
func (o *Objects) Shared() map[string]*ebpf.Map {
	return map[string]*ebpf.Map{MapBonds: o.FpBonds, MapSlaves: o.FpSlaves, MapRedirects: o.FpRedirects}
}

// Pin pins the maps under dir/fastpath, replacing an earlier run's pins.
func (o *Objects) Pin(dir string) error {
	sub := filepath.Join(dir, PinSubdir)
	if err := os.MkdirAll(sub, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", sub, err)
	}
	for name, m := range map[string]*ebpf.Map{MapBonds: o.FpBonds, MapSlaves: o.FpSlaves, MapRedirects: o.FpRedirects, MapStats: o.FpSlaveStats} {
		p := filepath.Join(sub, name)
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove old pin %s: %w", p, err)
		}
		if err := m.Pin(p); err != nil {
			return fmt.Errorf("pin %s: %w", p, err)
		}
	}
	return nil
}

// Unpin removes the pins and their directory (the daemon's exit, after
// the manager cleared the maps): the next start makes fresh maps.
func (o *Objects) Unpin(dir string) error {
	var errs []error
	for _, m := range []*ebpf.Map{o.FpBonds, o.FpSlaves, o.FpRedirects, o.FpSlaveStats} {
		errs = append(errs, m.Unpin())
	}
	if err := os.Remove(filepath.Join(dir, PinSubdir)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Cleanup removes what a crashed run left: the pins under dir/fastpath
// (and the directory, if nothing else is in it) and the fast path's
// clsact filters on every interface of the caller's network namespace.
// It returns what it removed.
func Cleanup(dir string) ([]string, error) {
	var done []string
	var errs []error
	sub := filepath.Join(dir, PinSubdir)
	for _, name := range []string{MapBonds, MapSlaves, MapRedirects, MapStats} {
		err := os.Remove(filepath.Join(sub, name))
		switch {
		case err == nil:
			done = append(done, filepath.Join(PinSubdir, name))
		case !errors.Is(err, fs.ErrNotExist):
			errs = append(errs, err)
		}
	}
	if err := os.Remove(sub); err == nil {
		done = append(done, PinSubdir)
	} else if !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, fmt.Errorf("remove %s: %w", sub, err))
	}
	filters, err := tc.RemoveNamedFilters(hookEgress, hookIngress)
	done = append(done, filters...)
	return done, errors.Join(append(errs, err)...)
}

// SetBond writes a bond's candidate table.
func (o *Objects) SetBond(bondIdx, active int, cands []uint32, ttl time.Duration, flags uint32) error {
	v := gen.FastpathFpBond{TtlNs: uint64(ttl), Active: uint32(active), N: uint32(len(cands)), Flags: flags}
	copy(v.Cand[:], cands)
	if err := o.FpBonds.Put(uint32(bondIdx), v); err != nil {
		return fmt.Errorf("write fast path table of bond %d: %w", bondIdx, err)
	}
	return nil
}

// SetSlave writes a slave's entry. The carrier is written only with the
// entry's creation (or a move to another bond): after that, the carrier
// programs keep it, and the daemon's view may be older than theirs.
func (o *Objects) SetSlave(idx, bondIdx int, carrier bool) error {
	var cur gen.FastpathFpSlave
	if err := o.FpSlaves.Lookup(uint32(idx), &cur); err == nil && cur.Bond == uint32(bondIdx) {
		return nil
	}
	v := gen.FastpathFpSlave{Bond: uint32(bondIdx), Carrier: b2u(carrier)}
	o.knowSlave(idx, true)
	if err := o.FpSlaves.Put(uint32(idx), v); err != nil {
		return fmt.Errorf("write fast path slave %d: %w", idx, err)
	}
	return nil
}

// setCarrier is the netlink-only path's carrier mark.
func (o *Objects) setCarrier(idx int, up bool) (bondIdx int, ok bool) {
	if !o.maySlave(idx) {
		return 0, false
	}
	var cur gen.FastpathFpSlave
	if err := o.FpSlaves.Lookup(uint32(idx), &cur); err != nil {
		return 0, false
	}
	cur.Carrier = b2u(up)
	if err := o.FpSlaves.Update(uint32(idx), cur, ebpf.UpdateExist); err != nil {
		return 0, false
	}
	return int(cur.Bond), true
}

// Mark is fp_carrier's carrier-off pick, for a carrier loss the daemon
// learnt from netlink (no BPF carrier path): the same table, the same
// rules, so both paths pick the same replacement.
func (o *Objects) Mark(dead int, nowNs int64) error {
	bondIdx, ok := o.setCarrier(dead, false)
	if !ok {
		return nil
	}
	var b gen.FastpathFpBond
	if err := o.FpBonds.Lookup(uint32(bondIdx), &b); err != nil || (b.Flags&FlagAny == 0 && b.Active != uint32(dead)) {
		return nil
	}
	if b.Flags&FlagHash != 0 && !slices.Contains(b.Cand[:min(int(b.N), MaxSlaves)], uint32(dead)) {
		return nil
	}
	for _, c := range b.Cand[:min(int(b.N), MaxSlaves)] {
		var s gen.FastpathFpSlave
		if c == uint32(dead) || c == 0 || o.FpSlaves.Lookup(c, &s) != nil || s.Carrier == 0 || s.Bond != uint32(bondIdx) {
			continue
		}
		r := Redirect{DeadNs: uint64(nowNs), ExpiresNs: uint64(nowNs) + b.TtlNs, Dead: uint32(dead), To: c, Source: SourceNetlink}
		if err := o.FpRedirects.Put(uint32(bondIdx), r); err != nil {
			return fmt.Errorf("mark fast failover of bond %d: %w", bondIdx, err)
		}
		return nil
	}
	return nil
}

// Redirect reads a bond's pending redirect.
func (o *Objects) Redirect(bondIdx int) (Redirect, bool) {
	var r Redirect
	if err := o.FpRedirects.Lookup(uint32(bondIdx), &r); err != nil {
		return Redirect{}, false
	}
	return r, true
}

// refresh pushes a pending redirect's expiry to now+ttl, unless it is
// gone or no longer the same one.
func (o *Objects) refresh(bondIdx int, want Redirect, nowNs int64, ttl time.Duration) {
	r, ok := o.Redirect(bondIdx)
	if !ok || r.Dead != want.Dead || r.To != want.To || r.DeadNs != want.DeadNs {
		return
	}
	r.ExpiresNs = uint64(nowNs) + uint64(ttl)
	_ = o.FpRedirects.Update(uint32(bondIdx), r, ebpf.UpdateExist)
}

// endExpired deletes a bond's redirect if it is still the expired one
// want: a fresh mark the carrier program made meanwhile stays.
func (o *Objects) endExpired(bondIdx int, want Redirect) {
	if r, ok := o.Redirect(bondIdx); ok && r.DeadNs == want.DeadNs && r.Dead == want.Dead {
		o.endRedirect(bondIdx)
	}
}

// endRedirect deletes a bond's pending redirect.
func (o *Objects) endRedirect(bondIdx int) {
	_ = o.FpRedirects.Delete(uint32(bondIdx))
}

// removeBond deletes a bond's table, its redirect and its slaves' entries.
func (o *Objects) removeBond(bondIdx int, slaves []int) {
	_ = o.FpBonds.Delete(uint32(bondIdx))
	o.endRedirect(bondIdx)
	for _, s := range slaves {
		o.removeSlave(s, bondIdx)
	}
}

// removeSlave deletes a slave's entry if it is still bondIdx's.
func (o *Objects) removeSlave(idx, bondIdx int) {
	var cur gen.FastpathFpSlave
	if o.FpSlaves.Lookup(uint32(idx), &cur) == nil && cur.Bond == uint32(bondIdx) {
		if o.FpSlaves.Delete(uint32(idx)) == nil {
			o.knowSlave(idx, false)
		}
	}
}

// clear deletes every redirect and table: the daemon's start and exit.
func (o *Objects) clear() {
	for _, m := range []*ebpf.Map{o.FpRedirects, o.FpBonds, o.FpSlaves} {
		var k uint32
		// Bounded: entries the carrier programs add meanwhile are
		// deleted too, and a map never holds more than max_entries.
		for range m.MaxEntries() + 1 {
			if err := m.NextKey(nil, &k); err != nil {
				break
			}
			_ = m.Delete(k)
		}
	}
	o.slavesMu.Lock()
	clear(o.slaves)
	o.slavesMu.Unlock()
}

// SlaveStats reads the per-slave redirect counters.
func SlaveStats(m *ebpf.Map) (map[int]Stats, error) {
	out := map[int]Stats{}
	var k uint32
	var v Stats
	it := m.Iterate()
	for it.Next(&k, &v) {
		out[int(k)] = v
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read fast path counters: %w", err)
	}
	return out, nil
}

// Redirects reads every pending redirect, by bond ifindex.
func Redirects(m *ebpf.Map) (map[int]Redirect, error) {
	out := map[int]Redirect{}
	var k uint32
	var v Redirect
	it := m.Iterate()
	for it.Next(&k, &v) {
		out[int(k)] = v
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read fast path redirects: %w", err)
	}
	return out, nil
}

// OpenPinned opens the pinned redirect and counter maps read-only, for
// `linkbeat status` while the daemon runs.
func OpenPinned(pinDir string) (redirects, stats *ebpf.Map, err error) {
	ro := &ebpf.LoadPinOptions{ReadOnly: true}
	redirects, err = ebpf.LoadPinnedMap(filepath.Join(pinDir, PinSubdir, MapRedirects), ro)
	if err != nil {
		return nil, nil, fmt.Errorf("open pinned fast path redirects: %w", err)
	}
	stats, err = ebpf.LoadPinnedMap(filepath.Join(pinDir, PinSubdir, MapStats), ro)
	if err != nil {
		redirects.Close()
		return nil, nil, fmt.Errorf("open pinned fast path counters: %w", err)
	}
	return redirects, stats, nil
}

func b2u(b bool) uint32 {
	if b {
		return 1
	}
	return 0
}
