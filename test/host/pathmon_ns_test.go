package host

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/linkbeat/linkbeat/gen"
	"github.com/linkbeat/linkbeat/internal/pathmon"
	"github.com/linkbeat/linkbeat/internal/traffic"
	"github.com/linkbeat/linkbeat/test/dropper"
)

// TestPathmonNS drives the path monitor with an IPv6 target and an IPv4
// one together (dual stack): two veth paths, qm0-qm1 and qn0-qn1, from
// netns a to a bridge in netns b, where 2001:db8:79::2 and 10.79.1.2
// live. Both paths go alive and both kinds of counter count. Then b drops
// the NAs it sends to qn0's probe MAC (TC egress on qn1, carrier up) and
// qn0 still lives on its ARP replies; once the ARP target goes too, qn0 is
// dead while qm0 stays alive; without the drops qn0 is alive again. qm0
// probes from an address that is not its own: the target's unicast NA
// reaches it only through the unicast filter entry.
func TestPathmonNS(t *testing.T) {
	for _, mech := range []traffic.Mechanism{traffic.TCX, traffic.Clsact} {
		t.Run(string(mech), func(t *testing.T) { testPathmonNS(t, mech) })
	}
}

func testPathmonNS(t *testing.T, mech traffic.Mechanism) {
	a, b := newNetns(t), newNetns(t)
	b.ip(t, "link", "add", "br0", "type", "bridge")
	for _, p := range [][2]string{{"qm0", "qm1"}, {"qn0", "qn1"}} {
		a.ip(t, "link", "add", p[0], "type", "veth", "peer", "name", p[1], "netns", string(b))
		b.ip(t, "link", "set", p[1], "master", "br0", "up")
		a.ip(t, "link", "set", p[0], "up")
	}
	b.ip(t, "addr", "add", "2001:db8:79::2/64", "dev", "br0", "nodad")
	b.ip(t, "addr", "add", "10.79.1.2/24", "dev", "br0")
	b.ip(t, "link", "set", "br0", "up")
	v6, v4 := netip.MustParseAddr("2001:db8:79::2"), netip.MustParseAddr("10.79.1.2")
	forced, _ := net.ParseMAC("02:00:00:79:01:01")
	qm0, qn0, qn1 := a.ifindex(t, "qm0"), a.ifindex(t, "qn0"), b.ifindex(t, "qn1")
	qn0MAC := linkMAC(t, a, "qn0")

	dir := pinDir(t)
	var m *pathmon.Monitor
	a.do(t, func() {
		var err error
		m, err = pathmon.Open(pathmon.Options{PinDir: dir, Mechanism: mech, Log: slog.New(slog.NewTextHandler(t.Output(), nil))})
		if err != nil {
			t.Fatal(err)
		}
	})
	t.Cleanup(func() { a.do(t, func() { m.Close() }) })
	const bondIndex = 1001
	spec := pathmon.Bond{Index: bondIndex, Name: "tbond6", Targets: []netip.Addr{v4, v6}, Interval: pmInterval, MissedMax: pmMissedMax,
		Slaves: []pathmon.Slave{{Index: qm0, Name: "qm0", MAC: forced}, {Index: qn0, Name: "qn0"}}}
	a.do(t, func() {
		if err := m.SetBond(spec); err != nil {
			t.Fatal(err)
		}
	})
	for alive := map[int]bool{}; len(alive) < 2; {
		r := nextReport(t, m, 5*time.Second)
		if !r.Alive {
			t.Fatalf("report %+v before both paths were alive", r)
		}
		alive[r.SlaveIndex] = true
	}
	time.Sleep(5 * pmInterval)
	for _, idx := range []int{qm0, qn0} {
		st := slaveStatus(t, m, idx)
		if len(st.Targets) != 2 || st.Targets[0].Addr != v4 || st.Targets[1].Addr != v6 || st.Targets[0].Replies < 3 || st.Targets[1].Replies < 3 || st.Targets[1].LastNs == 0 {
			t.Fatalf("slave %d status %+v, want ARP and NA replies from both targets", idx, st)
		}
	}
	// bpftool's view: the pinned NA map, one entry per slave.
	pinned, err := ebpf.LoadPinnedMap(filepath.Join(dir, pathmon.NSPinName), &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer pinned.Close()
	var (
		k gen.NsNsKey
		v gen.NsPathReplies
		n int
	)
	for it := pinned.Iterate(); it.Next(&k, &v); n++ {
		if k.Target != v6.As16() || v.Replies == 0 {
			t.Errorf("pinned NA entry %+v %+v", k, v)
		}
	}
	if n != 2 {
		t.Errorf("pinned NA map has %d entries, want 2", n)
	}
	// bpftool reads it with its BTF: named fields per entry.
	out, err := exec.Command("bpftool", "-j", "map", "dump", "pinned", filepath.Join(dir, pathmon.NSPinName)).Output()
	if err != nil {
		t.Fatalf("bpftool map dump pinned %s: %v", pathmon.NSPinName, err)
	}
	var dump []struct {
		Formatted struct {
			Key   map[string]any `json:"key"`
			Value map[string]any `json:"value"`
		} `json:"formatted"`
	}
	if err := json.Unmarshal(out, &dump); err != nil || len(dump) != 2 {
		t.Fatalf("bpftool -j: %v, %d entries:\n%.500s", err, len(dump), out)
	}
	for _, e := range dump {
		if e.Formatted.Key["ifindex"] == nil || e.Formatted.Key["target"] == nil || e.Formatted.Value["replies"] == nil || e.Formatted.Value["last_ns"] == nil {
			t.Errorf("bpftool shows no BTF-named fields: %+v", e.Formatted)
		}
	}
	// The target answered to the probe's link-local address, and learned
	// nothing else from the probes.
	if neigh := b.ip(t, "-6", "neigh", "show", "dev", "br0"); !strings.Contains(neigh, "02:00:00:79:01:01") {
		t.Errorf("b has no neighbour entry for qm0's probe address:\n%s", neigh)
	}

	// b stops sending NAs to qn0's probes: the ARP replies still keep qn0
	// alive (any target's answer does, as in bonding).
	var dropNA *traffic.HookLink
	b.do(t, func() { dropNA = dropNATo(t, mech, qn1, "qn1", qn0MAC) })
	time.Sleep((pmMissedMax + 2) * pmInterval)
	select {
	case r := <-m.Reports():
		t.Fatalf("report %+v while qn0's ARP target still answered", r)
	default:
	}
	before := slaveStatus(t, m, qn0).Targets[1].Replies
	time.Sleep(3 * pmInterval)
	if after := slaveStatus(t, m, qn0).Targets[1].Replies; after != before {
		t.Fatalf("qn0's NA count went from %d to %d while b dropped the NAs to it", before, after)
	}
	// Now its ARP probes go unanswered too: dead.
	var dropARPs *traffic.HookLink
	b.do(t, func() { dropARPs = dropARP(t, mech, qn1, "qn1", qn0MAC) })
	r := nextReport(t, m, 5*time.Second)
	if r.SlaveIndex != qn0 || r.Alive {
		t.Fatalf("report %+v, want qn0 dead", r)
	}
	if v := m.Verdict(bondIndex, qm0); v != pathmon.Alive {
		t.Errorf("qm0 is %v while its path answers", v)
	}
	// Only the ARP drop goes: the NAs still do not arrive, ARP revives it.
	b.do(t, func() {
		if err := dropARPs.Close(false); err != nil {
			t.Fatal(err)
		}
	})
	if r := nextReport(t, m, 5*time.Second); r.SlaveIndex != qn0 || !r.Alive {
		t.Fatalf("report %+v, want qn0 alive", r)
	}
	// IPv6 only: without the ARP target, the NA drop alone kills qn0.
	spec.Targets = []netip.Addr{v6}
	a.do(t, func() {
		if err := m.SetBond(spec); err != nil {
			t.Fatal(err)
		}
	})
	for seen := map[int]bool{}; !seen[qn0]; {
		r := nextReport(t, m, 5*time.Second)
		if r.SlaveIndex == qn0 && r.Alive {
			t.Fatalf("qn0 alive on IPv6 alone while its NAs are dropped")
		}
		if r.SlaveIndex == qm0 && !r.Alive {
			t.Fatalf("qm0 dead on IPv6 alone: %+v", r)
		}
		seen[r.SlaveIndex] = true
	}
	b.do(t, func() {
		if err := dropNA.Close(false); err != nil {
			t.Fatal(err)
		}
	})
	if r := nextReport(t, m, 5*time.Second); r.SlaveIndex != qn0 || !r.Alive {
		t.Fatalf("report %+v, want qn0 alive once the NAs pass", r)
	}
	a.do(t, func() {
		if err := m.RemoveBond(bondIndex); err != nil {
			t.Fatal(err)
		}
	})
	if out := a.exec(t, "tc", "filter", "show", "dev", "qm0", "ingress"); strings.Contains(out, "linkbeat-ns") {
		t.Errorf("the NS program is still on qm0:\n%s", out)
	}
	n = 0
	for it := pinned.Iterate(); it.Next(&k, &v); n++ {
	}
	if n != 0 {
		t.Errorf("pinned NA map has %d entries after the bond went, want 0", n)
	}
}

// dropNATo attaches, in the caller's netns, a TC program to ifindex's
// egress that drops the NAs sent to dst (test/dropper).
func dropNATo(t *testing.T, mech traffic.Mechanism, ifindex int, ifname string, dst net.HardwareAddr) *traffic.HookLink {
	t.Helper()
	prog, err := dropper.NATo(dst)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { prog.Close() })
	l, err := traffic.AttachHook(mech, ifindex, ifname, traffic.Hook{Program: prog, Egress: true, Name: "lbtest-dropna", Priority: 1, Protocol: unix.ETH_P_IPV6})
	if err != nil {
		if errors.Is(err, ebpf.ErrNotSupported) {
			t.Skipf("%s: %v", mech, err)
		}
		t.Fatal(err)
	}
	return l
}
