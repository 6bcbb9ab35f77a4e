//go:build vmguest

package guest

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// TestFaultRingbufOverflow: with the carrier ring buffer
// shrunk to one page (--debug.ringbuf-size, about 64 events) and 48 veth
// pairs whose ends change carrier in one request each (ip link set group
// ... down: 96 fentry events under one lock, faster than any reader), the
// ring overflows. The drops must be counted, a ringbuf_drop resync must
// follow, and linkbeat must end with each link's real carrier. Only the
// guest can run this: the host refuses fentry, so there is no ring there.
func TestFaultRingbufOverflow(t *testing.T) {
	const pairs, group = 48, 7
	var names []string
	for i := range pairs {
		a, b := fmt.Sprintf("rb%d", i), fmt.Sprintf("rb%dp", i)
		names = append(names, a)
		if l, err := netlink.LinkByName(a); err == nil {
			netlink.LinkDel(l)
		}
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: a}, PeerName: b}); err != nil {
			t.Fatalf("add veth %s: %v", a, err)
		}
		t.Cleanup(func() {
			if l, err := netlink.LinkByName(a); err == nil {
				netlink.LinkDel(l)
			}
		})
		for _, n := range []string{a, b} {
			setAdmin(t, n, true)
		}
		if err := netlink.LinkSetGroup(mustLink(t, b), group); err != nil {
			t.Fatalf("group of %s: %v", b, err)
		}
	}
	for _, n := range names {
		waitCarrier(t, n, true, 30*time.Second)
	}

	addr := freeLoopbackAddr(t)
	url := "http://" + addr + "/metrics"
	d := startDaemon(t, "run", "--state-dir", t.TempDir(), "--interfaces", strings.Join(names, ","),
		"--debug.ringbuf-size", "4096", "--web.listen-address", addr)
	d.WaitReady(readyTimeout)
	first, err := scrapeMetrics(url)
	if err != nil {
		t.Fatal(err)
	}
	if src := first.series("linkbeat_carrier_source_info", map[string]string{"source": "fentry"}); len(src) != 1 {
		t.Fatalf("carrier source is not fentry: the ring buffer is not in use")
	}

	drops := func(s metricsSnapshot) float64 { return s.counter(t, "linkbeat_ringbuf_drops_total", nil) }
	resyncs := func(s metricsSnapshot) float64 {
		return s.counter(t, "linkbeat_resyncs_total", map[string]string{"reason": "ringbuf_drop"})
	}
	// Bursts until the kernel drops an event; each ends with all up.
	var s metricsSnapshot
	for round := 0; ; round++ {
		if round == 20 {
			t.Fatalf("20 bursts of %d events and no drop counted (linkbeat_ringbuf_drops_total %v)", 2*pairs, drops(s))
		}
		setGroup(t, group, false)
		setGroup(t, group, true)
		if s, err = scrapeMetrics(url); err != nil {
			t.Fatal(err)
		}
		if drops(s) > 0 {
			t.Logf("round %d: linkbeat_ringbuf_drops_total %v", round, drops(s))
			break
		}
	}
	s = waitMetrics(t, url, eventTimeout, "a ringbuf_drop resync", func(s metricsSnapshot) bool { return resyncs(s) > 0 })
	t.Logf("drops %v, ringbuf_drop resyncs %v", drops(s), resyncs(s))

	// The last burst leaves the even pairs down (both ends lose carrier).
	setGroup(t, group, false)
	for i := 1; i < pairs; i += 2 {
		setAdmin(t, fmt.Sprintf("rb%dp", i), true)
	}
	want := map[string]float64{}
	for i, n := range names {
		want[n] = float64(i % 2)
		waitCarrier(t, n, i%2 == 1, 30*time.Second)
	}
	waitMetrics(t, url, eventTimeout, "linkbeat_interface_carrier to match every link", func(s metricsSnapshot) bool {
		for n, v := range want {
			ms := s.series("linkbeat_interface_carrier", map[string]string{"interface": n})
			if len(ms) != 1 || ms[0].GetGauge().GetValue() != v {
				return false
			}
		}
		return true
	})
	recs, _ := d.logRecords(0)
	if !slices.ContainsFunc(recs, func(r logRecord) bool { return r["msg"] == "carrier ring buffer dropped events" }) {
		t.Errorf("no log line about the dropped events")
	}
}

// setGroup sets every link of a group up or down in one RTM_NEWLINK
// (what `ip link set group N down` sends): the kernel changes them all
// under one lock, so their carrier events come in one burst.
func setGroup(t *testing.T, group uint32, up bool) {
	t.Helper()
	req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Change = unix.IFF_UP
	if up {
		msg.Flags = unix.IFF_UP
	}
	req.AddData(msg)
	req.AddData(nl.NewRtAttr(unix.IFLA_GROUP, nl.Uint32Attr(group)))
	if _, err := req.Execute(unix.NETLINK_ROUTE, 0); err != nil {
		t.Fatalf("set group %d up=%v: %v", group, up, err)
	}
}
