package vm

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/linkbeat/linkbeat/test/vm/guest/vmctl"
)

// netdevs are the QEMU netdev ids of the guest NICs, in PCI order, so the
// guest sees them as eth0..eth3. The guest checks the order by MAC.
var netdevs = []string{"net0", "net1", "net2", "net3"}

// nicSpeed is the link speed (Mb/s, full duplex) virtio reports for netN.
// net0 is faster than the others so that bonding's primary_reselect=better
// has a better and a worse slave to choose between (see the guest's
// TestBondPrimaryReselect); virtio's default is "unknown" for all.
var nicSpeed = []int{10000, 1000, 1000, 1000}

// nicMAC is the MAC of netN; the guest side (vmctl) uses the same scheme.
func nicMAC(i int) string { return fmt.Sprintf("52:54:00:4c:42:%02x", i) }

type vmConfig struct {
	Kernel    *kernel
	Initramfs string
	LogDir    string // console.log, guest.out land here and are kept
	Shell     bool   // interactive: console on the caller's stdio
	// Cables wires the NICs as two cables, net0-net2 on one hub and
	// net1-net3 on another, instead of all four on one hub, all of one
	// speed (1000): a bond over
	// eth0 and eth1 against a partner bond over eth2 and eth3 (802.3ad)
	// needs each port to see one partner port. Only the guest tests named
	// *Cables* run on it (see cablesSplit).
	Cables  bool
	Timeout time.Duration
	// BootTimeout ends the run early when the guest has produced nothing
	// by then: the kernel hung while booting (seen rarely with 6.1 under
	// TCG), which says nothing about linkbeat. 0 means no limit.
	BootTimeout time.Duration
	Logf        func(string, ...any)
}

type vmResult struct {
	ConsoleLog string
	GuestOut   string
	BootTime   time.Duration // QEMU start until the guest's first request or output
	Elapsed    time.Duration
	TimedOut   bool
	BootHung   bool // nothing from the guest within BootTimeout
	QEMUErr    error
	Requests   []string // request channel log
	// Results holds what the guest wrote to the results port (benchmark
	// figures, one JSON line per scenario; see vmctl.WriteResult).
	Results string
}

// runVM boots the guest, serves QMP and the request channel, and returns when
// QEMU exits or the timeout kills it.
func runVM(cfg vmConfig) (*vmResult, error) {
	if err := os.MkdirAll(cfg.LogDir, 0o755); err != nil {
		return nil, err
	}
	res := &vmResult{
		ConsoleLog: filepath.Join(cfg.LogDir, "console.log"),
		GuestOut:   filepath.Join(cfg.LogDir, "guest.out"),
		Results:    filepath.Join(cfg.LogDir, "results.jsonl"),
	}
	os.Remove(res.GuestOut)
	os.Remove(res.Results)

	// Unix socket paths are limited to 108 bytes, so they live in /tmp,
	// not under a possibly deep checkout.
	sockDir, err := os.MkdirTemp("", "linkbeat-vm-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(sockDir)
	qmpPath := filepath.Join(sockDir, "qmp.sock")
	reqPath := filepath.Join(sockDir, "req.sock")
	// The host listens and QEMU connects as a client at startup, so there is
	// no polling for QEMU's sockets to appear.
	qmpL, err := net.Listen("unix", qmpPath)
	if err != nil {
		return nil, err
	}
	defer qmpL.Close()
	reqL, err := net.Listen("unix", reqPath)
	if err != nil {
		return nil, err
	}
	defer reqL.Close()

	cmdline := "console=ttyS0 panic=-1 oops=panic"
	if cfg.Shell {
		cmdline += " linkbeat.shell=1"
	}
	if cfg.Cables {
		cmdline += " " + vmctl.CablesCmdline
	}
	args := []string{
		// KVM guests hang on this machine (platform.md). Multi-threaded
		// TCG: the guest's TestMain holds the transmit path's static keys
		// on (holdHotPathKeys), so no test patches hot kernel text live.
		"-accel", "tcg",
		"-cpu", "max",
		"-m", "1024",
		"-smp", "2",
		"-no-reboot", // with panic=-1 a guest panic ends QEMU
		"-display", "none",
		"-monitor", "none",
		"-kernel", cfg.Kernel.Vmlinuz,
		"-initrd", cfg.Initramfs,
		"-append", cmdline,
		"-chardev", "socket,id=qmp,path=" + qmpPath,
		"-mon", "chardev=qmp,mode=control",
		"-device", "virtio-serial-pci,id=vser",
		"-chardev", "socket,id=req,path=" + reqPath,
		"-device", "virtserialport,bus=vser.0,chardev=req,name=" + reqPortName,
		"-chardev", "file,id=out,path=" + res.GuestOut,
		"-device", "virtserialport,bus=vser.0,chardev=out,name=" + outPortName,
		"-chardev", "file,id=results,path=" + res.Results,
		"-device", "virtserialport,bus=vser.0,chardev=results,name=" + vmctl.ResultsPortName,
	}
	if cfg.Shell {
		args = append(args, "-serial", "mon:stdio")
	} else {
		args = append(args, "-serial", "stdio")
	}
	// All NICs on one hub: frames from one guest NIC reach the others;
	// with Cables, two hubs: net0-net2 and net1-net3.
	for i, id := range netdevs {
		hub, speed := 0, nicSpeed[i]
		if cfg.Cables {
			// 802.3ad aggregates only ports of one speed.
			hub, speed = i%2, nicSpeed[len(nicSpeed)-1]
		}
		args = append(args,
			"-netdev", fmt.Sprintf("hubport,id=%s,hubid=%d", id, hub),
			"-device", fmt.Sprintf("virtio-net-pci,netdev=%s,mac=%s,speed=%d,duplex=full", id, nicMAC(i), speed))
	}

	console, err := os.Create(res.ConsoleLog)
	if err != nil {
		return nil, err
	}
	defer console.Close()
	cmd := exec.Command("qemu-system-x86_64", args...)
	fmt.Fprintf(console, "# qemu-system-x86_64 %s\n", strings.Join(args, " "))
	if cfg.Shell {
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	} else {
		cmd.Stdout, cmd.Stderr = console, console
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start qemu: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	// Accept both connections; give up if QEMU dies first.
	accept := func(l net.Listener) (net.Conn, error) {
		type r struct {
			c   net.Conn
			err error
		}
		ch := make(chan r, 1)
		go func() { c, err := l.Accept(); ch <- r{c, err} }()
		select {
		case x := <-ch:
			return x.c, x.err
		case err := <-exited:
			exited <- err
			return nil, fmt.Errorf("qemu exited before connecting: %v (see %s)", err, res.ConsoleLog)
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			return nil, errors.New("qemu did not connect to its sockets within 30s")
		}
	}
	qmpConn, err := accept(qmpL)
	if err != nil {
		return res, err
	}
	defer qmpConn.Close()
	reqConn, err := accept(reqL)
	if err != nil {
		return res, err
	}
	defer reqConn.Close()

	qmp, err := newQMP(qmpConn)
	if err != nil {
		cmd.Process.Kill()
		return res, fmt.Errorf("qmp: %w", err)
	}

	var mu sync.Mutex
	firstContact := make(chan struct{})
	var once sync.Once
	go serveRequests(reqConn, qmp, func(line string) {
		once.Do(func() { close(firstContact) })
		mu.Lock()
		res.Requests = append(res.Requests, fmt.Sprintf("+%.3fs %s", time.Since(start).Seconds(), line))
		mu.Unlock()
	})
	// Boot time: until the guest test binary produced output.
	go func() {
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for range t.C {
			if fi, err := os.Stat(res.GuestOut); err == nil && fi.Size() > 0 {
				once.Do(func() { close(firstContact) })
				return
			}
			select {
			case <-firstContact:
				return
			default:
			}
		}
	}()

	var timeout, bootTimeout <-chan time.Time
	if cfg.Timeout > 0 {
		timeout = time.After(cfg.Timeout)
	}
	if cfg.BootTimeout > 0 {
		bootTimeout = time.After(cfg.BootTimeout)
	}
	for {
		select {
		case <-firstContact:
			res.BootTime = time.Since(start)
			firstContact, bootTimeout = nil, nil
			continue
		case <-bootTimeout:
			res.BootHung = true
			timeout = closedTimer()
			continue
		case err := <-exited:
			res.Elapsed = time.Since(start)
			res.QEMUErr = err
			mu.Lock()
			defer mu.Unlock()
			return res, nil
		case <-timeout:
			res.TimedOut = true
			// Ask QEMU to quit so the files are flushed; then kill.
			qmp.command(`{"execute":"quit"}`)
			select {
			case err := <-exited:
				res.QEMUErr = err
			case <-time.After(5 * time.Second):
				cmd.Process.Signal(syscall.SIGKILL)
				res.QEMUErr = <-exited
			}
			res.Elapsed = time.Since(start)
			mu.Lock()
			defer mu.Unlock()
			return res, nil
		}
	}
}

func closedTimer() <-chan time.Time {
	c := make(chan time.Time, 1)
	c <- time.Now()
	return c
}

// qmpClient speaks QMP. Commands are serialised; batch sends several
// commands back to back before reading the replies, so the link changes in
// a batch are as close together as QMP allows.
type qmpClient struct {
	mu  sync.Mutex
	enc io.Writer
	dec *json.Decoder
	id  int
}

type qmpMsg struct {
	QMP    json.RawMessage `json:"QMP"`
	Event  string          `json:"event"`
	ID     *int            `json:"id"`
	Return json.RawMessage `json:"return"`
	Error  *struct {
		Class string `json:"class"`
		Desc  string `json:"desc"`
	} `json:"error"`
}

func newQMP(c net.Conn) (*qmpClient, error) {
	q := &qmpClient{enc: c, dec: json.NewDecoder(bufio.NewReader(c))}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	var greet qmpMsg
	if err := q.dec.Decode(&greet); err != nil || greet.QMP == nil {
		return nil, fmt.Errorf("no QMP greeting: %v", err)
	}
	c.SetDeadline(time.Time{})
	if errs := q.batch([]string{`{"execute":"qmp_capabilities"}`}); errs[0] != nil {
		return nil, errs[0]
	}
	return q, nil
}

func (q *qmpClient) command(cmd string) error { return q.batch([]string{cmd})[0] }

// batch sends all commands, then collects one reply per command (matched by
// id; asynchronous events are skipped).
func (q *qmpClient) batch(cmds []string) []error {
	q.mu.Lock()
	defer q.mu.Unlock()
	errs := make([]error, len(cmds))
	ids := map[int]int{}
	var buf strings.Builder
	for i, c := range cmds {
		q.id++
		ids[q.id] = i
		// Splice the id into the command object.
		fmt.Fprintf(&buf, "{\"id\":%d,%s\n", q.id, strings.TrimPrefix(strings.TrimSpace(c), "{"))
	}
	if _, err := io.WriteString(q.enc, buf.String()); err != nil {
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	for pending := len(cmds); pending > 0; {
		var m qmpMsg
		if err := q.dec.Decode(&m); err != nil {
			for id, i := range ids {
				errs[i] = err
				delete(ids, id)
			}
			return errs
		}
		if m.ID == nil {
			continue // event
		}
		i, ok := ids[*m.ID]
		if !ok {
			continue
		}
		delete(ids, *m.ID)
		pending--
		if m.Error != nil {
			errs[i] = fmt.Errorf("%s: %s", m.Error.Class, m.Error.Desc)
		}
	}
	return errs
}

// serveRequests answers the guest's request channel. Protocol, one line each
// way:
//
//	ping                    -> pong
//	setlink net0 down       -> ok | err <reason>
//	setlink net0,net1 up    -> ok | err <reason>   (one QMP batch)
//	pulse net0 50           -> ok <µs> | err <reason>
//
// pulse cuts the link, waits the given milliseconds on the host and
// restores it: a carrier blip shorter than any round trip through the
// guest could make. The reply carries the time between the two QMP
// answers, in microseconds.
//
// The reply is sent only after QMP has answered, so when the guest reads
// "ok" the link state has changed on QEMU's side.
func serveRequests(c net.Conn, qmp *qmpClient, logf func(string)) {
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		reply := handleRequest(line, qmp)
		logf(line + " -> " + reply)
		if _, err := io.WriteString(c, reply+"\n"); err != nil {
			return
		}
	}
}

func handleRequest(line string, qmp *qmpClient) string {
	f := strings.Fields(line)
	switch {
	case len(f) == 1 && f[0] == "ping":
		return "pong"
	case len(f) == 3 && f[0] == "setlink":
		var up bool
		switch f[2] {
		case "up":
			up = true
		case "down":
		default:
			return "err state must be up or down"
		}
		var cmds []string
		for _, id := range strings.Split(f[1], ",") {
			known := false
			for _, n := range netdevs {
				known = known || n == id
			}
			if !known {
				return "err unknown netdev " + id
			}
			cmds = append(cmds, fmt.Sprintf(`{"execute":"set_link","arguments":{"name":%q,"up":%t}}`, id, up))
		}
		var msgs []string
		for i, err := range qmp.batch(cmds) {
			if err != nil {
				msgs = append(msgs, fmt.Sprintf("%s: %v", strings.Split(f[1], ",")[i], err))
			}
		}
		if len(msgs) > 0 {
			return "err " + strings.Join(msgs, "; ")
		}
		return "ok"
	case len(f) == 3 && f[0] == "pulse":
		id := f[1]
		if !slices.Contains(netdevs, id) {
			return "err unknown netdev " + id
		}
		msec, err := strconv.Atoi(f[2])
		if err != nil || msec < 0 || msec > 60000 {
			return "err pulse length must be 0..60000 ms"
		}
		setLink := func(up bool) error {
			return qmp.command(fmt.Sprintf(`{"execute":"set_link","arguments":{"name":%q,"up":%t}}`, id, up))
		}
		if err := setLink(false); err != nil {
			return fmt.Sprintf("err %s down: %v", id, err)
		}
		down := time.Now()
		time.Sleep(time.Duration(msec) * time.Millisecond)
		if err := setLink(true); err != nil {
			return fmt.Sprintf("err %s up: %v", id, err)
		}
		return fmt.Sprintf("ok %d", time.Since(down).Microseconds())
	default:
		return "err unknown request"
	}
}
