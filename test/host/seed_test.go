package host

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/linkbeat/linkbeat/internal/routes"

	"github.com/linkbeat/linkbeat/test/testkit"
)

// seedTopo is seed 000's server: eth1 with 5.5.5.5/24 and a static route
// to 3.3.0.0/16 via 5.5.5.1, next to an unrelated eth0 with the default
// route. The switch side of eth1 is a veth peer in its own netns: setting
// it down drops eth1's carrier, like pulling the cable.
type seedTopo struct {
	srv, sw netns
}

func seedSetup(t *testing.T) seedTopo {
	t.Helper()
	tp := seedTopo{srv: newNetns(t), sw: newNetns(t)}
	// IPv4 only: the seed's scenario, without IPv6 autoconfiguration
	// changing the table behind the test's back.
	for _, ns := range []netns{tp.srv, tp.sw} {
		ns.exec(t, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
	}
	tp.srv.ip(t, "link", "add", "eth1", "type", "veth", "peer", "name", "sw1", "netns", string(tp.sw))
	tp.srv.ip(t, "link", "add", "eth0", "type", "veth", "peer", "name", "sw0", "netns", string(tp.sw))
	tp.srv.ip(t, "addr", "add", "5.5.5.5/24", "dev", "eth1")
	tp.srv.ip(t, "addr", "add", "192.168.72.136/24", "dev", "eth0")
	for _, d := range []string{"eth0", "eth1"} {
		tp.srv.ip(t, "link", "set", d, "up")
	}
	for _, d := range []string{"sw0", "sw1"} {
		tp.sw.ip(t, "link", "set", d, "up")
	}
	waitFor(t, "eth1 carrier", func() bool { return carrierOf(t, tp.srv, "eth1") })
	tp.srv.ip(t, "route", "add", "3.3.0.0/16", "via", "5.5.5.1", "dev", "eth1")
	tp.srv.ip(t, "route", "add", "default", "via", "192.168.72.2", "dev", "eth0")
	return tp
}

func carrierOf(t *testing.T, ns netns, dev string) bool {
	t.Helper()
	up, err := testkit.Carrier(string(ns), dev)
	if err != nil {
		t.Fatal(err)
	}
	return up
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func routeShow(t *testing.T, ns netns) string {
	return ns.ip(t, "route", "show")
}
func routeAll(t *testing.T, ns netns) string {
	return ns.ip(t, "-d", "route", "show", "table", "all")
}

func (tp seedTopo) start(t *testing.T, stateDir string) *daemon {
	return tp.srv.start(t, "run", "--interfaces", "eth0,eth1", "--bpffs-dir", pinDir(t), "--state-dir", stateDir)
}

const seedUnrelated = "default via 192.168.72.2 dev eth0 \n192.168.72.0/24 dev eth0 proto kernel scope link src 192.168.72.136 \n"

func TestSeedScenario(t *testing.T) {
	tp := seedSetup(t)
	before := routeAll(t, tp.srv)
	tp.start(t, t.TempDir())

	tp.sw.ip(t, "link", "set", "sw1", "down")
	waitFor(t, "eth1's routes to be withdrawn", func() bool { return routeShow(t, tp.srv) == seedUnrelated })
	if addrs := tp.srv.ip(t, "-4", "-o", "addr", "show", "dev", "eth1"); !strings.Contains(addrs, "5.5.5.5/24") {
		t.Fatalf("the address must stay on eth1: %s", addrs)
	}

	tp.sw.ip(t, "link", "set", "sw1", "up")
	waitFor(t, "eth1's routes to come back", func() bool { return routeAll(t, tp.srv) == before })
}

func TestSeedScenarioSurvivesSIGKILLWhileDown(t *testing.T) {
	tp := seedSetup(t)
	before := routeAll(t, tp.srv)
	state := t.TempDir()
	d := tp.start(t, state)

	tp.sw.ip(t, "link", "set", "sw1", "down")
	waitFor(t, "eth1's routes to be withdrawn", func() bool { return routeShow(t, tp.srv) == seedUnrelated })
	if err := d.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-d.done
	if b, err := routes.ReadRecord(state); err != nil || !strings.Contains(string(b), "3.3.0.0") {
		t.Fatalf("state file after SIGKILL: %v %s", err, b)
	}

	// Restarted while the link is still down: nothing comes back yet.
	tp.start(t, state)
	if got := routeShow(t, tp.srv); got != seedUnrelated {
		t.Fatalf("restart while down changed the routes:\n%s", got)
	}
	tp.sw.ip(t, "link", "set", "sw1", "up")
	waitFor(t, "eth1's routes to come back after the restart", func() bool { return routeAll(t, tp.srv) == before })
}

// TestDualGatewayNoNewFlowFails: a default route over two gateways, each
// of which answers for 198.51.100.0/24. After one gateway's link dies,
// every destination must still answer: without linkbeat, those hashed onto
// the dead nexthop would be black-holed.
func TestDualGatewayNoNewFlowFails(t *testing.T) {
	srv, g1, g2 := newNetns(t), newNetns(t), newNetns(t)
	for _, ns := range []netns{srv, g1, g2} {
		ns.exec(t, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
	}
	for i, g := range []netns{g1, g2} {
		dev, peer := fmt.Sprintf("gw%d", i+1), fmt.Sprintf("up%d", i+1)
		srv.ip(t, "link", "add", dev, "type", "veth", "peer", "name", peer, "netns", string(g))
		srv.ip(t, "addr", "add", fmt.Sprintf("10.%d.0.2/24", i+1), "dev", dev)
		srv.ip(t, "link", "set", dev, "up")
		g.ip(t, "addr", "add", fmt.Sprintf("10.%d.0.1/24", i+1), "dev", peer)
		g.ip(t, "link", "set", peer, "up")
		g.ip(t, "route", "add", "local", "198.51.100.0/24", "dev", "lo")
		g.ip(t, "route", "add", "default", "via", fmt.Sprintf("10.%d.0.2", i+1))
		waitFor(t, dev+" carrier", func() bool { return carrierOf(t, srv, dev) })
	}
	// Hash on ports too, so flows spread like real connections.
	srv.exec(t, "sysctl", "-qw", "net.ipv4.fib_multipath_hash_policy=1")
	srv.ip(t, "route", "add", "default", "nexthop", "via", "10.1.0.1", "dev", "gw1", "weight", "1",
		"nexthop", "via", "10.2.0.1", "dev", "gw2", "weight", "2")
	before := routeAll(t, srv)
	srv.start(t, "run", "--interfaces", "gw1,gw2", "--bpffs-dir", pinDir(t), "--state-dir", t.TempDir())

	reach := func() (failed []string) {
		for i := 1; i <= 24; i++ {
			dst := fmt.Sprintf("198.51.100.%d", i)
			if err := pingOnce(srv, dst); err != nil {
				failed = append(failed, dst)
			}
		}
		return failed
	}
	if f := reach(); len(f) > 0 {
		t.Fatalf("before the cut, unreachable: %v", f)
	}
	g1.ip(t, "link", "set", "up1", "down")
	waitFor(t, "the dead nexthop to be withdrawn", func() bool {
		r := srv.ip(t, "route", "show", "default")
		return strings.Contains(r, "via 10.2.0.1 dev gw2") && !strings.Contains(r, "10.1.0.1")
	})
	if f := reach(); len(f) > 0 {
		t.Fatalf("after the cut, new flows failed to: %v", f)
	}
	g1.ip(t, "link", "set", "up1", "up")
	waitFor(t, "both nexthops with their weights", func() bool { return routeAll(t, srv) == before })
	if r := srv.ip(t, "route", "show", "default"); !strings.Contains(r, "weight 1") || !strings.Contains(r, "weight 2") {
		t.Fatalf("weights lost: %s", r)
	}
}

func pingOnce(ns netns, dst string) error {
	return execQuiet("ip", "netns", "exec", string(ns), "ping", "-q", "-c", "1", "-W", "1", dst)
}
