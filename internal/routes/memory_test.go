package routes

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"runtime/pprof"
	"testing"

	"golang.org/x/sys/unix"
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

// TestHeldMemory reports the heap the manager holds per route, with the
// cache filled and with a link's routes withdrawn, at the bench's
// route-scale-10k size. LINKBEAT_HEAPPROFILE=file writes a heap profile
// taken while the routes are withdrawn.
func TestHeldMemory(t *testing.T) {
	if os.Getenv("LINKBEAT_HEAPPROFILE") != "" {
		runtime.MemProfileRate = 1
	}
	if testing.Short() {
		t.Skip("measures 15k routes")
	}
	const n = 10000
	base := heapInUse()
	k := &leanKernel{routes: scaleRoutes(n), down: map[int]bool{}}
	m, err := New(Config{StateDir: t.TempDir()}, k)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	k.routes = nil
	routes := float64(n + n/2)
	filled := heapInUse()
	t.Logf("cache: %.0f B/route", (float64(filled)-float64(base))/routes)
	k.down[2] = true
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	res, err := m.LinkDown(2, "sc0")
	if err != nil || res.Withdrawn != n+n/2 {
		t.Fatalf("LinkDown: %+v %v", res, err)
	}
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	t.Logf("LinkDown allocated %.0f B/route", float64(after.TotalAlloc-before.TotalAlloc)/routes)
	down := heapInUse()
	t.Logf("withdrawn: %.0f B/route more", (float64(down)-float64(filled))/routes)
	if f := os.Getenv("LINKBEAT_HEAPPROFILE"); f != "" {
		w, err := os.Create(f)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		if err := pprof.WriteHeapProfile(w); err != nil {
			t.Fatal(err)
		}
	}
	runtime.KeepAlive(m)
	_ = unix.AF_INET
}
