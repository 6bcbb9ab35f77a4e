package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/linkbeat/linkbeat/test/bench"
)

// topology is one route-failover setup: a server namespace whose link
// dead loses carrier when cut is called.
type topology struct {
	srv     *namespace
	dead    string // the interface that loses carrier
	ifaces  []string
	cut     func() error
	restore func() error
	// gap is how long to wait after a restore before the next cut. A
	// physical-NIC-like device (tun) gets its carrier-loss notice held
	// back by linkwatch for up to 1 s after the last link event, so the
	// trials space the cuts out as a quiet server would see them.
	gap time.Duration
	// probes are destinations for the new-flow measurement; nil when the
	// far side cannot answer (tun).
	probes []netip.Addr
	// script is ifplugd's action script body: withdraw on down and put
	// back on up the same routes linkbeat withdraws.
	script string
	close  func()
}

// tap creates a tap device named dev in ns and returns its fd: the
// device lives while the fd is open, and TUNSETCARRIER on the fd switches
// its carrier like a NIC driver would (iflink == ifindex, so linkwatch
// treats it as a physical device).
func tap(ns *namespace, dev string) (int, error) {
	fd := -1
	err := ns.do(func() error {
		var err error
		fd, err = unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open /dev/net/tun: %w", err)
		}
		ifr, err := unix.NewIfreq(dev)
		if err != nil {
			return err
		}
		ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
		if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
			unix.Close(fd)
			return fmt.Errorf("TUNSETIFF %s: %w", dev, err)
		}
		return nil
	})
	return fd, err
}

// tunSetCarrier is TUNSETCARRIER, _IOW('T', 226, int) (Linux 5.0).
const tunSetCarrier = 0x400454e2

func setTapCarrier(fd int, on bool) error {
	v := int32(0)
	if on {
		v = 1
	}
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), tunSetCarrier, uintptr(unsafe.Pointer(&v))); errno != 0 {
		return fmt.Errorf("TUNSETCARRIER: %w", errno)
	}
	return nil
}

// seedTopology is seed 000's server: eth1 with 5.5.5.5/24 and a static
// route to 3.3.0.0/16 via 5.5.5.1, next to eth0 with the default route.
// The router behind eth0 also answers for 3.3.0.0/16, so once eth1's
// routes are gone new flows to 3.3.x.x get through over eth0.
func seedTopology(nss *namespaces, tun bool) (*topology, error) {
	srv, err := nss.add()
	if err != nil {
		return nil, err
	}
	sw, err := nss.add()
	if err != nil {
		return nil, err
	}
	t := &topology{srv: srv, dead: "eth1", ifaces: []string{"eth1"}, close: func() {}}
	if err := nss.veth(srv, "eth0", sw, "sw0"); err != nil {
		return nil, err
	}
	if tun {
		fd, err := tap(srv, "eth1")
		if err != nil {
			return nil, err
		}
		t.close = func() { unix.Close(fd) }
		t.cut = func() error { return setTapCarrier(fd, false) }
		t.restore = func() error { return setTapCarrier(fd, true) }
		t.gap = 1100 * time.Millisecond
	} else {
		if err := nss.veth(srv, "eth1", sw, "sw1"); err != nil {
			return nil, err
		}
		t.cut = func() error { return sw.setLink("sw1", false) }
		t.restore = func() error { return sw.setLink("sw1", true) }
		t.gap = 20 * time.Millisecond
	}
	err = srv.ipAll(
		[]string{"addr", "add", "5.5.5.5/24", "dev", "eth1"},
		[]string{"addr", "add", "192.168.72.136/24", "dev", "eth0"},
		[]string{"link", "set", "eth0", "up"},
		[]string{"link", "set", "eth1", "up"},
	)
	if err != nil {
		return nil, err
	}
	err = sw.ipAll(
		[]string{"addr", "add", "192.168.72.2/24", "dev", "sw0"},
		[]string{"link", "set", "sw0", "up"},
		[]string{"route", "add", "local", "3.3.0.0/16", "dev", "lo"},
	)
	if err != nil {
		return nil, err
	}
	if !tun {
		err = sw.ipAll(
			[]string{"addr", "add", "5.5.5.1/24", "dev", "sw1"},
			[]string{"link", "set", "sw1", "up"},
		)
		if err != nil {
			return nil, err
		}
		stop := make(chan struct{})
		if err := listen(sw, stop); err != nil {
			return nil, err
		}
		t.close = func() { close(stop) }
		for i := 1; i <= 24; i++ {
			t.probes = append(t.probes, netip.AddrFrom4([4]byte{3, 3, byte(i), 1}))
		}
	}
	ctx := context.Background()
	if err := srv.waitCarrier(ctx, "eth1", true, 5*time.Second); err != nil {
		return nil, err
	}
	err = srv.ipAll(
		[]string{"route", "add", "3.3.0.0/16", "via", "5.5.5.1", "dev", "eth1"},
		[]string{"route", "add", "default", "via", "192.168.72.2", "dev", "eth0"},
	)
	if err != nil {
		return nil, err
	}
	t.script = `case "$1 $2" in
"eth1 down") ip -batch - <<EOF
route del 3.3.0.0/16 via 5.5.5.1 dev eth1
route del 5.5.5.0/24 dev eth1
EOF
;;
"eth1 up") ip -batch - <<EOF
route replace 5.5.5.0/24 dev eth1 proto kernel scope link src 5.5.5.5
route replace 3.3.0.0/16 via 5.5.5.1 dev eth1
EOF
;;
esac`
	return t, nil
}

// ecmpTopology is the dual-gateway server: a default route over gw1
// (weight 1) and gw2 (weight 2), each gateway answering for
// 198.51.100.0/24. Flows hashed onto the dead nexthop are black-holed
// until it is withdrawn.
func ecmpTopology(nss *namespaces, tun bool) (*topology, error) {
	srv, err := nss.add()
	if err != nil {
		return nil, err
	}
	t := &topology{srv: srv, dead: "gw1", ifaces: []string{"gw1", "gw2"}, close: func() {}, gap: 20 * time.Millisecond}
	stop := make(chan struct{})
	var closers []func()
	t.close = func() {
		close(stop)
		for _, c := range closers {
			c()
		}
	}
	for i := 1; i <= 2; i++ {
		dev, peer := fmt.Sprintf("gw%d", i), fmt.Sprintf("up%d", i)
		if i == 1 && tun {
			fd, err := tap(srv, dev)
			if err != nil {
				return nil, err
			}
			closers = append(closers, func() { unix.Close(fd) })
			t.cut = func() error { return setTapCarrier(fd, false) }
			t.restore = func() error { return setTapCarrier(fd, true) }
			t.gap = 1100 * time.Millisecond
		} else {
			g, err := nss.add()
			if err != nil {
				return nil, err
			}
			if err := nss.veth(srv, dev, g, peer); err != nil {
				return nil, err
			}
			err = g.ipAll(
				[]string{"addr", "add", fmt.Sprintf("10.%d.0.1/24", i), "dev", peer},
				[]string{"link", "set", peer, "up"},
				[]string{"route", "add", "local", "198.51.100.0/24", "dev", "lo"},
				[]string{"route", "add", "default", "via", fmt.Sprintf("10.%d.0.2", i)},
			)
			if err != nil {
				return nil, err
			}
			if err := listen(g, stop); err != nil {
				return nil, err
			}
			if i == 1 {
				t.cut = func() error { return g.setLink(peer, false) }
				t.restore = func() error { return g.setLink(peer, true) }
			}
		}
		err = srv.ipAll(
			[]string{"addr", "add", fmt.Sprintf("10.%d.0.2/24", i), "dev", dev},
			[]string{"link", "set", dev, "up"},
		)
		if err != nil {
			return nil, err
		}
		if err := srv.waitCarrier(context.Background(), dev, true, 5*time.Second); err != nil {
			return nil, err
		}
	}
	// Hash on ports too, so flows spread like real connections.
	if _, err := srv.run("sysctl", "-qw", "net.ipv4.fib_multipath_hash_policy=1"); err != nil {
		return nil, err
	}
	err = srv.ip("route", "add", "default", "nexthop", "via", "10.1.0.1", "dev", "gw1", "weight", "1",
		"nexthop", "via", "10.2.0.1", "dev", "gw2", "weight", "2")
	if err != nil {
		return nil, err
	}
	if !tun {
		for i := 1; i <= 24; i++ {
			t.probes = append(t.probes, netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}))
		}
	}
	// A script for one dead gateway at a time, as a site would write it.
	t.script = `case "$1 $2" in
"gw1 down") ip -batch - <<EOF
route replace default via 10.2.0.1 dev gw2
route del 10.1.0.0/24 dev gw1
EOF
;;
"gw2 down") ip -batch - <<EOF
route replace default via 10.1.0.1 dev gw1
route del 10.2.0.0/24 dev gw2
EOF
;;
gw?\ up) n=${1#gw}; ip -batch - <<EOF
route replace 10.$n.0.0/24 dev $1 proto kernel scope link src 10.$n.0.2
route replace default nexthop via 10.1.0.1 dev gw1 weight 1 nexthop via 10.2.0.1 dev gw2 weight 2
EOF
;;
esac`
	return t, nil
}

// failoverResult is one contender's samples in one topology, and why
// the trials without a sample have none.
type failoverResult struct {
	trials                    int
	routes, notice, flows     []float64
	routesFailed, flowsFailed []string
}

// probeRun is what a prober returns.
type probeRun struct {
	attempts []attempt
	err      error
}

// runFailover cuts t.dead trials times with the tool in place and
// measures, from the moment right before each cut, when the dead link's
// routes were gone, when the kernel's link notice came, and when the
// last new flow that failed had started.
func runFailover(ctx context.Context, log *slog.Logger, t *topology, trials int) (failoverResult, error) {
	res := failoverResult{trials: trials}
	ifindex, err := t.srv.ifindex(t.dead)
	if err != nil {
		return res, err
	}
	before, err := t.srv.routeLines()
	if err != nil {
		return res, err
	}
	w, err := watch(t.srv)
	if err != nil {
		return res, err
	}
	defer w.close()
	if t.probes != nil {
		if failed, err := reachAll(t.srv, t.probes); err != nil || len(failed) > 0 {
			return res, errors.Join(err, fmt.Errorf("before the first cut, unreachable: %v", failed))
		}
	}
	for i := 0; i < trials; i++ {
		// A random phase against ifplugd's 1 s poll: without it every
		// cut would land at the same point of its cycle.
		sleep(ctx, t.gap+time.Duration(rand.Int64N(int64(time.Second))))
		w.drain()
		var (
			stop   chan struct{}
			probed chan probeRun
		)
		if t.probes != nil {
			stop, probed = make(chan struct{}), make(chan probeRun, 1)
			p := &prober{ns: t.srv, dsts: t.probes, interval: 250 * time.Microsecond, timeout: 100 * time.Millisecond}
			go func() {
				as, err := p.run(stop)
				probed <- probeRun{as, err}
			}()
			sleep(ctx, 5*time.Millisecond) // the prober is running before the cut
		}
		t0 := time.Now()
		if err := t.cut(); err != nil {
			return res, err
		}
		tt, err := w.waitGone(ctx, ifindex, 5*time.Second)
		if stop != nil {
			// New flows keep starting a while after the withdrawal, so a
			// failure after it would be seen.
			sleep(ctx, 30*time.Millisecond)
			close(stop)
			pr := <-probed
			v, ferr := flowFigure(pr, t0)
			if err != nil {
				ferr = fmt.Errorf("the routes stayed: %w", err)
			}
			if ferr != nil {
				res.flowsFailed = append(res.flowsFailed, fmt.Sprintf("trial %d: %v", i+1, ferr))
				log.Error("new-flow trial failed", "dev", t.dead, "trial", i+1, "err", ferr)
			} else {
				res.flows = append(res.flows, v)
			}
		}
		switch {
		case errors.Is(err, errTimeout):
			res.routesFailed = append(res.routesFailed, fmt.Sprintf("trial %d: %v", i+1, err))
			log.Error("trial timed out", "dev", t.dead, "trial", i+1)
		case err != nil:
			return res, err
		default:
			res.routes = append(res.routes, ms(tt.routesGone.Sub(t0)))
			if !tt.linkNotice.IsZero() {
				res.notice = append(res.notice, ms(tt.linkNotice.Sub(t0)))
			}
		}
		if err := t.restore(); err != nil {
			return res, err
		}
		if err := t.srv.waitRoutes(ctx, before, 5*time.Second); err != nil {
			return res, fmt.Errorf("restore after trial %d: %w", i, err)
		}
	}
	return res, nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// failoverScenarios measures seed and dual-gateway failover, veth and
// tun, linkbeat against ifplugd.
func failoverScenarios(ctx context.Context, log *slog.Logger, e *env, nss *namespaces) ([]bench.Scenario, error) {
	lbTrials, ipTrials := 30, 10
	if e.quick {
		lbTrials, ipTrials = 3, 2
	}
	var out []bench.Scenario
	for _, kind := range []struct {
		id, title string
		build     func(*namespaces, bool) (*topology, error)
	}{
		{"seed", "seed 000: eth1's static and connected routes", seedTopology},
		{"ecmp", "dual gateway: the dead nexthop of an ECMP default route", ecmpTopology},
	} {
		for _, tun := range []bool{false, true} {
			cutName := "veth (peer set down)"
			suffix := "veth"
			if tun {
				cutName, suffix = "tap TUNSETCARRIER (a physical-NIC-like device)", "tun"
			}
			routes := bench.Scenario{
				ID:            fmt.Sprintf("route-failover-%s-%s", kind.id, suffix),
				Title:         fmt.Sprintf("Route failover, %s; carrier cut by %s: cut → dead routes gone", kind.title, cutName),
				Unit:          "ms",
				LowerIsBetter: true,
				Anchor:        ifplugdName,
				Goal:          "linkbeat p50 at least 100x faster than ifplugd's and within 0.5 ms of the kernel's notice; linkbeat p99 <= 2 ms",
				Goals: []bench.Goal{
					{Text: "linkbeat p50 <= ifplugd p50 / 100", Contender: linkbeatName, Stat: "p50", Op: "<=", Factor: 0.01},
					{Text: "linkbeat p50 <= kernel notice p50 + 0.5 ms", Contender: linkbeatName, Stat: "p50", Op: "<=", Of: noticeName, Plus: 0.5},
					{Text: "linkbeat p99 <= 2 ms", Contender: linkbeatName, Stat: "p99", Op: "<=", Value: 2},
				},
			}
			flows := bench.Scenario{
				ID:            fmt.Sprintf("new-flow-%s-%s", kind.id, suffix),
				Title:         fmt.Sprintf("New flows, %s; carrier cut by %s: cut → start of the last new TCP flow that failed", kind.title, cutName),
				Unit:          "ms",
				LowerIsBetter: true,
				Anchor:        ifplugdName,
				Notes: []string{
					"A new TCP connection every 250 µs, round-robin over 24 destinations, each from a fresh source port; one without a handshake within 100 ms failed. 0 means no new flow failed.",
				},
			}
			var noticeSamples []float64
			for _, c := range []string{linkbeatName, ifplugdName} {
				res, err := failoverTrial(ctx, log, e, nss, kind.build, tun, c, lbTrials, ipTrials)
				if err != nil {
					return out, fmt.Errorf("%s, %s: %w", routes.ID, c, err)
				}
				routes.Contenders = append(routes.Contenders, bench.Contender{Name: c, Samples: res.routes, Trials: res.trials, Failed: res.routesFailed})
				flows.Contenders = append(flows.Contenders, bench.Contender{Name: c, Samples: res.flows, Trials: res.trials, Failed: res.flowsFailed})
				noticeSamples = append(noticeSamples, res.notice...)
			}
			routes.Contenders = append(routes.Contenders, bench.Contender{Name: noticeName, Samples: noticeSamples})
			routes.Notes = append(routes.Notes,
				fmt.Sprintf("%d linkbeat trials, %d ifplugd trials (ifplugd polls once a second, so each trial costs about a second). %q is the kernel's own RTM_NEWLINK carrier-loss notice in the same trials: the floor for anything that listens to netlink, which is linkbeat's only carrier source on this host (no fentry, no kprobes).", lbTrials, ipTrials, noticeName),
				"Timed from right before the cut (the netlink call or the ioctl) to the route notice after which no main-table route used the dead link, read by this benchmark's own RTNLGRP_IPV4_ROUTE subscription.",
				"ifplugd 0.28 (Debian) with the seed's flags -f -u0 -d0 -I -q (foreground, -n -s), default 1 s poll, one instance per monitored interface; its action script withdraws and restores the same routes with one `ip -batch`.",
			)
			if tun {
				routes.Notes = append(routes.Notes, "On a physical-NIC-like device linkwatch holds a carrier-loss notice back until 1 s after its last run, and that clock is global: any link event on the host (other engineers' tests on this shared machine) delays the next notice. Cuts are spaced at least 1.1 s after the restore; outliers of linkbeat and of the kernel notice together are linkwatch, not linkbeat. ifplugd asks the driver (ethtool) directly and does not wait for linkwatch.")
			}
			out = append(out, routes)
			if !tun {
				out = append(out, flows)
			}
		}
	}
	return out, nil
}

const (
	linkbeatName = "linkbeat"
	ifplugdName  = "ifplugd 0.28"
	noticeName   = "kernel netlink notice"
)

// failoverTrial builds a fresh topology, starts the contender in it, and
// runs the trials.
func failoverTrial(ctx context.Context, log *slog.Logger, e *env, nss *namespaces, build func(*namespaces, bool) (*topology, error), tun bool, contender string, lbTrials, ipTrials int) (failoverResult, error) {
	defer nss.closeAll()
	t, err := build(nss, tun)
	if err != nil {
		return failoverResult{}, err
	}
	defer t.close()
	trials := lbTrials
	switch contender {
	case linkbeatName:
		d, err := startLinkbeat(ctx, e, t.srv)
		if err != nil {
			return failoverResult{}, err
		}
		defer d.stop()
	case ifplugdName:
		trials = ipTrials
		ip, err := startIfplugd(ctx, e, t.srv, t.ifaces, t.script)
		if err != nil {
			return failoverResult{}, err
		}
		defer ip.stop()
	}
	log.Info("route failover", "topology", t.dead, "tun", tun, "contender", contender, "trials", trials)
	return runFailover(ctx, log, t, trials)
}
