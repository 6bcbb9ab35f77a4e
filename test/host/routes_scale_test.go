package host

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/linkbeat/linkbeat/internal/routes"
	"github.com/linkbeat/linkbeat/test/testkit"
)

// BenchmarkRoutesScale measures withdrawal and restore of n /32 routes via
// x plus n/2 ECMP /32 routes over x and y, against the
// kernel's own floor: `ip -batch` deleting the same routes and replacing
// the ECMP ones by their live hop. It reports times, their ratio to the
// floor, the state file's size and the heap the manager holds per route.
// Run: go test -run '^$' -bench RoutesScale -benchtime 1x ./test/host/
func BenchmarkRoutesScale(b *testing.B) {
	for _, n := range []int{10_000, 40_000} {
		b.Run(fmt.Sprintf("%dk+%dk", n/1000, n/2000), func(b *testing.B) {
			for range b.N {
				routesScaleOnce(b, n)
			}
		})
	}
}

func routesScaleOnce(b *testing.B, n int) {
	ns, peer := scaleNetns(b), scaleNetns(b)
	for i, d := range []string{"x", "y"} {
		scaleIP(b, ns, "link", "add", d, "type", "veth", "peer", "name", d+"p", "netns", peer)
		scaleIP(b, ns, "addr", "add", fmt.Sprintf("10.%d.0.1/24", i+1), "dev", d)
		scaleIP(b, ns, "link", "set", d, "up")
		scaleIP(b, peer, "link", "set", d+"p", "up")
	}
	scaleCarrier(b, ns, "x", true)
	scaleCarrier(b, ns, "y", true)
	addr := func(i int) string { return fmt.Sprintf("%d.%d.%d.%d", 100+i>>16, (i>>8)&255, i&255, 1) }
	var add, del []string
	for i := range n {
		add = append(add, "route add "+addr(i)+"/32 via 10.1.0.2 dev x")
		del = append(del, "route del "+addr(i)+"/32 via 10.1.0.2 dev x")
	}
	for i := n; i < n+n/2; i++ {
		add = append(add, "route add "+addr(i)+"/32 nexthop via 10.1.0.2 dev x nexthop via 10.2.0.2 dev y")
		del = append(del, "route replace "+addr(i)+"/32 via 10.2.0.2 dev y")
	}
	batch(b, ns, add)
	floor := batch(b, ns, del)
	batch(b, ns, slicesDelete(add, n)) // the static ones back
	ecmp := make([]string, 0, n/2)
	for _, l := range add[n:] {
		ecmp = append(ecmp, strings.Replace(l, "route add", "route replace", 1))
	}
	batch(b, ns, ecmp)

	dir, err := os.MkdirTemp("/run", "linkbeat-bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	heap0 := heapInUse()
	k := scaleKernel(b, ns)
	m, err := routes.New(routes.Config{StateDir: dir}, k)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := m.Start(ctx); err != nil {
		b.Fatal(err)
	}
	heapCache := heapInUse()
	x := scaleIfindex(b, ns, "x")
	scaleIP(b, peer, "link", "set", "xp", "down")
	scaleCarrier(b, ns, "x", false)
	start := time.Now()
	down, err := m.LinkDown(x, "x")
	wd := time.Since(start)
	if err != nil || down.Withdrawn != n+n/2+1 { // and x's connected route
		b.Fatalf("LinkDown: %+v, %v; want %d withdrawn", down, err, n+n/2+1)
	}
	heapDown := heapInUse()
	fi, err := os.Stat(filepath.Join(dir, "routes.json"))
	if err != nil {
		b.Fatal(err)
	}
	scaleIP(b, peer, "link", "set", "xp", "up")
	scaleCarrier(b, ns, "x", true)
	start = time.Now()
	up, err := m.LinkUp(x, "x")
	rs := time.Since(start)
	if err != nil || up.Restored != n+n/2+1 {
		b.Fatalf("LinkUp: %+v, %v; want %d restored", up, err, n+n/2+1)
	}
	total := float64(n + n/2)
	b.ReportMetric(float64(floor.Milliseconds()), "floor-ms")
	b.ReportMetric(float64(wd.Milliseconds()), "withdraw-ms")
	b.ReportMetric(wd.Seconds()/floor.Seconds(), "withdraw/floor")
	b.ReportMetric(float64(rs.Milliseconds()), "restore-ms")
	b.ReportMetric(float64(fi.Size())/total, "state-B/route")
	b.ReportMetric(float64(heapCache-heap0)/total, "cache-B/route")
	b.ReportMetric(float64(heapDown-heap0)/total, "heap-down-B/route")
	b.ReportMetric(float64(selfHWM())/(1<<20), "peak-RSS-MB")
}

func slicesDelete(s []string, n int) []string { return s[:n:n] }

func batch(b *testing.B, ns string, lines []string) time.Duration {
	b.Helper()
	f := filepath.Join(b.TempDir(), "batch")
	if err := os.WriteFile(f, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	if out, err := exec.Command("ip", "-n", ns, "-batch", f).CombinedOutput(); err != nil {
		b.Fatalf("ip -batch: %v\n%s", err, out)
	}
	return time.Since(start)
}

func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// selfHWM is this process's peak resident set, in bytes.
func selfHWM() int64 {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// The netns helpers of this package take a *testing.T; these take a B.

func scaleNetns(b *testing.B) string {
	b.Helper()
	name := fmt.Sprintf("lbs-%d-%d", os.Getpid(), time.Now().UnixNano()%1e9)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		b.Fatalf("ip netns add: %v\n%s", err, out)
	}
	b.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	scaleIP(b, name, "link", "set", "lo", "up")
	return name
}

func scaleIP(b *testing.B, ns string, args ...string) string {
	b.Helper()
	out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput()
	if err != nil {
		b.Fatalf("ip %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func scaleIfindex(b *testing.B, ns, dev string) int {
	b.Helper()
	var links []struct {
		Ifindex int `json:"ifindex"`
	}
	if err := json.Unmarshal([]byte(scaleIP(b, ns, "-j", "link", "show", "dev", dev)), &links); err != nil || len(links) != 1 {
		b.Fatalf("ifindex of %s: %v", dev, err)
	}
	return links[0].Ifindex
}

func scaleCarrier(b *testing.B, ns, dev string, up bool) {
	b.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if got, _ := testkit.Carrier(ns, dev); got == up {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s carrier did not become %v", dev, up)
		}
	}
}

// scaleKernel opens the routes Kernel on a thread inside ns.
func scaleKernel(b *testing.B, ns string) routes.Kernel {
	b.Helper()
	var k routes.Kernel
	if err := testkit.Within(ns, func() { k = routes.NewKernel() }); err != nil {
		b.Fatal(err)
	}
	return k
}
