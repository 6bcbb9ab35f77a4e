package routes

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"runtime/pprof"
	"testing"
)

// leanKernel serves a dump and accepts every change without keeping
// anything, so that the heap measured is the manager's alone.
type leanKernel struct {
	routes []*Route
	down   map[int]bool
}

func (k *leanKernel) Routes() ([]*Route, error)     { return k.routes, nil }
func (k *leanKernel) Nexthops() ([]*Nexthop, error) { return nil, nil }
func (k *leanKernel) AddRoute(*Route, Op) error     { return nil }
func (k *leanKernel) DeleteRoute(*Route) error      { return nil }
func (k *leanKernel) ApplyRoutes(c []RouteChange) []error {
	return make([]error, len(c))
}
func (k *leanKernel) AddNexthop(*Nexthop, Op) error { return nil }
func (k *leanKernel) DeleteNexthop(uint32) error    { return nil }
func (k *leanKernel) Subscribe(ctx context.Context) (<-chan Update, error) {
	ch := make(chan Update)
	go func() { <-ctx.Done(); close(ch) }()
	return ch, nil
}
func (k *leanKernel) Link(i int) (LinkInfo, error) {
	return LinkInfo{Name: fmt.Sprintf("sc%d", i-2), Carrier: !k.down[i]}, nil
}

// scaleRoutes is the bench's route-scale table as the kernel dumps it: n
// static /32 routes via link 2 and n/2 ECMP ones over links 2 and 3, each
// decoded from its netlink encoding as a dump's would be.
func scaleRoutes(n int) []*Route {
	out := make([]*Route, 0, n+n/2)
	add := func(r *Route) {
		d, ok := decodeRoute(encodeRoute(r, false))
		if !ok {
			panic("decode " + r.String())
		}
		out = append(out, d)
	}
	for i := range n {
		dst := netip.PrefixFrom(netip.AddrFrom4([4]byte{100, byte(64 + i>>16), byte(i >> 8), byte(i)}), 32)
		add(route4(dst.String(), hop(2, "10.61.0.1", 1)))
	}
	for i := range n / 2 {
		dst := netip.PrefixFrom(netip.AddrFrom4([4]byte{101, byte(64 + i>>16), byte(i >> 8), byte(i)}), 32)
		add(route4(dst.String(), hop(2, "10.61.0.1", 1), hop(3, "10.61.1.1", 1)))
	}
	return out
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// BenchmarkHeldMemory reports the heap the manager holds per route at
// the bench's route-scale sizes: the cache after the dump
// (cache-B/route), what LinkDown allocates (withdraw-alloc-B/route),
// what the record of the withdrawn routes adds (record-B/route) and what
// LinkUp allocates to restore them (restore-alloc-B/route). The
// daemon's RSS is test/bench's route-scale scenario. LINKBEAT_HEAPPROFILE
// =file writes a heap profile taken with the routes withdrawn.
// Run: go test -run '^$' -bench HeldMemory -benchtime 1x ./internal/routes/
func BenchmarkHeldMemory(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("%dk+%dk", n/1000, n/2000), func(b *testing.B) {
			for b.Loop() {
				heldMemory(b, n)
			}
		})
	}
}

func heldMemory(b *testing.B, n int) {
	if f := os.Getenv("LINKBEAT_HEAPPROFILE"); f != "" {
		runtime.MemProfileRate = 1
	}
	base := heapInUse()
	k := &leanKernel{routes: scaleRoutes(n), down: map[int]bool{}}
	m, err := New(Config{StateDir: b.TempDir()}, k)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := m.Start(ctx); err != nil {
		b.Fatal(err)
	}
	k.routes = nil
	routes := float64(n + n/2)
	filled := heapInUse()
	k.down[2] = true
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	res, err := m.LinkDown(2, "sc0")
	runtime.ReadMemStats(&after)
	if err != nil || res.Withdrawn != n+n/2 {
		b.Fatalf("LinkDown: %+v %v; want %d withdrawn", res, err, n+n/2)
	}
	down := heapInUse()
	b.ReportMetric((float64(filled)-float64(base))/routes, "cache-B/route")
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/routes, "withdraw-alloc-B/route")
	b.ReportMetric((float64(down)-float64(filled))/routes, "record-B/route")
	if f := os.Getenv("LINKBEAT_HEAPPROFILE"); f != "" {
		w, err := os.Create(f)
		if err != nil {
			b.Fatal(err)
		}
		defer w.Close()
		if err := pprof.WriteHeapProfile(w); err != nil {
			b.Fatal(err)
		}
	}
	k.down[2] = false
	runtime.ReadMemStats(&before)
	res, err = m.LinkUp(2, "sc0")
	runtime.ReadMemStats(&after)
	if err != nil || res.Restored != n+n/2 {
		b.Fatalf("LinkUp: %+v %v; want %d restored", res, err, n+n/2)
	}
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/routes, "restore-alloc-B/route")
	runtime.KeepAlive(m)
}
