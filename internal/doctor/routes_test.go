package doctor

import (
	"testing"

	"golang.org/x/sys/unix"

	"github.com/linkbeat/linkbeat/internal/routes"
)

// ecmp is x (2) and y (3) sharing a default route, x without carrier.
func ecmp() *Snapshot {
	x, y := veth(2, "x"), veth(3, "y")
	x.Carrier = false
	s := clean(x, y)
	s.Routes = []*routes.Route{route4("0.0.0.0/0", hop(2, "10.1.0.2", 1), hop(3, "10.2.0.2", 2))}
	s.IgnoreLinkdown["ipv4"] = map[string]bool{"all": false, "default": false, "x": false, "y": false}
	return s
}

func TestMultipathNexthopLinkdown(t *testing.T) {
	t.Run("sysctl 0, nexthop without carrier", func(t *testing.T) {
		f := only(t, checkMultipathLinkdown, ecmp(), "multipath-nexthop-linkdown")[0]
		if f.Severity != Error {
			t.Errorf("severity %s, want error", f.Severity)
		}
		if f.Subject != "default via 10.1.0.2 dev x, via 10.2.0.2 dev y" {
			t.Errorf("subject %q", f.Subject)
		}
		mustContain(t, "why", f.Why, "net.ipv4.conf.x.ignore_routes_with_linkdown=0", "1/3 of the flows",
			"linkbeat run would withdraw the nexthop on x")
		mustContain(t, "fix", f.Fix, "sysctl -w net.ipv4.conf.all.ignore_routes_with_linkdown=1", "/etc/sysctl.d/")
	})
	t.Run("not monitored", func(t *testing.T) {
		s := ecmp()
		s.Monitor.Daemon.Interfaces = []string{"y"}
		f := only(t, checkMultipathLinkdown, s, "multipath-nexthop-linkdown")[0]
		mustContain(t, "why", f.Why, "it does not monitor x")
	})
	t.Run("device sysctl 1", func(t *testing.T) {
		s := ecmp()
		s.IgnoreLinkdown["ipv4"]["x"] = true
		only(t, checkMultipathLinkdown, s, "multipath-linkdown-not-ignored")
	})
	t.Run("all 1 (IPv4 ORs it in)", func(t *testing.T) {
		s := ecmp()
		s.IgnoreLinkdown["ipv4"]["all"] = true
		only(t, checkMultipathLinkdown, s)
	})
	t.Run("link admin down: the kernel marks the nexthop dead itself", func(t *testing.T) {
		s := ecmp()
		s.Links[0].AdminUp = false
		only(t, checkMultipathLinkdown, s, "multipath-linkdown-not-ignored")
	})
	t.Run("single path", func(t *testing.T) {
		s := ecmp()
		s.Routes = []*routes.Route{route4("203.0.113.0/24", hop(2, "10.1.0.2", 1))}
		only(t, checkMultipathLinkdown, s)
	})
	t.Run("local table", func(t *testing.T) {
		s := ecmp()
		s.Routes[0].Table = unix.RT_TABLE_LOCAL
		only(t, checkMultipathLinkdown, s)
	})
	t.Run("IPv6 reads the device's value", func(t *testing.T) {
		s := ecmp()
		s.Routes = []*routes.Route{route6("2001:db8:98::/64", hop(2, "2001:db8:1::2", 1), hop(3, "2001:db8:2::2", 3))}
		s.IgnoreLinkdown["ipv6"] = map[string]bool{"all": true, "x": false, "y": false}
		f := only(t, checkMultipathLinkdown, s, "multipath-nexthop-linkdown")[0]
		mustContain(t, "fix", f.Fix, "net.ipv6.conf.all.ignore_routes_with_linkdown=1")
		if f.Subject != "-6 2001:db8:98::/64 via 2001:db8:1::2 dev x, via 2001:db8:2::2 dev y" {
			t.Errorf("subject %q", f.Subject)
		}
		s.IgnoreLinkdown["ipv6"]["x"] = true
		only(t, checkMultipathLinkdown, s, "multipath-linkdown-not-ignored")
	})
	t.Run("nexthop group", func(t *testing.T) {
		s := ecmp()
		r := route4("198.51.100.0/24")
		r.NHID = 10
		s.Routes = []*routes.Route{r}
		s.Nexthops = []*routes.Nexthop{
			{ID: 1, Ifindex: 2}, {ID: 2, Ifindex: 3},
			{ID: 10, Group: []routes.GroupMember{{ID: 1, Weight: 1}, {ID: 2, Weight: 1}}},
		}
		only(t, checkMultipathLinkdown, s, "multipath-nexthop-linkdown")
	})
	t.Run("every link up: info only", func(t *testing.T) {
		s := ecmp()
		s.Links[0].Carrier = true
		f := only(t, checkMultipathLinkdown, s, "multipath-linkdown-not-ignored")[0]
		if f.Severity != Info {
			t.Errorf("severity %s, want info", f.Severity)
		}
		mustContain(t, "summary", f.Summary, "1 multipath ipv4 route(s)", "(x, y)")
	})
}

func TestRoutesNotMonitored(t *testing.T) {
	lo := nic(1, "lo")
	lo.Loopback = true
	base := func() *Snapshot {
		s := clean(lo, nic(2, "eth0"), nic(3, "eth1"), bondL(10, "bond0", "active-backup", nil), port(4, "eth2", 10, nil))
		s.Routes = []*routes.Route{
			route4("0.0.0.0/0", hop(2, "192.0.2.1", 1)),
			route4("192.0.2.0/24", hop(2, "", 1)),
			route4("198.51.100.0/24", hop(10, "", 1)),
			route4("127.0.0.0/8", hop(1, "", 1)),
		}
		local := route4("192.0.2.5/32", hop(3, "", 1))
		local.Table = unix.RT_TABLE_LOCAL
		ll := route6("fe80::/64", hop(3, "", 1))
		s.Routes = append(s.Routes, local, ll)
		return s
	}
	t.Run("default: everything monitored", func(t *testing.T) {
		only(t, checkUnmonitoredRoutes, base())
	})
	t.Run("listed eth1 only", func(t *testing.T) {
		s := base()
		s.Monitor.Daemon.Interfaces = []string{"eth1"}
		fs := only(t, checkUnmonitoredRoutes, s, "routes-not-monitored", "routes-not-monitored")
		if fs[0].Subject != "eth0" || fs[1].Subject != "bond0" {
			t.Errorf("subjects %q, %q; want eth0, bond0", fs[0].Subject, fs[1].Subject)
		}
		mustContain(t, "summary", fs[0].Summary, "2 route(s): default, 192.0.2.0/24")
		mustContain(t, "fix", fs[0].Fix, "add eth0 to --interfaces")
	})
	t.Run("config lists them; bond0 covers its port", func(t *testing.T) {
		s := withConfig(base(), "interfaces:\n  eth0: {}\n  bond0: {}\n")
		only(t, checkUnmonitoredRoutes, s)
	})
	t.Run("config keeps eth0's routes", func(t *testing.T) {
		s := withConfig(base(), "interfaces:\n  eth0:\n    routes: keep\n  bond0: {}\n")
		if f := only(t, checkUnmonitoredRoutes, s, "routes-kept")[0]; f.Severity != Info || f.Subject != "eth0" {
			t.Errorf("got %+v", f)
		}
	})
	t.Run("listed interface missing", func(t *testing.T) {
		s := base()
		s.Monitor.Daemon.Interfaces = []string{"eth0", "bond0", "eht1"}
		if f := only(t, checkUnmonitoredRoutes, s, "monitored-interface-missing")[0]; f.Subject != "eht1" {
			t.Errorf("subject %q", f.Subject)
		}
	})
}

func TestRunInterfaces(t *testing.T) {
	s := withConfig(clean(), "interfaces:\n  b: {}\n  a: {}\n")
	if got := s.Monitor.Daemon.Interfaces; len(got) != 2 || got[0] != "a" || got[1] != "b" {
		t.Errorf("config list: got %v", got)
	}
	if got := RunInterfaces([]string{"x"}, s.Monitor.Config); len(got) != 1 || got[0] != "x" {
		t.Errorf("flag wins: got %v", got)
	}
	all := withConfig(clean(), "monitor_all: true\ninterfaces:\n  a: {}\n")
	if got := all.Monitor.Daemon.Interfaces; len(got) != 0 {
		t.Errorf("monitor_all: got %v, want all", got)
	}
	if got := RunInterfaces(nil, nil); len(got) != 0 {
		t.Errorf("no config: got %v", got)
	}
}
