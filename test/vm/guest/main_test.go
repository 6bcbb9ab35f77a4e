//go:build vmguest

// Package guest holds the tests that run inside the QEMU guest (as /guest.test,
// started by the testbed's /init). They need root, real kernels and the
// host's request channel; test/vm's TestVM builds and runs them.
package guest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"

	"github.com/linkbeat/linkbeat/test/testkit"
	"github.com/linkbeat/linkbeat/test/vm/guest/vmctl"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

const linkbeatBin = "/usr/bin/linkbeat"

// TestMain checks the testbed itself before any test: the NICs must be
// eth0..eth3 in netdev order and the host must answer requests.
func TestMain(m *testing.M) {
	for n := 0; n < 4; n++ {
		name := fmt.Sprintf("eth%d", n)
		b, err := os.ReadFile("/sys/class/net/" + name + "/address")
		if err != nil || strings.TrimSpace(string(b)) != vmctl.MAC(n) {
			fmt.Fprintf(os.Stderr, "testbed: %s should have MAC %s (net%d), got %q (%v)\n", name, vmctl.MAC(n), n, strings.TrimSpace(string(b)), err)
			os.Exit(3)
		}
	}
	if err := vmctl.Ping(); err != nil {
		fmt.Fprintf(os.Stderr, "testbed: request channel: %v\n", err)
		os.Exit(3)
	}
	hold, err := holdHotPathKeys()
	if err != nil {
		fmt.Fprintf(os.Stderr, "testbed: %v\n", err)
		os.Exit(3)
	}
	code := m.Run()
	hold()
	os.Exit(code)
}

// holdHotPathKeys turns on, for the whole boot, the static keys that
// linkbeat's programs switch on the transmit path: the net_dev_xmit and
// net_dev_xmit_timeout tracepoints (a no-op raw tracepoint program twice
// on each) and the TC ingress/egress keys (a clsact qdisc on a dummy link no
// test touches). Turning a key on or off live-patches dev_hard_start_xmit
// and __dev_queue_xmit; under multi-threaded TCG the other vCPU can run a
// stale translation of the patched text, which once ended a 6.12 guest
// with "Oops: int3" when linkbeat started while a test's stream was
// running. Held on, the keys never change while tests run. (Real CPUs
// are not affected: text_poke_bp is correct there.)
func holdHotPathKeys() (release func(), err error) {
	// Two programs: 6.1 refuses one program twice on a tracepoint (the
	// probe's data is the program there, the link on 6.12).
	var progs []*ebpf.Program
	var links []link.Link
	release = func() {
		for _, l := range links {
			l.Close()
		}
		for _, p := range progs {
			p.Close()
		}
		if l, err := netlink.LinkByName("keyhold0"); err == nil {
			netlink.LinkDel(l)
		}
	}
	// Two probes on each tracepoint, not one: a tracepoint's call site is
	// a static call, re-patched on every change between one probe and two
	// (the lone probe is called directly, two go through the iterator).
	// With two held, linkbeat's own probe moves it between two and three,
	// which patches nothing.
	for range 2 {
		prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
			Name: "lbtest_key_hold", Type: ebpf.RawTracepoint, License: "GPL",
			Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
		})
		if err != nil {
			release()
			return nil, fmt.Errorf("load the key-holding program: %w", err)
		}
		progs = append(progs, prog)
	}
	for _, tp := range []string{"net_dev_xmit", "net_dev_xmit_timeout"} {
		for _, prog := range progs {
			l, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: tp, Program: prog})
			if err != nil {
				release()
				return nil, fmt.Errorf("hold tracepoint %s on: %w", tp, err)
			}
			links = append(links, l)
		}
	}
	if err := netlink.LinkAdd(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: "keyhold0"}}); err != nil {
		release()
		return nil, fmt.Errorf("create keyhold0: %w", err)
	}
	kh, err := netlink.LinkByName("keyhold0")
	if err == nil {
		err = netlink.QdiscAdd(&netlink.GenericQdisc{QdiscType: "clsact",
			QdiscAttrs: netlink.QdiscAttrs{LinkIndex: kh.Attrs().Index, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT}})
	}
	if err != nil {
		release()
		return nil, fmt.Errorf("hold the TC keys on with a clsact qdisc on keyhold0: %w", err)
	}
	return release, nil
}

func requireLinkbeat(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(linkbeatBin); err != nil {
		t.Fatalf("%s is not in the guest image: run `make build` on the host so bin/linkbeat exists (%v)", linkbeatBin, err)
	}
}

// monotonicNow is CLOCK_MONOTONIC in ns, the clock of bpf_ktime_get_ns.
func monotonicNow() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic(err)
	}
	return ts.Nano()
}

// kernelAtLeast reports whether the running kernel is >= major.minor.
func kernelAtLeast(t *testing.T, major, minor int) bool {
	t.Helper()
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatal(err)
	}
	rel := unix.ByteSliceToString(u.Release[:])
	var ma, mi int
	if _, err := fmt.Sscanf(rel, "%d.%d", &ma, &mi); err != nil {
		t.Fatalf("cannot parse kernel release %q: %v", rel, err)
	}
	return ma > major || (ma == major && mi >= minor)
}

func kernelRelease() string {
	var u unix.Utsname
	unix.Uname(&u)
	return unix.ByteSliceToString(u.Release[:])
}

// runLinkbeat runs a short linkbeat command and returns its stdout.
func runLinkbeat(t *testing.T, args ...string) []byte {
	t.Helper()
	requireLinkbeat(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, linkbeatBin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if s := strings.TrimSpace(stderr.String()); s != "" {
		t.Logf("linkbeat %s stderr:\n%s", strings.Join(args, " "), s)
	}
	if err != nil {
		t.Fatalf("linkbeat %s: %v\nstdout:\n%s", strings.Join(args, " "), err, stdout.String())
	}
	return stdout.Bytes()
}

// daemon is a long-running linkbeat (monitor or run) with its output
// captured: stdout lines go to Lines, stderr is kept for the log.
type daemon struct {
	t      *testing.T
	name   string
	cmd    *exec.Cmd
	Lines  chan outLine
	ready  chan struct{}
	exited chan struct{}
	err    error

	mu     sync.Mutex
	stderr []string
}

func startDaemon(t *testing.T, args ...string) *daemon {
	t.Helper()
	requireLinkbeat(t)
	d := &daemon{
		t:      t,
		name:   "linkbeat " + strings.Join(args, " "),
		cmd:    exec.Command(linkbeatBin, args...),
		Lines:  make(chan outLine, 1024),
		ready:  make(chan struct{}),
		exited: make(chan struct{}),
	}
	stdout, err := d.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := d.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", d.name, err)
	}
	var pipes sync.WaitGroup
	pipes.Add(2)
	go func() {
		defer pipes.Done()
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			d.Lines <- outLine{Text: sc.Text(), At: monotonicNow()}
		}
	}()
	go func() {
		defer pipes.Done()
		var once sync.Once
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			d.mu.Lock()
			d.stderr = append(d.stderr, fmt.Sprintf("+%s %s", time.Now().Format("15:04:05.000"), line))
			d.mu.Unlock()
			// Readiness contract: a slog line with msg=ready on stderr.
			if strings.Contains(line, testkit.Ready) {
				once.Do(func() { close(d.ready) })
			}
		}
	}()
	go func() {
		pipes.Wait() // Wait must not run before the pipes are drained
		d.err = d.cmd.Wait()
		close(d.Lines)
		close(d.exited)
	}()
	t.Cleanup(func() {
		d.Stop()
		d.mu.Lock()
		defer d.mu.Unlock()
		t.Logf("%s stderr:\n%s", d.name, strings.Join(d.stderr, "\n"))
	})
	return d
}

// WaitReady waits for msg=ready; generous because the verifier and
// attaching are slow under TCG.
func (d *daemon) WaitReady(timeout time.Duration) {
	d.t.Helper()
	select {
	case <-d.ready:
	case <-d.exited:
		d.t.Fatalf("%s exited before it was ready: %v", d.name, d.err)
	case <-time.After(timeout):
		d.t.Fatalf("%s: no msg=ready on stderr within %v", d.name, timeout)
	}
}

// Stop sends SIGTERM and waits; it returns the exit error (nil for status 0).
func (d *daemon) Stop() error {
	if testkit.Stop(d.cmd.Process, d.exited, syscall.SIGTERM, 30*time.Second) {
		return fmt.Errorf("%s ignored SIGTERM for 30s and was killed", d.name)
	}
	return d.err
}

// outLine is a line of a daemon's stdout with the time it was read
// (CLOCK_MONOTONIC): when the event reached its consumer.
type outLine struct {
	Text string
	At   int64
}

// monitorEvent is one line of `linkbeat monitor --json`.
type monitorEvent struct {
	testkit.MonitorEvent
	raw    string
	readAt int64 // when the test read the line
}

// nextEvent returns the next monitor event matching match, logging the
// others. It fails the test on timeout or if the monitor exits.
func (d *daemon) nextEvent(timeout time.Duration, what string, match func(monitorEvent) bool) monitorEvent {
	d.t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case line, ok := <-d.Lines:
			if !ok {
				d.t.Fatalf("waiting for %s: %s exited: %v", what, d.name, d.err)
			}
			var ev monitorEvent
			if err := json.Unmarshal([]byte(line.Text), &ev); err != nil || ev.Ifname == "" {
				d.t.Logf("monitor: non-event line %q", line.Text)
				continue
			}
			ev.raw, ev.readAt = line.Text, line.At
			if match(ev) {
				return ev
			}
			d.t.Logf("monitor: other event %s", line.Text)
		case <-deadline:
			d.t.Fatalf("no %s from %s within %v", what, d.name, timeout)
		}
	}
}

// carrierNotice is a netlink RTM_NEWLINK in which IFLA_CARRIER changed,
// stamped with CLOCK_MONOTONIC right after recvmsg returned.
type carrierNotice struct {
	Ifindex int
	Ifname  string
	Carrier bool
	At      int64
}

// carrierWatcher listens on RTNLGRP_LINK with a raw socket, so the receive
// timestamp is taken before any decoding or channel hops.
type carrierWatcher struct {
	C       chan carrierNotice
	pending []carrierNotice // received but not yet asked for
}

// linkNotices is a raw RTNLGRP_LINK subscription: receive times are taken
// before any decoding. Subscribe first, seed what the watcher needs from a
// dump, then start.
type linkNotices struct{ s *nl.NetlinkSocket }

func subscribeLinks(t *testing.T) *linkNotices {
	t.Helper()
	s, err := nl.Subscribe(unix.NETLINK_ROUTE, unix.RTNLGRP_LINK)
	if err != nil {
		t.Fatalf("netlink subscribe RTNLGRP_LINK: %v", err)
	}
	// A short timeout lets the goroutine notice stop.
	if err := s.SetReceiveTimeout(&unix.Timeval{Usec: 200000}); err != nil {
		s.Close()
		t.Fatal(err)
	}
	return &linkNotices{s: s}
}

// start hands each RTM_NEWLINK payload and its receive time to fn, on a
// goroutine that the test's cleanup stops.
func (n *linkNotices) start(t *testing.T, fn func(data []byte, at int64)) {
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		defer n.s.Close()
		for {
			select {
			case <-stop:
				return
			default:
			}
			msgs, _, err := n.s.Receive()
			at := monotonicNow()
			if err != nil {
				continue // timeout (EAGAIN) or a transient error
			}
			for _, m := range msgs {
				if m.Header.Type == unix.RTM_NEWLINK && len(m.Data) >= unix.SizeofIfInfomsg {
					fn(m.Data, at)
				}
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
}

func watchCarrier(t *testing.T) *carrierWatcher {
	t.Helper()
	n := subscribeLinks(t)
	// Seed the last known IFLA_CARRIER from a dump taken after subscribing,
	// so no change falls between the two.
	last := map[int]bool{}
	req := nl.NewNetlinkRequest(unix.RTM_GETLINK, unix.NLM_F_DUMP)
	req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
	msgs, err := req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWLINK)
	if err != nil {
		n.s.Close()
		t.Fatalf("netlink link dump: %v", err)
	}
	for _, m := range msgs {
		if idx, _, carrier, ok := parseCarrier(m); ok {
			last[idx] = carrier
		}
	}
	w := &carrierWatcher{C: make(chan carrierNotice, 256)}
	n.start(t, func(data []byte, at int64) {
		idx, name, carrier, ok := parseCarrier(data)
		if !ok {
			return
		}
		if prev, ok := last[idx]; ok && prev == carrier {
			return
		}
		last[idx] = carrier
		select {
		case w.C <- carrierNotice{Ifindex: idx, Ifname: name, Carrier: carrier, At: at}:
		default:
		}
	})
	return w
}

// parseCarrier reads the ifindex, name and raw IFLA_CARRIER (attribute 33,
// a u8) of an RTM_NEWLINK payload.
func parseCarrier(data []byte) (ifindex int, name string, carrier, ok bool) {
	if len(data) < unix.SizeofIfInfomsg {
		return 0, "", false, false
	}
	ifi := nl.DeserializeIfInfomsg(data)
	attrs, err := nl.ParseRouteAttr(data[unix.SizeofIfInfomsg:])
	if err != nil {
		return 0, "", false, false
	}
	for _, a := range attrs {
		switch a.Attr.Type {
		case unix.IFLA_CARRIER:
			if len(a.Value) > 0 {
				carrier, ok = a.Value[0] != 0, true
			}
		case unix.IFLA_IFNAME:
			name = strings.TrimRight(string(a.Value), "\x00")
		}
	}
	return int(ifi.Index), name, carrier, ok
}

// next returns the next carrier change of ifname to the wanted state.
// Notices for other interfaces are kept for later calls.
func (w *carrierWatcher) next(t *testing.T, ifname string, carrier bool, timeout time.Duration) carrierNotice {
	t.Helper()
	for i, n := range w.pending {
		if n.Ifname == ifname && n.Carrier == carrier {
			w.pending = append(w.pending[:i], w.pending[i+1:]...)
			return n
		}
	}
	deadline := time.After(timeout)
	for {
		select {
		case n := <-w.C:
			if n.Ifname == ifname && n.Carrier == carrier {
				return n
			}
			w.pending = append(w.pending, n)
		case <-deadline:
			t.Fatalf("no netlink notice of %s carrier=%v within %v", ifname, carrier, timeout)
		}
	}
}

func mustLink(t *testing.T, name string) netlink.Link {
	t.Helper()
	l, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatalf("link %s: %v", name, err)
	}
	return l
}

func setAdmin(t *testing.T, name string, up bool) {
	t.Helper()
	l := mustLink(t, name)
	var err error
	if up {
		err = netlink.LinkSetUp(l)
	} else {
		err = netlink.LinkSetDown(l)
	}
	if err != nil {
		t.Fatalf("set %s admin up=%v: %v", name, up, err)
	}
}

// carrierOf reads /sys/class/net/<name>/carrier ("" when admin down).
func carrierOf(name string) string {
	b, _ := os.ReadFile("/sys/class/net/" + name + "/carrier")
	return strings.TrimSpace(string(b))
}

// waitCarrier polls sysfs until the carrier is as wanted.
func waitCarrier(t *testing.T, name string, up bool, timeout time.Duration) {
	t.Helper()
	want := "0"
	if up {
		want = "1"
	}
	deadline := time.Now().Add(timeout)
	for carrierOf(name) != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s carrier is %q, want %s after %v", name, carrierOf(name), want, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// setLinks cuts or restores host links and fails the test on error.
func setLinks(t *testing.T, up bool, netdevs ...string) {
	t.Helper()
	if err := vmctl.SetLinks(netdevs, up); err != nil {
		t.Fatal(err)
	}
}

// restoreLinksOnCleanup makes sure a failed test does not leave cables cut.
func restoreLinksOnCleanup(t *testing.T, netdevs ...string) {
	t.Cleanup(func() {
		if err := vmctl.SetLinks(netdevs, true); err != nil {
			t.Errorf("restoring %v: %v", netdevs, err)
		}
	})
}

func ms(ns int64) string { return strconv.FormatFloat(float64(ns)/1e6, 'f', 3, 64) + " ms" }
