package carrier

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/linkbeat/linkbeat/gen"
)

// Attempt records one path of the carrier fallback chain and why it was
// refused, so `linkbeat features` and the start-up log can say so.
type Attempt struct {
	Source Source
	Err    error
}

// BPFOptions configures the kernel-side carrier source.
type BPFOptions struct {
	// Want restricts the chain to one source; SourceNone tries fentry, then
	// kprobe.
	Want Source
	// NetnsIno keeps events of this network namespace only (0: all).
	NetnsIno uint32
	// KernelTypes overrides the kernel's BTF (nil: /sys/kernel/btf/vmlinux).
	KernelTypes *btf.Spec
	// RingSize replaces the ring buffer's size in bytes (0: the object's
	// 256 KiB); a power of two and a multiple of the page size. Tests
	// shrink it to make the ring overflow.
	RingSize uint32
	// FastPath are the fast path's maps (internal/fastpath), shared with
	// its TC programs; nil leaves the carrier programs their own, unused.
	FastPath map[string]*ebpf.Map
}

// BPF is a loaded and attached carrier source.
type BPF struct {
	source Source
	events *ebpf.Map
	drops  *ebpf.Map
	seq    *ebpf.Map
	progs  []*ebpf.Program
	links  []link.Link
	reader *ringbuf.Reader
}

// carrierObjects is the subset of gen.CarrierObjects one path needs, so
// the programs of the other path are never loaded.
type carrierObjects struct {
	On     *ebpf.Program `ebpf:"on"`
	Off    *ebpf.Program `ebpf:"off"`
	Events *ebpf.Map     `ebpf:"carrier_events"`
	Drops  *ebpf.Map     `ebpf:"carrier_drops"`
	Seq    *ebpf.Map     `ebpf:"carrier_seq"`
}

// OpenBPF walks the fallback chain (fentry, then kprobe) and returns the
// first path that loads and attaches, with the refusals met on the way. It
// returns an error only when no BPF path works; the caller then uses
// netlink alone.
func OpenBPF(opts BPFOptions) (*BPF, []Attempt, error) {
	chain := []Source{SourceFentry, SourceKprobe}
	if opts.Want != SourceNone {
		chain = []Source{opts.Want}
	}
	var attempts []Attempt
	for _, src := range chain {
		b, err := openPath(src, opts)
		if err == nil {
			return b, attempts, nil
		}
		attempts = append(attempts, Attempt{Source: src, Err: err})
	}
	return nil, attempts, errors.New("no BPF carrier path works on this kernel")
}

func openPath(src Source, opts BPFOptions) (*BPF, error) {
	spec, err := gen.LoadCarrier()
	if err != nil {
		return nil, fmt.Errorf("load embedded carrier object: %w", err)
	}
	if err := spec.Variables[gen.CarrierVarTargetNetns].Set(opts.NetnsIno); err != nil {
		return nil, fmt.Errorf("set target netns: %w", err)
	}
	if opts.RingSize > 0 {
		spec.Maps[gen.CarrierMapCarrierEvents].MaxEntries = opts.RingSize
	}
	on, off := gen.CarrierProgFentryCarrierOn, gen.CarrierProgFentryCarrierOff
	if src == SourceKprobe {
		on, off = gen.CarrierProgKprobeCarrierOn, gen.CarrierProgKprobeCarrierOff
	}
	spec.Programs["on"], spec.Programs["off"] = spec.Programs[on], spec.Programs[off]

	var objs carrierObjects
	err = spec.LoadAndAssign(&objs, &ebpf.CollectionOptions{
		Programs:        ebpf.ProgramOptions{KernelTypes: opts.KernelTypes},
		MapReplacements: opts.FastPath,
	})
	if err != nil {
		return nil, fmt.Errorf("load %s programs: %w", src, explainLoad(err))
	}
	b := &BPF{source: src, events: objs.Events, drops: objs.Drops, seq: objs.Seq, progs: []*ebpf.Program{objs.On, objs.Off}}
	for _, p := range []struct {
		fn   string
		prog *ebpf.Program
	}{{"netif_carrier_on", objs.On}, {"netif_carrier_off", objs.Off}} {
		var l link.Link
		if src == SourceFentry {
			l, err = link.AttachTracing(link.TracingOptions{Program: p.prog})
		} else {
			l, err = link.Kprobe(p.fn, p.prog, nil)
		}
		if err != nil {
			b.Close()
			return nil, fmt.Errorf("attach %s to %s: %w", src, p.fn, err)
		}
		b.links = append(b.links, l)
	}
	b.reader, err = ringbuf.NewReader(objs.Events)
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("open carrier ring buffer: %w", err)
	}
	return b, nil
}

// explainLoad keeps the verifier's last lines instead of its whole log.
func explainLoad(err error) error {
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		return fmt.Errorf("%w", ve)
	}
	return err
}

// Source says which path is live.
func (b *BPF) Source() Source { return b.source }

// Read blocks for the next event. It returns os.ErrClosed once Close ran.
func (b *BPF) Read() (Event, error) {
	rec, err := b.reader.Read()
	if err != nil {
		if errors.Is(err, ringbuf.ErrClosed) {
			return Event{}, os.ErrClosed
		}
		return Event{}, fmt.Errorf("read carrier ring buffer: %w", err)
	}
	return DecodeEvent(rec.RawSample)
}

// Drops returns how many events the kernel could not queue so far.
func (b *BPF) Drops() (uint64, error) {
	var n uint64
	if err := b.drops.Lookup(uint32(0), &n); err != nil {
		return 0, fmt.Errorf("read carrier drop counter: %w", err)
	}
	return n, nil
}

// Queued returns the sequence number of the last event the kernel queued.
// Every event up to it is in the ring or already read.
func (b *BPF) Queued() (uint64, error) {
	var n uint64
	if err := b.seq.Lookup(uint32(0), &n); err != nil {
		return 0, fmt.Errorf("read carrier sequence: %w", err)
	}
	return n, nil
}

// Close detaches the programs and unblocks Read.
func (b *BPF) Close() error {
	var errs []error
	if b.reader != nil {
		errs = append(errs, b.reader.Close())
	}
	for _, l := range b.links {
		errs = append(errs, l.Close())
	}
	for _, p := range b.progs {
		if p != nil {
			errs = append(errs, p.Close())
		}
	}
	for _, m := range []*ebpf.Map{b.events, b.drops, b.seq} {
		if m != nil {
			errs = append(errs, m.Close())
		}
	}
	return errors.Join(errs...)
}

// DecodeEvent parses one ring-buffer record.
func DecodeEvent(raw []byte) (Event, error) {
	var e gen.CarrierCarrierEvent
	if err := binary.Read(bytes.NewReader(raw), binary.NativeEndian, &e); err != nil {
		return Event{}, fmt.Errorf("decode carrier event (%d bytes): %w", len(raw), err)
	}
	src := SourceNone
	switch gen.CarrierCarrierSource(e.Source) {
	case gen.CarrierCarrierSourceCARRIER_SOURCE_FENTRY:
		src = SourceFentry
	case gen.CarrierCarrierSourceCARRIER_SOURCE_KPROBE:
		src = SourceKprobe
	default:
		return Event{}, fmt.Errorf("decode carrier event: unknown source %d", e.Source)
	}
	return Event{
		Time:      time.Duration(e.TsNs),
		Seq:       e.Seq,
		Ifindex:   int(e.Ifindex),
		Ifname:    cString(e.Ifname[:]),
		Up:        e.Up != 0,
		Source:    src,
		UpCount:   e.UpCount,
		DownCount: e.DownCount,
	}, nil
}

func cString(b []int8) string {
	out := make([]byte, 0, len(b))
	for _, c := range b {
		if c == 0 {
			break
		}
		out = append(out, byte(c))
	}
	return string(out)
}
