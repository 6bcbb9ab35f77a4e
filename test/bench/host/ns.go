package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"sort"
	"strings"
	"time"

	"github.com/linkbeat/linkbeat/test/testkit"
	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
)

// namespace is a named network namespace the benchmark created, with a
// netlink handle inside it.
type namespace struct {
	name string
	h    vnetns.NsHandle
	nl   *netlink.Handle
}

// namespaces creates and removes the benchmark's network namespaces, so a
// failed scenario leaves none behind.
type namespaces struct {
	prefix string
	n      int
	all    []*namespace
	index  int // the last ifindex handed out
}

// veth creates dev in a and its peer in b, with ifindexes of their own.
// Two fresh namespaces number their devices alike, and a veth whose peer
// has its own ifindex looks to linkwatch like a physical device
// (iflink == ifindex): its carrier notices would be rate-limited to one a
// second, which is the tun scenarios' job to show, not the veth ones'.
func (s *namespaces) veth(a *namespace, dev string, b *namespace, peer string) error {
	s.index += 2
	return a.ip("link", "add", dev, "index", fmt.Sprint(1000+s.index), "type", "veth",
		"peer", "name", peer, "index", fmt.Sprint(1001+s.index), "netns", b.name)
}

func (s *namespaces) add() (*namespace, error) {
	s.n++
	name := fmt.Sprintf("%s-%d", s.prefix, s.n)
	ns := &namespace{name: name, h: vnetns.None()}
	s.all = append(s.all, ns)
	// IPv4 only: IPv6 autoconfiguration would change the tables behind
	// the measurement's back.
	if err := testkit.AddNetns(name, true); err != nil {
		return nil, err
	}
	h, err := vnetns.GetFromName(name)
	if err != nil {
		return nil, fmt.Errorf("open netns %s: %w", name, err)
	}
	ns.h = h
	if ns.nl, err = netlink.NewHandleAt(h); err != nil {
		return nil, fmt.Errorf("netlink handle in %s: %w", name, err)
	}
	return ns, nil
}

// closeAll removes every namespace created since the last closeAll.
func (s *namespaces) closeAll() {
	for _, ns := range s.all {
		if ns.nl != nil {
			ns.nl.Close()
		}
		if ns.h.IsOpen() {
			ns.h.Close()
		}
		exec.Command("ip", "netns", "del", ns.name).Run()
	}
	s.all = nil
}

func (ns *namespace) ip(args ...string) error {
	_, err := testkit.IP(ns.name, args...)
	return err
}

// ipAll runs several ip commands, stopping at the first error.
func (ns *namespace) ipAll(cmds ...[]string) error {
	for _, c := range cmds {
		if err := ns.ip(c...); err != nil {
			return err
		}
	}
	return nil
}

func (ns *namespace) run(name string, args ...string) (string, error) {
	return testkit.Exec(ns.name, name, args...)
}

// do runs f on an OS thread inside ns, which ends with f.
func (ns *namespace) do(f func() error) error { return testkit.InNetns(ns.h, f) }

// httpClient is a client whose connections are made inside ns, for the
// daemon's metrics endpoint on its loopback.
func (ns *namespace) httpClient() *http.Client {
	tr := &http.Transport{
		DialContext:         testkit.Dialer(ns.name, &net.Dialer{Timeout: 5 * time.Second}),
		MaxIdleConnsPerHost: 100,
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// routeLines is the main table as `ip route show` prints it, sorted, with
// the kernel's "linkdown" flag dropped: it comes and goes with carrier and
// is not a route change.
func (ns *namespace) routeLines() ([]string, error) {
	out, err := exec.Command("ip", "-n", ns.name, "route", "show").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("ip route show in %s: %w: %s", ns.name, err, out)
	}
	var lines []string
	for l := range strings.SplitSeq(strings.TrimSpace(string(out)), "\n") {
		l = strings.TrimSpace(strings.ReplaceAll(l, " linkdown", ""))
		if l != "" {
			lines = append(lines, l)
		}
	}
	sort.Strings(lines)
	return lines, nil
}

// waitRoutes waits until the main table equals want.
func (ns *namespace) waitRoutes(ctx context.Context, want []string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		got, err := ns.routeLines()
		if err != nil {
			return err
		}
		if slicesEqual(got, want) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("routes in %s after %v:\n  %s\nwant:\n  %s", ns.name, timeout,
				strings.Join(got, "\n  "), strings.Join(want, "\n  "))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func slicesEqual(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// waitCarrier waits until dev in ns has (or lacks) carrier.
func (ns *namespace) waitCarrier(ctx context.Context, dev string, want bool, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		l, err := ns.nl.LinkByName(dev)
		if err != nil {
			return fmt.Errorf("link %s in %s: %w", dev, ns.name, err)
		}
		if hasCarrier(l.Attrs().RawFlags) == want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s in %s: carrier not %v after %v", dev, ns.name, want, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func (ns *namespace) setLink(dev string, up bool) error {
	l, err := ns.nl.LinkByName(dev)
	if err != nil {
		return fmt.Errorf("link %s in %s: %w", dev, ns.name, err)
	}
	if up {
		err = ns.nl.LinkSetUp(l)
	} else {
		err = ns.nl.LinkSetDown(l)
	}
	if err != nil {
		return fmt.Errorf("set %s up=%v in %s: %w", dev, up, ns.name, err)
	}
	return nil
}

func (ns *namespace) ifindex(dev string) (int, error) {
	l, err := ns.nl.LinkByName(dev)
	if err != nil {
		return 0, fmt.Errorf("link %s in %s: %w", dev, ns.name, err)
	}
	return l.Attrs().Index, nil
}

// carrierChanges is the device's own count of carrier changes.
func (ns *namespace) carrierChanges(dev string) (int, error) {
	out, err := ns.run("cat", "/sys/class/net/"+dev+"/carrier_changes")
	if err != nil {
		return 0, err
	}
	var n int
	if _, err := fmt.Sscan(out, &n); err != nil {
		return 0, fmt.Errorf("carrier_changes of %s: %w", dev, err)
	}
	return n, nil
}

const iffLowerUp = 1 << 16

func hasCarrier(rawFlags uint32) bool { return rawFlags&iffLowerUp != 0 }

var errTimeout = errors.New("timed out")

// linkedPair is a server namespace with n veth links <dev>0.., each up
// with 10.<subnet>.i.2/24, whose peers <peer>0.. sit up in a switch
// namespace: setting a peer down there cuts the server link's carrier.
func (nss *namespaces) linkedPair(dev, peer string, subnet, n int) (srv, sw *namespace, ifaces []string, err error) {
	if srv, err = nss.add(); err != nil {
		return nil, nil, nil, err
	}
	if sw, err = nss.add(); err != nil {
		return nil, nil, nil, err
	}
	for i := 0; i < n; i++ {
		d, p := fmt.Sprintf("%s%d", dev, i), fmt.Sprintf("%s%d", peer, i)
		if err := nss.veth(srv, d, sw, p); err != nil {
			return nil, nil, nil, err
		}
		err := srv.ipAll(
			[]string{"addr", "add", fmt.Sprintf("10.%d.%d.2/24", subnet, i), "dev", d},
			[]string{"link", "set", d, "up"},
		)
		if err != nil {
			return nil, nil, nil, err
		}
		if err := sw.ip("link", "set", p, "up"); err != nil {
			return nil, nil, nil, err
		}
		ifaces = append(ifaces, d)
	}
	return srv, sw, ifaces, nil
}
