//go:build vmguest

package guest

import (
	"cmp"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/linkbeat/linkbeat/test/bench"
)

// routesPerNIC is how many /32 routes each burst NIC carries.
const routesPerNIC = 20

// burstRoutes follows, from the kernel's own route notices, how many of
// the benchmark's routes (198.18.0.0/15) each interface carries, and when
// the count of each last reached zero or full.
type burstRoutes struct {
	done chan struct{}

	mu      sync.Mutex
	via     map[string]int // destination -> ifindex: a replace or a duplicate notice counts once
	emptyAt map[int]int64  // ifindex -> CLOCK_MONOTONIC of the notice that emptied it
	changed chan struct{}
}

func watchBurstRoutes(t *testing.T) *burstRoutes {
	t.Helper()
	w := &burstRoutes{done: make(chan struct{}), via: map[string]int{}, emptyAt: map[int]int64{}, changed: make(chan struct{})}
	ch := make(chan netlink.RouteUpdate, 4096)
	err := netlink.RouteSubscribeWithOptions(ch, w.done, netlink.RouteSubscribeOptions{ListExisting: true,
		ReceiveBufferSize: 8 << 20, ErrorCallback: func(err error) {
			select {
			case <-w.done: // the socket closes at cleanup
			default:
				t.Errorf("route notices: %v", err)
			}
		}})
	if err != nil {
		t.Fatalf("route subscription: %v", err)
	}
	t.Cleanup(func() { close(w.done) })
	go func() {
		for u := range ch {
			w.apply(u, monotonicNow())
		}
	}()
	return w
}

func (w *burstRoutes) apply(u netlink.RouteUpdate, at int64) {
	ip := u.Dst
	if ip == nil || ip.IP.To4() == nil || ip.IP.To4()[0] != 198 || ip.IP.To4()[1]&^1 != 18 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	key := ip.String()
	if u.Type == unix.RTM_NEWROUTE {
		w.via[key] = u.LinkIndex
	} else if old, ok := w.via[key]; ok {
		delete(w.via, key)
		if w.countLocked(old) == 0 {
			w.emptyAt[old] = at
		}
	}
	close(w.changed)
	w.changed = make(chan struct{})
}

func (w *burstRoutes) countLocked(ifindex int) int {
	n := 0
	for _, i := range w.via {
		if i == ifindex {
			n++
		}
	}
	return n
}

// waitCount waits until ifindex carries n routes and returns the time of
// the notice that emptied it (meaningful for n == 0).
func (w *burstRoutes) waitCount(t *testing.T, ifindex, n int, timeout time.Duration) int64 {
	t.Helper()
	deadline := time.After(timeout)
	for {
		w.mu.Lock()
		c, at, ch := w.countLocked(ifindex), w.emptyAt[ifindex], w.changed
		w.mu.Unlock()
		if c == n {
			return at
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("ifindex %d carries %d benchmark routes after %v, want %d", ifindex, c, timeout, n)
		}
	}
}

// addBurstRoutes gives each NIC an address and routesPerNIC /32 routes
// through a gateway on it.
func addBurstRoutes(t *testing.T, nics []string) {
	t.Helper()
	for i, nic := range nics {
		l := mustLink(t, nic)
		addr, _ := netlink.ParseAddr(fmt.Sprintf("10.%d.0.2/24", 90+i))
		if err := netlink.AddrReplace(l, addr); err != nil {
			t.Fatalf("address on %s: %v", nic, err)
		}
		t.Cleanup(func() { netlink.AddrDel(l, addr) })
		for j := range routesPerNIC {
			r := &netlink.Route{LinkIndex: l.Attrs().Index, Dst: &net.IPNet{IP: net.IPv4(198, 18, byte(i), byte(j)), Mask: net.CIDRMask(32, 32)},
				Gw: net.IPv4(10, byte(90+i), 0, 1)}
			if err := netlink.RouteReplace(r); err != nil {
				t.Fatalf("route %v on %s: %v", r.Dst, nic, err)
			}
			t.Cleanup(func() { netlink.RouteDel(r) })
		}
	}
}

// TestBenchRouteBurst measures route withdrawal during a burst of carrier
// losses: three virtio NICs, each with its own routes, are cut in a
// burst; linkbeat `run` withdraws their
// routes, once on fentry and once forced to netlink. The time runs from
// the driver's netif_carrier_off (a fentry `linkbeat monitor` beside it)
// to the route notice that leaves the NIC without routes. linkwatch sends a
// plain NIC's first change at once and holds the later ones up to a second:
// that hold is what fentry saves.
func TestBenchRouteBurst(t *testing.T) {
	plan := requireBench(t)
	requireLinkbeat(t)
	var nds []string
	idx := map[string]int{}
	for _, nic := range burstNICs {
		setAdmin(t, nic, true)
		nds = append(nds, netdevOf(nic))
		idx[nic] = mustLink(t, nic).Attrs().Index
	}
	setLinks(t, true, nds...)
	restoreLinksOnCleanup(t, nds...)
	for _, nic := range burstNICs {
		waitCarrier(t, nic, true, 30*time.Second)
	}
	routes := watchBurstRoutes(t)
	addBurstRoutes(t, burstNICs)
	for _, nic := range burstNICs {
		routes.waitCount(t, idx[nic], routesPerNIC, eventTimeout)
	}
	list := strings.Join(burstNICs, ",")
	drv := startDaemon(t, "monitor", "--json", "--interfaces", list, "--carrier-source", "fentry")
	drv.WaitReady(readyTimeout)

	var contenders []bench.Contender
	for _, source := range []string{"netlink", "fentry"} {
		lb := startDaemon(t, "run", "--state-dir", t.TempDir(), "--interfaces", list, "--carrier-source", source)
		lb.WaitReady(readyTimeout)
		c := bench.Contender{Name: "linkbeat " + source, Trials: plan.Bursts * len(burstNICs), Figures: map[string]float64{}}
		var first, later []float64
		for b := range plan.Bursts {
			time.Sleep(linkwatchQuiet)
			for _, d := range nds {
				setLinks(t, false, d)
			}
			calls := monitorEvents(t, drv, burstNICs, "down")
			order := slices.Clone(burstNICs)
			slices.SortFunc(order, func(a, b string) int { return cmp.Compare(calls[a].TimeNS, calls[b].TimeNS) })
			for pos, nic := range order {
				gone := routes.waitCount(t, idx[nic], 0, eventTimeout)
				if gone < calls[nic].TimeNS {
					t.Fatalf("burst %d: %s's routes gone at %d, before the driver's call at %d: a stale notice", b+1, nic, gone, calls[nic].TimeNS)
				}
				d := msOf(time.Duration(gone - calls[nic].TimeNS))
				c.Samples = append(c.Samples, d)
				if pos == 0 {
					first = append(first, d)
				} else {
					later = append(later, d)
				}
				t.Logf("%s, burst %d, change %d (%s): routes gone %.3f ms after the driver's call", c.Name, b+1, pos+1, nic, d)
			}
			setLinks(t, true, nds...)
			monitorEvents(t, drv, burstNICs, "up")
			for _, nic := range burstNICs {
				routes.waitCount(t, idx[nic], routesPerNIC, eventTimeout)
			}
		}
		c.Figures["first_change_p50_ms"] = bench.Summarize(first).P50
		c.Figures["later_changes_p50_ms"] = bench.Summarize(later).P50
		if err := lb.Stop(); err != nil {
			t.Fatalf("linkbeat run (%s): %v", source, err)
		}
		contenders = append(contenders, c)
	}
	writeScenario(t, bench.Scenario{
		ID:            "route-burst",
		Title:         "Route withdrawal during a burst: driver's carrier call to the NIC's routes gone, 3 virtio NICs cut in quick succession",
		Unit:          "ms",
		LowerIsBetter: true,
		Anchor:        "linkbeat netlink",
		Goal:          "linkbeat fentry p50 <= linkbeat netlink p50 / 20",
		Goals:         []bench.Goal{{Text: "fentry p50 <= netlink p50 / 20", Contender: "linkbeat fentry", Stat: "p50", Op: "<=", Factor: 1.0 / 20}},
		Contenders:    contenders,
		Notes: []string{
			fmt.Sprintf("%d bursts per contender: eth0, eth1 and eth3 (virtio) cut by QMP one after another after 1.2 s without link events; each NIC carries %d /32 routes via a gateway on it", plan.Bursts, routesPerNIC),
			"from the driver's netif_carrier_off call (time_ns of a fentry `linkbeat monitor` running beside the daemon) to the arrival of the route notice after which the NIC carries none of the benchmark's routes, on the test's own RTNLGRP_IPV4_ROUTE socket",
			"linkbeat run: --carrier-source fentry, then --carrier-source netlink, one after the other; linkwatch holds a plain NIC's later changes in a burst up to a second (first_change_p50_ms against later_changes_p50_ms)",
			tcgNote,
		},
	})
}
