//go:build vmguest

package guest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"github.com/linkbeat/linkbeat/test/testkit"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

type ifStats struct {
	Ifindex   int    `json:"ifindex"`
	Ifname    string `json:"ifname"`
	RxPackets uint64 `json:"rx_packets"`
	RxBytes   uint64 `json:"rx_bytes"`
	TxPackets uint64 `json:"tx_packets"`
	TxBytes   uint64 `json:"tx_bytes"`
}

// statsOf returns eth's counters from `linkbeat stats --json`, ok=false if
// the interface is not listed.
func statsOf(t *testing.T, ifname string) (ifStats, bool) {
	t.Helper()
	out := runLinkbeat(t, "stats", "--json")
	var all []ifStats
	if err := json.Unmarshal(out, &all); err != nil {
		t.Fatalf("stats --json is not a JSON array: %v\n%s", err, out)
	}
	for _, s := range all {
		if s.Ifname == ifname {
			return s, true
		}
	}
	return ifStats{}, false
}

const (
	echoPackets = 50
	// Allowance for ARP on top of the datagrams counted; IPv6 (ND, MLD) is
	// switched off on both ends so it cannot add packets.
	counterSlack = 10
)

// TestTrafficCounters sends UDP datagrams from eth0 to an echo server behind
// eth3 in a second netns (both on QEMU's hub) and checks that linkbeat's
// pinned counters for eth0 grew by what was sent and what came back.
func TestTrafficCounters(t *testing.T) {
	requireLinkbeat(t)

	// Only eth0 and the peer's eth3 may be up: any other up NIC in the root
	// netns would answer ARP for 10.99.0.1 (arp_ignore=0) and draw the
	// replies away from eth0.
	for _, ifname := range []string{"eth1", "eth2"} {
		l := mustLink(t, ifname)
		if l.Attrs().MasterIndex != 0 {
			t.Fatalf("%s is still enslaved (index %d); an earlier test did not clean up", ifname, l.Attrs().MasterIndex)
		}
		wasUp := l.Attrs().Flags&net.FlagUp != 0
		setAdmin(t, ifname, false)
		t.Cleanup(func() {
			if wasUp {
				netlink.LinkSetUp(l)
			}
		})
	}
	setLinks(t, true, "net0", "net3")
	writeSysctl(t, "net/ipv6/conf/eth0/disable_ipv6", "1")

	echo := setupPeer(t)

	eth0 := mustLink(t, "eth0")
	addr, _ := netlink.ParseAddr("10.99.0.1/24")
	if err := netlink.AddrAdd(eth0, addr); err != nil {
		t.Fatalf("add 10.99.0.1/24 to eth0: %v", err)
	}
	t.Cleanup(func() { netlink.AddrDel(eth0, addr) })
	setAdmin(t, "eth0", true)
	waitCarrier(t, "eth0", true, 30*time.Second)

	d := startDaemon(t, "run", "--interfaces", "eth0")
	d.WaitReady(readyTimeout)
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, ok := statsOf(t, "eth0"); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("linkbeat stats --json did not list eth0 within 60s of the daemon being ready")
		}
		time.Sleep(500 * time.Millisecond)
	}

	before, _ := statsOf(t, "eth0")
	conn, err := net.DialUDP("udp4", &net.UDPAddr{IP: net.IPv4(10, 99, 0, 1)}, &net.UDPAddr{IP: net.IPv4(10, 99, 0, 2), Port: 9})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sent, received := 0, 0
	buf := make([]byte, 1500)
	for i := 0; i < echoPackets; i++ {
		msg := []byte(fmt.Sprintf("linkbeat-echo-%03d", i))
		if _, err := conn.Write(msg); err != nil {
			t.Fatalf("send datagram %d: %v", i, err)
		}
		sent++
		// Ping-like: wait for each reply, so nothing queues up.
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := conn.Read(buf)
		if err != nil {
			t.Logf("datagram %d: no reply: %v", i, err)
			continue
		}
		if !bytes.Equal(buf[:n], msg) {
			t.Errorf("datagram %d: reply %q, want %q", i, buf[:n], msg)
			continue
		}
		received++
	}
	after, _ := statsOf(t, "eth0")
	t.Logf("sent %d datagrams, %d replies (echo server saw %d)", sent, received, echo.count())
	t.Logf("eth0 counters before: %+v", before)
	t.Logf("eth0 counters after:  %+v", after)

	if received != sent {
		t.Errorf("%d of %d datagrams came back over a lossless virtual hub", received, sent)
	}
	dtx, drx := after.TxPackets-before.TxPackets, after.RxPackets-before.RxPackets
	if dtx < uint64(sent) || dtx > uint64(sent+counterSlack) {
		t.Errorf("eth0 tx_packets grew by %d, want %d..%d (sent %d datagrams, plus ARP)", dtx, sent, sent+counterSlack, sent)
	}
	if drx < uint64(received) || drx > uint64(received+counterSlack) {
		t.Errorf("eth0 rx_packets grew by %d, want %d..%d (received %d replies, plus ARP)", drx, received, received+counterSlack, received)
	}
	// 18-byte payload + UDP + IPv4 headers: at least 46 bytes per datagram,
	// whether or not the Ethernet header is counted.
	if dtxb := after.TxBytes - before.TxBytes; dtxb < uint64(sent*46) {
		t.Errorf("eth0 tx_bytes grew by %d, want at least %d for %d datagrams", dtxb, sent*46, sent)
	}
	if drxb := after.RxBytes - before.RxBytes; drxb < uint64(received*46) {
		t.Errorf("eth0 rx_bytes grew by %d, want at least %d for %d replies", drxb, received*46, received)
	}

	if err := d.Stop(); err != nil {
		t.Errorf("linkbeat run did not exit cleanly on SIGTERM: %v", err)
	}
}

func writeSysctl(t *testing.T, key, val string) {
	t.Helper()
	path := "/proc/sys/" + key
	old, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(val), 0o644); err != nil {
		t.Fatalf("sysctl %s=%s: %v", key, val, err)
	}
	t.Cleanup(func() { os.WriteFile(path, old, 0o644) })
}

type echoServer struct{ n chan int }

func (e *echoServer) count() int { n := <-e.n; e.n <- n; return n }

// setupPeer creates netns "peer", moves eth3 into it as 10.99.0.2/24 and
// runs a UDP echo server on port 9 there. Cleanup moves eth3 back.
func setupPeer(t *testing.T) *echoServer {
	t.Helper()
	eth3 := mustLink(t, "eth3")
	if eth3.Attrs().MasterIndex != 0 {
		t.Fatalf("eth3 is still enslaved; an earlier test did not clean up")
	}

	type result struct {
		ns   netns.NsHandle
		conn net.PacketConn
		err  error
	}
	var r result
	netns.DeleteNamed("peer") // leftover from an aborted run
	r.ns, r.err = testkit.NewNamed("peer", func() error {
		// /proc/sys/net is per netns of the opening thread. eth3 takes
		// "default" when it arrives, so IPv6 stays off on it.
		for _, k := range []string{"all", "default"} {
			if err := os.WriteFile("/proc/sys/net/ipv6/conf/"+k+"/disable_ipv6", []byte("1"), 0o644); err != nil {
				return fmt.Errorf("peer: disable ipv6: %w", err)
			}
		}
		var err error
		if r.conn, err = net.ListenPacket("udp4", ":9"); err != nil { // socket stays in peer
			return fmt.Errorf("peer: udp echo listener: %w", err)
		}
		return nil
	})
	if r.ns.IsOpen() {
		t.Cleanup(func() {
			// Move eth3 back so later tests find it; deleting the netns
			// would return it too, but possibly renamed.
			if h, err := netlink.NewHandleAt(r.ns, unix.NETLINK_ROUTE); err == nil {
				if l, err := h.LinkByName("eth3"); err == nil {
					if err := h.LinkSetNsPid(l, 1); err != nil {
						t.Errorf("move eth3 back: %v", err)
					}
				}
				h.Close()
			}
			netns.DeleteNamed("peer")
			r.ns.Close()
		})
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Cleanup(func() { r.conn.Close() })

	if err := netlink.LinkSetNsFd(eth3, int(r.ns)); err != nil {
		t.Fatalf("move eth3 into netns peer: %v", err)
	}
	h, err := netlink.NewHandleAt(r.ns, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatalf("netlink handle in peer: %v", err)
	}
	defer h.Close()
	for _, name := range []string{"lo", "eth3"} {
		l, err := h.LinkByName(name)
		if err != nil {
			t.Fatalf("peer: %s: %v", name, err)
		}
		if name == "eth3" {
			a, _ := netlink.ParseAddr("10.99.0.2/24")
			if err := h.AddrAdd(l, a); err != nil {
				t.Fatalf("peer: add 10.99.0.2/24 to eth3: %v", err)
			}
		}
		if err := h.LinkSetUp(l); err != nil {
			t.Fatalf("peer: set %s up: %v", name, err)
		}
	}

	e := &echoServer{n: make(chan int, 1)}
	e.n <- 0
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := r.conn.ReadFrom(buf)
			if err != nil {
				return
			}
			c := <-e.n
			e.n <- c + 1
			r.conn.WriteTo(buf[:n], from)
		}
	}()
	return e
}
