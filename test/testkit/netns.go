package testkit

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"runtime"
	"strings"

	vnetns "github.com/vishvananda/netns"
)

// IP runs `ip -n ns args...` and returns its output.
func IP(ns string, args ...string) (string, error) {
	return Run("ip", append([]string{"-n", ns}, args...)...)
}

// Exec runs name inside ns (`ip netns exec`) and returns its output.
func Exec(ns, name string, args ...string) (string, error) {
	return Run("ip", append([]string{"netns", "exec", ns, name}, args...)...)
}

// Run runs a command and returns its combined output; the error names the
// command and carries the output.
func Run(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// AddNetns creates the named netns with its loopback up. ipv4Only turns
// IPv6 off in it, so autoconfiguration cannot change its tables behind a
// measurement's back.
func AddNetns(name string, ipv4Only bool) error {
	if _, err := Run("ip", "netns", "add", name); err != nil {
		return err
	}
	if ipv4Only {
		if _, err := Exec(name, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"); err != nil {
			return err
		}
	}
	_, err := IP(name, "link", "set", "lo", "up")
	return err
}

// VethPair creates a veth pair inside ns with both ends up: setting the
// peer down then drops a's carrier, like a pulled cable.
func VethPair(ns, a, peer string) error {
	for _, args := range [][]string{
		{"link", "add", a, "type", "veth", "peer", "name", peer},
		{"link", "set", a, "up"},
		{"link", "set", peer, "up"},
	} {
		if _, err := IP(ns, args...); err != nil {
			return err
		}
	}
	return nil
}

// InNetns runs fn on a fresh OS thread switched into h: sockets and
// devices fn makes belong to h. The thread goes back to its netns before
// it is unlocked; if that fails it stays locked, and so ends with its
// goroutine. It must not simply be left locked in h: when it is the main
// thread, Go cannot end it and keeps it, and /proc/self/net (the main
// thread's netns) would then show h for good.
func InNetns(h vnetns.NsHandle, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := vnetns.Get()
		if err != nil {
			errc <- fmt.Errorf("current netns: %w", err)
			return
		}
		defer orig.Close()
		if err := vnetns.Set(h); err != nil {
			errc <- fmt.Errorf("enter netns: %w", err)
			return
		}
		err = fn()
		if vnetns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// InNamed is InNetns for a netns by its name.
func InNamed(name string, fn func() error) error {
	h, err := vnetns.GetFromName(name)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", name, err)
	}
	defer h.Close()
	return InNetns(h, fn)
}

// Dialer returns a DialContext whose sockets are made inside the named
// netns, for an http.Transport that reaches a daemon on its loopback.
func Dialer(name string, d *net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := InNamed(name, func() error {
			var err error
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}

// Within runs fn on the calling goroutine's thread switched into the named
// netns, and switches back afterwards, also when fn ends the goroutine
// (t.Fatal): fn may fail the test.
func Within(name string, fn func()) (err error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := vnetns.Get()
	if err != nil {
		return fmt.Errorf("current netns: %w", err)
	}
	defer orig.Close()
	target, err := vnetns.GetFromName(name)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", name, err)
	}
	defer target.Close()
	if err := vnetns.Set(target); err != nil {
		return fmt.Errorf("enter netns %s: %w", name, err)
	}
	defer func() {
		if err := vnetns.Set(orig); err != nil {
			panic(err) // this thread must not go back to the pool in ns
		}
	}()
	fn()
	return nil
}

// NewNamed creates a named netns and returns a handle to it without
// leaving the caller in it. inside, if not nil, runs in the new netns
// first (its /proc/sys/net and the sockets it makes are that netns's);
// when it fails, the handle is returned open with its error, for the
// caller's cleanup.
func NewNamed(name string, inside func() error) (vnetns.NsHandle, error) {
	type result struct {
		h   vnetns.NsHandle
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := vnetns.Get()
		if err != nil {
			ch <- result{h: vnetns.None(), err: fmt.Errorf("current netns: %w", err)}
			return
		}
		defer orig.Close()
		h, err := vnetns.NewNamed(name) // also switches this thread
		if err != nil {
			ch <- result{h: vnetns.None(), err: fmt.Errorf("create netns %s: %w", name, err)}
			return
		}
		var ierr error
		if inside != nil {
			ierr = inside()
		}
		if err := vnetns.Set(orig); err != nil {
			ch <- result{h: h, err: errors.Join(ierr, fmt.Errorf("leave netns %s: %w", name, err))}
			return // the thread stays locked and dies with the goroutine
		}
		runtime.UnlockOSThread()
		ch <- result{h: h, err: ierr}
	}()
	r := <-ch
	return r.h, r.err
}

// Carrier reads dev's carrier from sysfs inside ns.
func Carrier(ns, dev string) (bool, error) {
	out, err := Exec(ns, "cat", "/sys/class/net/"+dev+"/carrier")
	if err != nil {
		return false, fmt.Errorf("%s: read carrier: %w", dev, err)
	}
	return strings.TrimSpace(out) == "1", nil
}
