package host

import (
	"fmt"
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/linkbeat/linkbeat/internal/routes"
)

// rtOrdered is the namespace's whole routing state as `ip -d` prints it,
// in the kernel's order: unlike rtTable it tells `ip route append` twins
// and the members of a group apart by position, so "byte-identical" means
// what it says. Only the remaining lifetime of expiring routes is dropped.
func rtOrdered(t *testing.T, ns netns) []string {
	t.Helper()
	var out []string
	for _, args := range [][]string{
		{"-d", "-4", "route", "show", "table", "all"},
		{"-d", "-6", "route", "show", "table", "all"},
		{"-d", "nexthop", "show"},
	} {
		for _, l := range strings.Split(ns.ip(t, args...), "\n") {
			l = strings.TrimRight(rtExpires.ReplaceAllString(l, ""), " ")
			switch {
			case l == "":
			case strings.HasPrefix(l, "\t") && len(out) > 0:
				// A nexthop of a multipath route: part of the route.
				out[len(out)-1] += " |" + l
			default:
				out = append(out, l)
			}
		}
	}
	return out
}

var rtExpires = regexp.MustCompile(` expires -?\d+sec`)

// rtOrderedDiff is a line diff (- want, + got) by longest common
// subsequence, so that a line out of place shows as moved; "" if equal.
func rtOrderedDiff(got, want []string) string {
	if slices.Equal(got, want) {
		return ""
	}
	n, m := len(want), len(got)
	lcs := make([][]int, n+1)
	for i := range lcs {
		lcs[i] = make([]int, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if want[i] == got[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var b strings.Builder
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case i < n && j < m && want[i] == got[j]:
			i, j = i+1, j+1
		case j < m && (i == n || lcs[i][j+1] >= lcs[i+1][j]):
			fmt.Fprintf(&b, "\n  + %s", got[j])
			j++
		default:
			fmt.Fprintf(&b, "\n  - %s", want[i])
			i++
		}
	}
	return b.String()
}

// rtThrough lists the routes and nexthop objects that still send through
// one of devs, leaving out what linkbeat does not manage (the local table,
// IPv6 link-local routes).
func rtThrough(lines []string, devs ...string) []string {
	var out []string
	for _, l := range lines {
		if !rtManaged(l) {
			continue
		}
		for _, d := range devs {
			if strings.Contains(l, "dev "+d+" ") || strings.HasSuffix(l, "dev "+d) {
				out = append(out, l)
			}
		}
	}
	return out
}

// rtManaged: a line of rtOrdered that linkbeat manages, not one of the
// kernel's own local, broadcast, multicast or IPv6 link-local routes.
func rtManaged(l string) bool {
	return !strings.Contains(l, "table local") && !strings.Contains(l, " fe80::/64 ") && !strings.HasPrefix(l, "multicast")
}

// TestRoutesAppendTwinsAndGroupDoubleFailure runs a double failure as a
// user would, against the daemon: an `ip route append` twin is withdrawn
// while its link is down, and after eth1 down, eth2 down, eth1 up, eth2 up
// the twin is back in its place and the group is 10/11 again.
func TestRoutesAppendTwinsAndGroupDoubleFailure(t *testing.T) {
	tp := faultSetup(t, "eth1", "eth2")
	for _, args := range [][]string{
		{"addr", "add", "5.5.5.2/24", "dev", "eth1"},
		{"addr", "add", "6.6.6.2/24", "dev", "eth2"},
		{"route", "add", "13.0.0.0/8", "via", "5.5.5.1", "dev", "eth1"},
		{"route", "append", "13.0.0.0/8", "via", "6.6.6.1", "dev", "eth2"},
		{"nexthop", "add", "id", "10", "via", "5.5.5.1", "dev", "eth1"},
		{"nexthop", "add", "id", "11", "via", "6.6.6.1", "dev", "eth2"},
		{"nexthop", "add", "id", "12", "group", "10/11"},
		{"route", "add", "14.0.0.0/8", "nhid", "12"},
	} {
		tp.srv.ip(t, args...)
	}
	before := rtOrdered(t, tp.srv)
	if n := len(slices.DeleteFunc(slices.Clone(before), func(l string) bool { return !strings.Contains(l, "13.0.0.0/8") })); n != 2 {
		t.Fatalf("setup: want two routes for 13.0.0.0/8, have %d:\n%s", n, strings.Join(before, "\n"))
	}
	state := t.TempDir()
	tp.srv.start(t, "run", "--interfaces", "eth1,eth2", "--bpffs-dir", pinDir(t), "--state-dir", state)
	sw := nlHandle(t, tp.sw)

	tp.setCarrier(t, sw, "eth1", false)
	settle(t, eventTimeout, "eth1 down: nothing routes through eth1", func() error {
		now := rtOrdered(t, tp.srv)
		if l := rtThrough(now, "eth1"); len(l) > 0 {
			return fmt.Errorf("still through eth1: %q", l)
		}
		if !slices.ContainsFunc(now, func(l string) bool { return strings.Contains(l, "13.0.0.0/8 via 6.6.6.1 dev eth2") }) {
			return fmt.Errorf("the eth2 twin must stay: %q", now)
		}
		return nil
	})
	tp.setCarrier(t, sw, "eth2", false)
	settle(t, eventTimeout, "both down: nothing routes through eth1 or eth2", func() error {
		if l := rtThrough(rtOrdered(t, tp.srv), "eth1", "eth2"); len(l) > 0 {
			return fmt.Errorf("still through eth1 or eth2: %q", l)
		}
		return nil
	})
	tp.setCarrier(t, sw, "eth1", true)
	settle(t, eventTimeout, "eth1 up: its twin is back", func() error {
		now := rtOrdered(t, tp.srv)
		if !slices.ContainsFunc(now, func(l string) bool { return strings.Contains(l, "13.0.0.0/8 via 5.5.5.1 dev eth1") }) {
			return fmt.Errorf("no 13.0.0.0/8 via eth1: %q", now)
		}
		return nil
	})
	tp.setCarrier(t, sw, "eth2", true)
	settle(t, eventTimeout, "both up: routing state byte-identical to before", func() error {
		if d := rtOrderedDiff(rtOrdered(t, tp.srv), before); d != "" {
			return fmt.Errorf("%s", d)
		}
		return nil
	})
}

// rtProp is a namespace with three veth links whose peers sit in a second
// namespace, driven in-process through a routes.Manager.
type rtProp struct {
	ns, peer netns
	devs     []string
	idx      []int
	down     []bool
}

func rtPropSetup(t *testing.T) *rtProp {
	t.Helper()
	p := &rtProp{ns: newNetns(t), peer: newNetns(t), devs: []string{"la", "lb", "lc"}, down: make([]bool, 3)}
	for i, d := range p.devs {
		p.ns.ip(t, "link", "add", d, "type", "veth", "peer", "name", d+"p", "netns", string(p.peer))
		// No IPv6 link-local address: the kernel would add it (and its
		// local route) whenever its DAD ends, which a whole-table
		// comparison would take for a change.
		p.ns.ip(t, "link", "set", d, "addrgenmode", "none")
		p.ns.ip(t, "addr", "add", fmt.Sprintf("10.9%d.0.1/24", i), "dev", d)
		p.ns.ip(t, "addr", "add", fmt.Sprintf("2001:db8:9%d::1/64", i), "dev", d, "nodad")
		p.ns.ip(t, "link", "set", d, "up")
		p.peer.ip(t, "link", "set", d+"p", "up")
	}
	for i, d := range p.devs {
		rtWaitCarrier(t, p.ns, d, true)
		p.idx = append(p.idx, p.ns.ifindex(t, d))
		_ = i
	}
	return p
}

func gw4(i, h int) string { return fmt.Sprintf("10.9%d.0.%d", i, h) }
func gw6(i, h int) string { return fmt.Sprintf("2001:db8:9%d::%d", i, h) }

// rtPropRoutes builds a random route set over the three links: static
// routes with metrics and tables, `ip route append` twins (with gateways
// and device-only), weighted IPv4 and IPv6 multipath routes, IPv6
// same-metric device routes, nexthop objects, weighted groups, and routes
// using them. Each is an `ip` command line.
func rtPropRoutes(rng *rand.Rand) [][]string {
	var cmds [][]string
	add := func(s string) { cmds = append(cmds, strings.Fields(s)) }
	links := func(min int) []int {
		l := rng.Perm(3)
		return l[:min+rng.IntN(3-min+1)]
	}
	for n := range 2 + rng.IntN(3) {
		opt := []string{"", " metric 50", " table 100", " proto static metric 7"}[rng.IntN(4)]
		add(fmt.Sprintf("route add 198.18.%d.0/24 via %s dev l%c%s", n, gw4(n%3, 2), 'a'+n%3, opt))
	}
	for n := range 1 + rng.IntN(3) {
		for j, l := range links(2) {
			verb := map[bool]string{true: "add", false: "append"}[j == 0]
			if n == 2 {
				add(fmt.Sprintf("route %s 198.19.%d.0/24 dev l%c scope link", verb, n, 'a'+l))
			} else {
				add(fmt.Sprintf("route %s 198.19.%d.0/24 via %s dev l%c", verb, n, gw4(l, 2+j), 'a'+l))
			}
		}
	}
	for n := range 1 + rng.IntN(2) {
		for _, fam := range []string{"", "-6 "} {
			var b strings.Builder
			dst := fmt.Sprintf("198.20.%d.0/24", n)
			if fam != "" {
				dst = fmt.Sprintf("2001:db8:e%d::/64", n)
			}
			fmt.Fprintf(&b, "%sroute add %s", fam, dst)
			for _, l := range links(2) {
				g := gw4(l, 2)
				if fam != "" {
					g = gw6(l, 2)
				}
				fmt.Fprintf(&b, " nexthop via %s dev l%c weight %d", g, 'a'+l, 1+rng.IntN(5))
			}
			add(b.String())
		}
	}
	for _, l := range links(1) {
		add(fmt.Sprintf("-6 route add 2001:db8:f%d::/64 via %s dev l%c", l, gw6(l, 2), 'a'+l))
	}
	for j, l := range links(2) {
		verb := map[bool]string{true: "add", false: "append"}[j == 0]
		add(fmt.Sprintf("-6 route %s 2001:db8:c0::/64 dev l%c", verb, 'a'+l))
	}
	for l := range 3 {
		add(fmt.Sprintf("nexthop add id %d via %s dev l%c", 10+l, gw4(l, 2), 'a'+l))
		add(fmt.Sprintf("nexthop add id %d via %s dev l%c", 30+l, gw6(l, 2), 'a'+l))
	}
	for n := range 1 + rng.IntN(2) {
		var mem, mem6 []string
		for _, l := range links(2) {
			w := 1 + rng.IntN(4)
			mem = append(mem, fmt.Sprintf("%d,%d", 10+l, w))
			mem6 = append(mem6, fmt.Sprintf("%d,%d", 30+l, w))
		}
		add(fmt.Sprintf("nexthop add id %d group %s", 20+n, strings.Join(mem, "/")))
		add(fmt.Sprintf("route add 198.21.%d.0/24 nhid %d", n, 20+n))
		add(fmt.Sprintf("nexthop add id %d group %s", 40+n, strings.Join(mem6, "/")))
		add(fmt.Sprintf("-6 route add 2001:db8:d%d::/64 nhid %d", n, 40+n))
	}
	l := rng.IntN(3)
	add(fmt.Sprintf("route add 198.22.0.0/24 nhid %d", 10+l))
	add(fmt.Sprintf("-6 route add 2001:db8:b0::/64 nhid %d", 30+l))
	return cmds
}

// step cuts or mends link i and tells the manager, as the daemon would.
func (p *rtProp) step(t *testing.T, m *routes.Manager, i int) {
	t.Helper()
	d := p.devs[i]
	p.down[i] = !p.down[i]
	if p.down[i] {
		p.peer.ip(t, "link", "set", d+"p", "down")
		rtWaitCarrier(t, p.ns, d, false)
		// At once, with the kernel's notices of the carrier loss and of
		// the previous step maybe still on their way to the cache.
		if _, err := m.LinkDown(p.idx[i], d); err != nil {
			t.Fatalf("LinkDown(%s): %v", d, err)
		}
		return
	}
	p.peer.ip(t, "link", "set", d+"p", "up")
	rtWaitCarrier(t, p.ns, d, true)
	res, err := m.LinkUp(p.idx[i], d)
	if err != nil {
		t.Fatalf("LinkUp(%s): %v", d, err)
	}
	if res.NoCarrier {
		t.Fatalf("LinkUp(%s) found no carrier: %+v", d, res)
	}
}

// TestRoutesExactRestoreProperty: random route sets over three links, and
// random orders of failures of any number of them. While a link is down
// nothing managed routes through it; once every link is back the routing
// state is byte-identical to the start, twins, weights and group order
// included. LINKBEAT_FAULT_SEED replays a run.
func TestRoutesExactRestoreProperty(t *testing.T) {
	seed := faultSeed(t)
	for trial := range 6 {
		t.Run(fmt.Sprint(trial), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, uint64(trial)))
			p := rtPropSetup(t)
			cmds := rtPropRoutes(rng)
			for _, c := range cmds {
				p.ns.ip(t, c...)
			}
			before := rtOrdered(t, p.ns)
			tp := &rtTopo{ns: p.ns, peer: p.peer, stateDir: t.TempDir()}
			m, _ := tp.manager(t)
			var order []string
			for range 4 + rng.IntN(8) {
				i := rng.IntN(3)
				p.step(t, m, i)
				order = append(order, fmt.Sprintf("%s%s", p.devs[i], map[bool]string{true: "-", false: "+"}[p.down[i]]))
				var dead []string
				for j, d := range p.devs {
					if p.down[j] {
						dead = append(dead, d)
					}
				}
				now := rtOrdered(t, p.ns)
				if l := rtThrough(now, dead...); len(l) > 0 {
					t.Fatalf("after %v: still routed through a dead link: %q\nroutes:\n%s", order, l, rtCmds(cmds))
				}
				// And what uses live links only is there as it was (a group
				// object's line names no devices: the routes using it do).
				for _, l := range before {
					if rtManaged(l) && !strings.HasPrefix(l, "id ") && len(rtThrough([]string{l}, dead...)) == 0 && !slices.Contains(now, l) {
						t.Fatalf("after %v: %q, which uses live links only, is missing or changed\nroutes:\n%s", order, l, rtCmds(cmds))
					}
				}
			}
			for _, i := range rng.Perm(3) {
				if p.down[i] {
					p.step(t, m, i)
					order = append(order, p.devs[i]+"+")
				}
			}
			if d := rtOrderedDiff(rtOrdered(t, p.ns), before); d != "" {
				t.Fatalf("after %v the routing state differs from the start (- before, + now):%s\nroutes:\n%s", order, d, rtCmds(cmds))
			}
			if w := m.Withdrawn(); len(w) != 0 {
				t.Fatalf("after %v still withdrawn: %v", order, w)
			}
			t.Logf("%d routes, order %v: restored byte-identically", len(cmds), order)
		})
	}
}

func rtCmds(cmds [][]string) string {
	var b strings.Builder
	for _, c := range cmds {
		b.WriteString("  ip " + strings.Join(c, " ") + "\n")
	}
	return b.String()
}

// TestRoutesOnePrefixTwoMetrics: one prefix at two metrics is two kernel
// keys, in IPv4 and IPv6. Withdrawing x takes only the route through x; a
// route an operator adds at a third metric while x is down is not "the
// same route re-added", so x's comes back too, and the table is then
// byte-identical.
func TestRoutesOnePrefixTwoMetrics(t *testing.T) {
	tp := rtSetup(t)
	for _, args := range [][]string{
		{"route", "add", "203.0.120.0/24", "via", "10.1.0.2", "dev", "x", "metric", "10"},
		{"route", "add", "203.0.120.0/24", "via", "10.2.0.2", "dev", "y", "metric", "20"},
		{"route", "add", "203.0.121.0/24", "via", "10.2.0.2", "dev", "y", "metric", "10"},
		{"route", "add", "203.0.121.0/24", "via", "10.1.0.2", "dev", "x", "metric", "20"},
		{"-6", "route", "add", "2001:db8:120::/64", "via", "2001:db8:1::2", "dev", "x", "metric", "10"},
		{"-6", "route", "add", "2001:db8:120::/64", "via", "2001:db8:2::2", "dev", "y", "metric", "20"},
	} {
		tp.ns.ip(t, args...)
	}
	m, _ := tp.manager(t)
	// Only what linkbeat manages: x and y's link-local addresses (and
	// their local routes) appear whenever their DAD ends.
	managed := func() []string {
		return slices.DeleteFunc(rtOrdered(t, tp.ns), func(l string) bool { return !rtManaged(l) })
	}
	before := managed()
	tp.cut(t)
	if _, err := m.LinkDown(tp.x, "x"); err != nil {
		t.Fatalf("LinkDown: %v", err)
	}
	now := rtOrdered(t, tp.ns)
	for _, want := range []string{
		"203.0.120.0/24 via 10.2.0.2 dev y table main proto boot scope global metric 20",
		"203.0.121.0/24 via 10.2.0.2 dev y table main proto boot scope global metric 10",
		"2001:db8:120::/64 via 2001:db8:2::2 dev y table main proto boot scope global metric 20",
	} {
		if !slices.ContainsFunc(now, func(l string) bool { return strings.Contains(l, want) }) {
			t.Errorf("while x is down, want %q kept:\n%s", want, strings.Join(now, "\n"))
		}
	}
	if l := rtThrough(now, "x"); len(l) > 0 {
		t.Errorf("while x is down, still through x: %q", l)
	}
	other := []string{"203.0.120.0/24", "via", "10.2.0.3", "dev", "y", "metric", "30"}
	tp.ns.ip(t, append([]string{"route", "add"}, other...)...)
	time.Sleep(50 * time.Millisecond) // let the manager hear of it
	tp.mend(t)
	if _, err := m.LinkUp(tp.x, "x"); err != nil {
		t.Fatalf("LinkUp: %v", err)
	}
	tp.ns.ip(t, append([]string{"route", "del"}, other...)...)
	if d := rtOrderedDiff(managed(), before); d != "" {
		t.Fatalf("after restore (- before, + now):%s", d)
	}
}
