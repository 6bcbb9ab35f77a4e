package host

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"testing"
)

type statsRow struct {
	Ifindex   int    `json:"ifindex"`
	Ifname    string `json:"ifname"`
	RxPackets uint64 `json:"rx_packets"`
	TxPackets uint64 `json:"tx_packets"`
	RxBytes   uint64 `json:"rx_bytes"`
	TxBytes   uint64 `json:"tx_bytes"`
}

// pinDir is a private bpffs for one daemon's pins. `ip netns exec` gives
// its command a fresh /sys, hiding /sys/fs/bpf, so the pins live on a bpffs
// mounted elsewhere, which every netns exec sees.
func pinDir(t *testing.T) string {
	t.Helper()
	mnt := t.TempDir()
	run(t, "mount", "-t", "bpf", "bpf", mnt)
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	return filepath.Join(mnt, "linkbeat")
}

func (ns netns) stats(t *testing.T, dir string) map[int]statsRow {
	t.Helper()
	var rows []statsRow
	out := ns.exec(t, binary(t), "stats", "--json", "--bpffs-dir", dir)
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("stats --json: %v\n%s", err, out)
	}
	m := map[int]statsRow{}
	for _, r := range rows {
		m[r.Ifindex] = r
	}
	return m
}

// TestTCCounters pings across a veth pair and compares the counters with
// the packets sent. IPv6 is off and the neighbour entry static, so no ARP
// or ND traffic blurs the count; a tolerance of 2 covers stray frames.
func TestTCCounters(t *testing.T) {
	a, b := newNetns(t), newNetns(t)
	a.ip(t, "link", "add", "lbc0", "type", "veth", "peer", "name", "lbc1", "netns", string(b))
	for _, x := range []struct {
		ns        netns
		dev, addr string
	}{{a, "lbc0", "10.77.0.1/24"}, {b, "lbc1", "10.77.0.2/24"}} {
		x.ns.exec(t, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
		x.ns.ip(t, "addr", "add", x.addr, "dev", x.dev)
		x.ns.ip(t, "link", "set", x.dev, "up")
	}
	mac := func(ns netns, dev string) string {
		var l []struct {
			Address string `json:"address"`
		}
		json.Unmarshal([]byte(ns.ip(t, "-j", "link", "show", "dev", dev)), &l)
		return l[0].Address
	}
	a.ip(t, "neigh", "replace", "10.77.0.2", "lladdr", mac(b, "lbc1"), "dev", "lbc0", "nud", "permanent")
	b.ip(t, "neigh", "replace", "10.77.0.1", "lladdr", mac(a, "lbc0"), "dev", "lbc1", "nud", "permanent")

	dir := pinDir(t)
	a.start(t, "run", "--interfaces", "lbc0", "--bpffs-dir", dir)
	idx := a.ifindex(t, "lbc0")
	before := a.stats(t, dir)[idx]

	const n = 20
	a.exec(t, "ping", "-q", "-c", fmt.Sprint(n), "-i", "0.01", "-W", "2", "10.77.0.2")
	after := a.stats(t, dir)[idx]
	tx, rx := after.TxPackets-before.TxPackets, after.RxPackets-before.RxPackets
	t.Logf("lbc0: %d echo requests sent: tx %d, rx %d packets", n, tx, rx)
	if tx < n || tx > n+2 {
		t.Errorf("tx packets %d, want %d (+2)", tx, n)
	}
	if rx < n || rx > n+2 {
		t.Errorf("rx packets %d, want %d (+2)", rx, n)
	}
	// 84-byte IPv4 echo + 14-byte Ethernet header.
	if txb := after.TxBytes - before.TxBytes; txb < n*98 {
		t.Errorf("tx bytes %d, want at least %d", txb, n*98)
	}
}

func TestRecreatedInterfaceReattached(t *testing.T) {
	ns := newNetns(t)
	_, mech := ns.features(t)
	dir := pinDir(t)
	ns.start(t, "run", "--interfaces", "lbr0", "--bpffs-dir", dir)

	create := func() int {
		ns.ip(t, "link", "add", "lbr0", "type", "veth", "peer", "name", "lbr1")
		ns.ip(t, "link", "set", "lbr0", "up")
		return ns.ifindex(t, "lbr0")
	}

	first := create()
	waitFor(t, "counters for the first lbr0", func() bool { _, ok := ns.stats(t, dir)[first]; return ok })
	waitFor(t, "TC on the first lbr0", func() bool { return tcCount(t, ns, "lbr0", first, mech, "ingress") == 1 })

	ns.ip(t, "link", "del", "lbr0")
	second := create()
	if second == first {
		t.Fatalf("kernel reused ifindex %d; the test needs a new one", first)
	}
	waitFor(t, "counters to move to the new lbr0", func() bool {
		s := ns.stats(t, dir)
		_, old := s[first]
		_, cur := s[second]
		return !old && cur
	})
	waitFor(t, "TC on the new lbr0, once", func() bool { return tcCount(t, ns, "lbr0", second, mech, "ingress") == 1 })
}

// TestPinnedLinkOfAnotherNamespace: a pin directory whose tcx link is on
// a device of another network namespace with the same ifindex (fresh
// namespaces number their devices alike) is not taken over by a daemon
// started in this one: that would leave this namespace's device without
// counters while the other one keeps the program. The daemon attaches to
// its own device, once per hook.
func TestPinnedLinkOfAnotherNamespace(t *testing.T) {
	dir := pinDir(t)
	a, b := newNetns(t), newNetns(t)
	a.vethPair(t, "lbn0", "lbn1")
	b.vethPair(t, "lbn0", "lbn1")
	idx := a.ifindex(t, "lbn0")
	if bi := b.ifindex(t, "lbn0"); bi != idx {
		t.Fatalf("lbn0 is ifindex %d in one namespace and %d in the other; the test needs them alike", idx, bi)
	}
	args := []string{"run", "--interfaces", "lbn0", "--bpffs-dir", dir, "--tc", "tcx"}
	d := a.start(t, append(args, "--state-dir", t.TempDir())...)
	d.stop() // its links stay attached and pinned
	if n := tcCount(t, a, "lbn0", idx, "tcx", "ingress"); n != 1 {
		t.Fatalf("%d ingress links on the first namespace's lbn0 after a stop, want 1", n)
	}
	b.start(t, append(args, "--state-dir", t.TempDir())...)
	for _, hook := range []string{"ingress", "egress"} {
		if n := tcCount(t, b, "lbn0", idx, "tcx", hook); n != 1 {
			t.Errorf("%s: %d links of ours on lbn0 in the daemon's namespace, want 1", hook, n)
		}
	}
}

// TestMechanismSwitchLeavesOneAttachment starts a daemon with one TC
// mechanism where an earlier run, left attached at its stop, used the
// other: the earlier run's filters (clsact) or links (tcx) go from both
// hooks, so each hook counts traffic once, not twice.
func TestMechanismSwitchLeavesOneAttachment(t *testing.T) {
	for _, order := range [][2]string{{"clsact", "tcx"}, {"tcx", "clsact"}} {
		before, after := order[0], order[1]
		t.Run(before+"-then-"+after, func(t *testing.T) {
			ns := newNetns(t)
			ns.vethPair(t, "lbm0", "lbm1")
			idx := ns.ifindex(t, "lbm0")
			args := []string{"run", "--interfaces", "lbm0", "--bpffs-dir", pinDir(t)}
			d := ns.start(t, append(args, "--state-dir", t.TempDir(), "--tc", before)...)
			d.stop() // its programs stay attached
			for _, hook := range []string{"ingress", "egress"} {
				if n := tcCount(t, ns, "lbm0", idx, before, hook); n != 1 {
					t.Fatalf("%s: %d %s attachments after the first run's stop, want 1", hook, n, before)
				}
			}
			ns.start(t, append(args, "--state-dir", t.TempDir(), "--tc", after)...)
			for _, hook := range []string{"ingress", "egress"} {
				if n := tcCount(t, ns, "lbm0", idx, before, hook); n != 0 {
					t.Errorf("%s: %d %s attachments of the first run left, want 0", hook, n, before)
				}
				if n := tcCount(t, ns, "lbm0", idx, after, hook); n != 1 {
					t.Errorf("%s: %d %s attachments of the second run, want 1", hook, n, after)
				}
			}
		})
	}
}
