package host

import (
	"os"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

const eventTimeout = 10 * time.Second

// hostCarrierSource is the carrier source this host must give, known from
// outside the code under test: this CI host refuses fentry and has no
// kprobes, so netlink (the VM kernels give fentry, in their own tests).
// LINKBEAT_HOST_CARRIER_SOURCE names another for a host that differs.
func hostCarrierSource() string {
	if s := os.Getenv("LINKBEAT_HOST_CARRIER_SOURCE"); s != "" {
		return s
	}
	return "netlink"
}

// expectedSource is hostCarrierSource, once `linkbeat features` in ns has
// been checked to give it: a test that takes its expectation from the code
// under test cannot see that code choose the wrong source.
func expectedSource(t *testing.T, ns netns) string {
	t.Helper()
	want := hostCarrierSource()
	if src, _ := ns.features(t); src != want {
		t.Fatalf("linkbeat features gives carrier source %q on this host, want %q (LINKBEAT_HOST_CARRIER_SOURCE for a host that differs)", src, want)
	}
	return want
}

func TestVethPeerDownUp(t *testing.T) {
	ns := newNetns(t)
	ns.vethPair(t, "lb0", "lb1")
	want := expectedSource(t, ns)

	d := ns.start(t, "monitor", "--json", "--interfaces", "lb0")
	ns.ip(t, "link", "set", "lb1", "down") // veth drops the peer's carrier
	down := d.next(t, "lb0", eventTimeout)
	if down.Carrier != "down" || down.Source != want || down.Ifindex != ns.ifindex(t, "lb0") {
		t.Fatalf("first event %+v, want lb0 down via %s", down, want)
	}
	ns.ip(t, "link", "set", "lb1", "up")
	up := d.next(t, "lb0", eventTimeout)
	if up.Carrier != "up" || up.Source != want {
		t.Fatalf("second event %+v, want lb0 up via %s", up, want)
	}
	if up.TimeNS <= down.TimeNS || up.UpCount != down.UpCount+1 {
		t.Fatalf("up event %+v does not follow down event %+v", up, down)
	}
}

// TUNSETCARRIER drives netif_carrier_on/off on a tap device whose iflink is
// its own ifindex, like a physical NIC.
const tunSetCarrier = 0x400454e2 // _IOW('T', 226, int)

func openTap(t *testing.T, ns netns, name string) (tap *os.File) {
	t.Helper()
	ns.do(t, func() { tap = createTap(t, name) })
	return tap
}

// createTap runs inside the netns: the device lands in the opener's netns.
func createTap(t *testing.T, name string) *os.File {

	f, err := os.OpenFile("/dev/net/tun", os.O_RDWR, 0)
	if err != nil {
		t.Fatalf("open /dev/net/tun: %v", err)
	}
	var req [unix.IFNAMSIZ + 64]byte
	copy(req[:], name)
	*(*uint16)(unsafe.Pointer(&req[unix.IFNAMSIZ])) = unix.IFF_TAP | unix.IFF_NO_PI
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.TUNSETIFF, uintptr(unsafe.Pointer(&req[0]))); errno != 0 {
		f.Close()
		t.Fatalf("TUNSETIFF: %v", errno)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func setCarrier(t *testing.T, f *os.File, on bool) {
	t.Helper()
	v := int32(0)
	if on {
		v = 1
	}
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), tunSetCarrier, uintptr(unsafe.Pointer(&v))); errno != 0 {
		t.Fatalf("TUNSETCARRIER %v: %v", on, errno)
	}
}

func TestTunSetCarrier(t *testing.T) {
	ns := newNetns(t)
	tap := openTap(t, ns, "lbtap0")
	ns.ip(t, "link", "set", "lbtap0", "up")
	want := expectedSource(t, ns)

	d := ns.start(t, "monitor", "--json", "--interfaces", "lbtap0")
	setCarrier(t, tap, false)
	if ev := d.next(t, "lbtap0", eventTimeout); ev.Carrier != "down" || ev.Source != want {
		t.Fatalf("got %+v, want lbtap0 down via %s", ev, want)
	}
	setCarrier(t, tap, true)
	if ev := d.next(t, "lbtap0", eventTimeout); ev.Carrier != "up" || ev.Source != want {
		t.Fatalf("got %+v, want lbtap0 up via %s", ev, want)
	}
}

// A flap faster than netlink can show must still end in the right state.
func TestTunRapidFlapEndsInFinalState(t *testing.T) {
	ns := newNetns(t)
	tap := openTap(t, ns, "lbtap1")
	ns.ip(t, "link", "set", "lbtap1", "up")
	d := ns.start(t, "monitor", "--json", "--interfaces", "lbtap1")
	for i := 0; i < 20; i++ {
		setCarrier(t, tap, i%2 == 1) // ends on: i=19 sets carrier on
	}
	setCarrier(t, tap, false)
	// Events may be coalesced, but they alternate and the last is down.
	var last event
	for {
		ev := d.next(t, "lbtap1", eventTimeout)
		if last.Carrier != "" && ev.Carrier == last.Carrier {
			t.Fatalf("two %s events in a row: %+v after %+v", ev.Carrier, ev, last)
		}
		last = ev
		if ev.DownCount == 11 && ev.Carrier == "down" {
			break
		}
	}
}
