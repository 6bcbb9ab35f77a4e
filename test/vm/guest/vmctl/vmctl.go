//go:build linux

// Package vmctl is the guest side of the testbed's request channel: it asks
// the host to change the link state of the guest's NICs through QMP
// set_link, which is what a pulled cable looks like to the virtio driver.
package vmctl

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// PortName is the virtio-serial port the host serves requests on.
const PortName = "linkbeat.req"

// Netdevs maps the host's netdev ids to the guest interface names. The host
// attaches net0..net3 in PCI order, so the kernel names them eth0..eth3;
// CheckNICs verifies that by MAC.
var Netdevs = map[string]string{"net0": "eth0", "net1": "eth1", "net2": "eth2", "net3": "eth3"}

// CablesCmdline is on the guest's kernel command line when the host wired
// the NICs as two cables, eth0-eth2 and eth1-eth3 (on two QEMU hubs),
// rather than all four on one hub.
const CablesCmdline = "linkbeat.cables=1"

// MAC returns the MAC the host gives netN (52:54:00:4c:42:0N).
func MAC(n int) string { return fmt.Sprintf("52:54:00:4c:42:%02x", n) }

var (
	mu   sync.Mutex
	port *os.File
	rd   *bufio.Reader
)

func open() error {
	if port != nil {
		return nil
	}
	f, err := openPort(PortName, os.O_RDWR)
	if err != nil {
		return err
	}
	port, rd = f, bufio.NewReader(f)
	return nil
}

// openPort opens the virtio-serial port the host named name (there is no
// udev in the guest, so no /dev/virtio-ports links).
func openPort(name string, flag int) (*os.File, error) {
	names, _ := filepath.Glob("/sys/class/virtio-ports/*/name")
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil || strings.TrimSpace(string(b)) != name {
			continue
		}
		dev := "/dev/" + filepath.Base(filepath.Dir(n))
		f, err := os.OpenFile(dev, flag, 0)
		if err != nil {
			return nil, fmt.Errorf("vmctl: open %s: %w", dev, err)
		}
		return f, nil
	}
	return nil, fmt.Errorf("vmctl: no virtio-serial port named %s (not running in the linkbeat VM?)", name)
}

// request sends one line and waits for the host's one-line reply.
func request(line string, timeout time.Duration) (string, error) {
	mu.Lock()
	defer mu.Unlock()
	if err := open(); err != nil {
		return "", err
	}
	if _, err := port.WriteString(line + "\n"); err != nil {
		return "", fmt.Errorf("vmctl: write %q: %w", line, err)
	}
	type res struct {
		s   string
		err error
	}
	ch := make(chan res, 1)
	go func() { s, err := rd.ReadString('\n'); ch <- res{strings.TrimSpace(s), err} }()
	select {
	case r := <-ch:
		if r.err != nil {
			return "", fmt.Errorf("vmctl: read reply to %q: %w", line, r.err)
		}
		return r.s, nil
	case <-time.After(timeout):
		// The reader goroutine still owns rd: drop the port so the next
		// request does not read this stale reply.
		port.Close()
		port, rd = nil, nil
		return "", fmt.Errorf("vmctl: no reply to %q within %v", line, timeout)
	}
}

// Ping checks that the host answers.
func Ping() error {
	r, err := request("ping", 30*time.Second)
	if err != nil {
		return err
	}
	if r != "pong" {
		return fmt.Errorf("vmctl: ping: unexpected reply %q", r)
	}
	return nil
}

// SetLink sets the link of one host netdev (net0..net3) up or down and
// returns once QEMU has done it.
func SetLink(netdev string, up bool) error { return SetLinks([]string{netdev}, up) }

// SetLinks changes several links in one request; the host sends the QMP
// commands back to back, so the changes are as close together as QMP allows.
func SetLinks(netdevs []string, up bool) error {
	state := "down"
	if up {
		state = "up"
	}
	line := fmt.Sprintf("setlink %s %s", strings.Join(netdevs, ","), state)
	r, err := request(line, 60*time.Second)
	if err != nil {
		return err
	}
	if r != "ok" {
		return fmt.Errorf("vmctl: %s: host replied %q", line, r)
	}
	return nil
}

// Speed is the link speed in Mb/s (full duplex) the host gives netN: net0
// is faster than net1..net3, so bonding's primary_reselect=better has a
// better and a worse slave.
func Speed(n int) int {
	if n == 0 {
		return 10000
	}
	return 1000
}

// Pulse cuts one host netdev's link and restores it after d, timed on the
// host, so the blip is shorter than a guest round trip could make it. It
// returns how long the link was down between the two QMP answers.
func Pulse(netdev string, d time.Duration) (time.Duration, error) {
	line := fmt.Sprintf("pulse %s %d", netdev, d.Milliseconds())
	r, err := request(line, 60*time.Second+d)
	if err != nil {
		return 0, err
	}
	us, ok := strings.CutPrefix(r, "ok ")
	if !ok {
		return 0, fmt.Errorf("vmctl: %s: host replied %q", line, r)
	}
	var n int64
	if _, err := fmt.Sscanf(us, "%d", &n); err != nil {
		return 0, fmt.Errorf("vmctl: %s: bad reply %q", line, r)
	}
	return time.Duration(n) * time.Microsecond, nil
}
