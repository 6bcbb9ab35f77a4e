package host

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf/link"
)

// pingPair is two netns joined by a veth (dev in a, peer in b) with
// static neighbours and no IPv6, so that only the test's packets cross.
func pingPair(t *testing.T, dev, peer string) (a, b netns) {
	t.Helper()
	a, b = newNetns(t), newNetns(t)
	a.ip(t, "link", "add", dev, "type", "veth", "peer", "name", peer, "netns", string(b))
	for _, x := range []struct {
		ns        netns
		dev, addr string
	}{{a, dev, "10.77.0.1/24"}, {b, peer, "10.77.0.2/24"}} {
		x.ns.exec(t, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
		x.ns.ip(t, "addr", "add", x.addr, "dev", x.dev)
		x.ns.ip(t, "link", "set", x.dev, "up")
	}
	mac := func(ns netns, d string) string {
		var l []struct {
			Address string `json:"address"`
		}
		json.Unmarshal([]byte(ns.ip(t, "-j", "link", "show", "dev", d)), &l)
		return l[0].Address
	}
	a.ip(t, "neigh", "replace", "10.77.0.2", "lladdr", mac(b, peer), "dev", dev, "nud", "permanent")
	b.ip(t, "neigh", "replace", "10.77.0.1", "lladdr", mac(a, dev), "dev", peer, "nud", "permanent")
	waitFor(t, dev+" carrier", func() bool { return carrierOf(t, a, dev) })
	return a, b
}

// bpftoolCounters dumps the pinned counter map with bpftool -j and sums
// the BTF-formatted per-CPU values of one key. It fails unless every
// field of struct if_counters is there by name.
func bpftoolCounters(t *testing.T, pin string, ifindex int) map[string]uint64 {
	t.Helper()
	out, err := exec.Command("bpftool", "-j", "map", "dump", "pinned", pin).Output()
	if err != nil {
		t.Fatalf("bpftool map dump pinned %s: %v", pin, err)
	}
	var entries []struct {
		Formatted *struct {
			Key    int `json:"key"`
			Values []struct {
				CPU   int               `json:"cpu"`
				Value map[string]uint64 `json:"value"`
			} `json:"values"`
		} `json:"formatted"`
	}
	if err := json.Unmarshal(out, &entries); err != nil {
		t.Fatalf("bpftool -j output: %v\n%.500s", err, out)
	}
	for _, e := range entries {
		if e.Formatted == nil {
			t.Fatalf("bpftool printed no BTF-formatted entry (the map has no BTF):\n%.500s", out)
		}
		if e.Formatted.Key != ifindex {
			continue
		}
		sum := map[string]uint64{}
		for _, v := range e.Formatted.Values {
			for _, f := range []string{"rx_packets", "rx_bytes", "rx_last_ns", "tx_packets", "tx_bytes", "tx_last_ns", "tx_errors", "tx_timeouts"} {
				x, ok := v.Value[f]
				if !ok {
					t.Fatalf("bpftool shows no field %s in cpu %d's value: %v", f, v.CPU, v.Value)
				}
				if strings.HasSuffix(f, "_last_ns") {
					sum[f] = max(sum[f], x)
				} else {
					sum[f] += x
				}
			}
		}
		return sum
	}
	t.Fatalf("no entry for ifindex %d in %s:\n%.500s", ifindex, pin, out)
	return nil
}

// TestBpftoolReadsPinnedCounters sends a known number of pings and reads
// the pinned counter map with bpftool: named fields, counts that match the
// packets sent, and the same numbers `linkbeat stats` reads.
func TestBpftoolReadsPinnedCounters(t *testing.T) {
	a, _ := pingPair(t, "lbb0", "lbb1")
	dir := pinDir(t)
	a.start(t, "run", "--interfaces", "lbb0", "--bpffs-dir", dir, "--state-dir", t.TempDir())
	idx := a.ifindex(t, "lbb0")
	before := bpftoolCounters(t, filepath.Join(dir, "if_stats"), idx)

	const n = 25
	a.exec(t, "ping", "-q", "-c", fmt.Sprint(n), "-i", "0.01", "-W", "2", "10.77.0.2")
	after := bpftoolCounters(t, filepath.Join(dir, "if_stats"), idx)
	tx, rx := after["tx_packets"]-before["tx_packets"], after["rx_packets"]-before["rx_packets"]
	t.Logf("bpftool: %d echo requests: tx %d, rx %d packets", n, tx, rx)
	if tx < n || tx > n+2 || rx < n || rx > n+2 {
		t.Errorf("bpftool counts tx %d, rx %d packets; want %d each (+2)", tx, rx, n)
	}
	if txb := after["tx_bytes"] - before["tx_bytes"]; txb < n*98 {
		t.Errorf("tx bytes %d, want at least %d", txb, n*98)
	}
	if after["rx_last_ns"] <= before["rx_last_ns"] {
		t.Errorf("rx_last_ns did not move: %d -> %d", before["rx_last_ns"], after["rx_last_ns"])
	}
	s := a.stats(t, dir)[idx]
	if s.TxPackets != after["tx_packets"] || s.RxPackets != after["rx_packets"] || s.TxBytes != after["tx_bytes"] {
		t.Errorf("linkbeat stats %+v disagrees with bpftool %v", s, after)
	}

	out, err := exec.Command("bpftool", "-j", "map", "dump", "pinned", filepath.Join(dir, "link_state")).Output()
	if err != nil || !strings.Contains(string(out), `"carrier":1`) || !strings.Contains(string(out), `"up_count"`) {
		t.Errorf("bpftool dump of link_state: %v\n%s", err, out)
	}
}

// TestSIGKILLRestartContinues kills the daemon during traffic and starts
// it again: the pinned programs count on while no daemon runs, the new
// daemon continues from there, the tcx links are the same links updated
// to the new programs, and there is one attachment per hook.
func TestSIGKILLRestartContinues(t *testing.T) {
	for _, mech := range []string{"tcx", "clsact"} {
		t.Run(mech, func(t *testing.T) {
			a, _ := pingPair(t, "lbk0", "lbk1")
			dir, state := pinDir(t), t.TempDir()
			args := []string{"run", "--interfaces", "lbk0", "--bpffs-dir", dir, "--state-dir", state, "--tc", mech}
			d := a.start(t, args...)
			idx := a.ifindex(t, "lbk0")

			ping := exec.Command("ip", "netns", "exec", string(a), "ping", "-q", "-i", "0.005", "-w", "60", "10.77.0.2")
			if err := ping.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ping.Process.Kill(); ping.Wait() })
			tx := func() uint64 { return a.stats(t, dir)[idx].TxPackets }
			waitFor(t, "traffic to be counted", func() bool { return tx() > 20 })
			oldLinks := tcxLinks(t, a, idx)

			if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			<-d.done
			killed := tx()
			waitFor(t, "counting to go on with no daemon", func() bool { return tx() > killed+20 })
			for _, hook := range []string{"ingress", "egress"} {
				if n := tcCount(t, a, "lbk0", idx, mech, hook); n != 1 {
					t.Fatalf("%s attachments with the daemon killed: %d, want 1 (left attached)", hook, n)
				}
			}

			before := tx()
			a.start(t, args...)
			after := tx()
			if after < before {
				t.Fatalf("counters went back from %d to %d on restart", before, after)
			}
			waitFor(t, "counting to go on after the restart", func() bool { return tx() > after+20 })
			t.Logf("%s: tx %d at the kill, %d at the restart, %d after", mech, killed, before, tx())
			for _, hook := range []string{"ingress", "egress"} {
				if n := tcCount(t, a, "lbk0", idx, mech, hook); n != 1 {
					t.Errorf("%s attachments after the restart: %d, want exactly 1", hook, n)
				}
			}
			if mech != "tcx" {
				return
			}
			newLinks := tcxLinks(t, a, idx)
			for _, prog := range []string{"tc_ingress", "tc_egress"} {
				o, n := oldLinks[prog], newLinks[prog]
				if len(o) != 1 || len(n) != 1 {
					t.Fatalf("%s links before %v, after %v", prog, o, n)
				}
				if o[0].ID != n[0].ID || o[0].Prog == n[0].Prog {
					t.Errorf("%s: link %d (program %d) became link %d (program %d); want the same link, updated to a new program",
						prog, o[0].ID, o[0].Prog, n[0].ID, n[0].Prog)
				}
			}
		})
	}
}

// pinnedLinkIDs returns the IDs of the links pinned in dir.
func pinnedLinkIDs(t *testing.T, dir string) map[string]link.ID {
	t.Helper()
	ids := map[string]link.ID{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "link_tcx_") && !strings.HasPrefix(e.Name(), "link_raw_tp_") {
			continue
		}
		l, err := link.LoadPinnedLink(filepath.Join(dir, e.Name()), nil)
		if err != nil {
			t.Fatalf("load pinned link %s: %v", e.Name(), err)
		}
		info, err := l.Info()
		l.Close()
		if err != nil {
			t.Fatal(err)
		}
		ids[e.Name()] = info.ID
	}
	return ids
}

// TestCleanupRemovesOnlyLinkbeatsPins stops a daemon (its programs stay
// attached, as by default), then runs `linkbeat cleanup`: no pin, no
// attachment and no link of linkbeat's is left, and a foreign pin in the
// same bpffs is untouched.
func TestCleanupRemovesOnlyLinkbeatsPins(t *testing.T) {
	for _, mech := range []string{"tcx", "clsact"} {
		t.Run(mech, func(t *testing.T) {
			ns := newNetns(t)
			ns.vethPair(t, "lbx0", "lbx1")
			idx := ns.ifindex(t, "lbx0")
			dir := pinDir(t)
			foreign := filepath.Join(filepath.Dir(dir), "foreign_map")
			run(t, "bpftool", "map", "create", foreign, "type", "hash", "key", "4", "value", "4", "entries", "1", "name", "foreign")

			d := ns.start(t, "run", "--interfaces", "lbx0", "--bpffs-dir", dir, "--state-dir", t.TempDir(), "--tc", mech)
			d.stop()
			for _, hook := range []string{"ingress", "egress"} {
				if n := tcCount(t, ns, "lbx0", idx, mech, hook); n != 1 {
					t.Fatalf("%s after a clean stop: %d attachments, want 1 (programs stay attached by default)", hook, n)
				}
			}
			links := pinnedLinkIDs(t, dir)
			if len(links) == 0 {
				t.Fatal("no link pins before cleanup")
			}

			var rep struct {
				Removed    []string `json:"removed"`
				DirRemoved bool     `json:"dir_removed"`
			}
			out := ns.exec(t, binary(t), "cleanup", "--json", "--bpffs-dir", dir)
			if err := json.Unmarshal([]byte(out), &rep); err != nil || !rep.DirRemoved {
				t.Fatalf("cleanup: %v\n%s", err, out)
			}
			if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("pin directory still there after cleanup: %v", err)
			}
			for _, hook := range []string{"ingress", "egress"} {
				if n := tcCount(t, ns, "lbx0", idx, mech, hook); n != 0 {
					t.Errorf("%s after cleanup: %d attachments, want 0", hook, n)
				}
			}
			for name, id := range links {
				if l, err := link.NewFromID(id); err == nil {
					l.Close()
					t.Errorf("link %d (pinned as %s) still exists after cleanup", id, name)
				}
			}
			if out, err := exec.Command("bpftool", "map", "show", "pinned", foreign).CombinedOutput(); err != nil || !strings.Contains(string(out), "foreign") {
				t.Errorf("the foreign pin was touched: %v\n%s", err, out)
			}
		})
	}
}

// TestReleaseOnExit: with --release-on-exit a clean exit detaches the
// programs and unpins links and programs; the counter maps stay pinned.
func TestReleaseOnExit(t *testing.T) {
	ns := newNetns(t)
	ns.vethPair(t, "lbe0", "lbe1")
	idx := ns.ifindex(t, "lbe0")
	dir := pinDir(t)
	d := ns.start(t, "run", "--interfaces", "lbe0", "--bpffs-dir", dir, "--state-dir", t.TempDir(), "--release-on-exit")
	if n := tcCount(t, ns, "lbe0", idx, "tcx", "ingress"); n != 1 {
		t.Fatalf("%d ingress attachments while running, want 1", n)
	}
	d.stop()
	for _, hook := range []string{"ingress", "egress"} {
		if n := tcCount(t, ns, "lbe0", idx, "tcx", hook); n != 0 {
			t.Errorf("%s after a clean exit with --release-on-exit: %d attachments, want 0", hook, n)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, e := range entries {
		left = append(left, e.Name())
	}
	if strings.Join(left, " ") != "if_stats link_state" {
		t.Errorf("pins left: %v, want only the maps (if_stats link_state)", left)
	}
}

// TestStatusWithoutDaemon runs the daemon through a carrier loss that
// withdraws a route, stops it, and reads `linkbeat status --json`.
func TestStatusWithoutDaemon(t *testing.T) {
	ns, peer := newNetns(t), newNetns(t)
	ns.ip(t, "link", "add", "lbs0", "type", "veth", "peer", "name", "lbs1", "netns", string(peer))
	ns.ip(t, "addr", "add", "10.89.0.1/24", "dev", "lbs0")
	ns.ip(t, "link", "set", "lbs0", "up")
	peer.ip(t, "link", "set", "lbs1", "up")
	waitFor(t, "lbs0 carrier", func() bool { return carrierOf(t, ns, "lbs0") })
	ns.ip(t, "route", "add", "203.0.113.0/24", "via", "10.89.0.2", "dev", "lbs0")
	dir, state := pinDir(t), t.TempDir()
	d := ns.start(t, "run", "--interfaces", "lbs0", "--bpffs-dir", dir, "--state-dir", state)
	start := time.Now()
	peer.ip(t, "link", "set", "lbs1", "down")
	waitFor(t, "the route to be withdrawn", func() bool { return !strings.Contains(ns.ip(t, "route", "show"), "203.0.113.0/24") })
	d.stop()

	var r struct {
		Daemon struct {
			Running       bool   `json:"running"`
			Recorded      bool   `json:"recorded"`
			CarrierSource string `json:"carrier_source"`
			TCMechanism   string `json:"tc_mechanism"`
			Pinned        bool   `json:"pinned"`
		} `json:"daemon"`
		Links []struct {
			Name             string     `json:"name"`
			Carrier          bool       `json:"carrier"`
			Monitored        bool       `json:"monitored"`
			LastChange       *time.Time `json:"last_change"`
			LastChangeSource string     `json:"last_change_source"`
			Counters         *struct {
				TxPackets uint64 `json:"tx_packets"`
			} `json:"counters"`
		} `json:"links"`
		Withdrawn []struct {
			Ifname string   `json:"ifname"`
			Routes []string `json:"routes"`
		} `json:"withdrawn_routes"`
	}
	out := ns.exec(t, binary(t), "status", "--json", "--bpffs-dir", dir, "--state-dir", state)
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	src := expectedSource(t, ns)
	_, mech := ns.features(t)
	if r.Daemon.Running || !r.Daemon.Recorded || r.Daemon.CarrierSource != src || r.Daemon.TCMechanism != mech || !r.Daemon.Pinned {
		t.Errorf("daemon %+v, want not running, recorded with %s and %s, pinned", r.Daemon, src, mech)
	}
	found := false
	for _, l := range r.Links {
		if l.Name != "lbs0" {
			continue
		}
		found = true
		if l.Carrier || !l.Monitored || l.Counters == nil {
			t.Errorf("lbs0 %+v: want no carrier, monitored, with counters", l)
		}
		if l.LastChange == nil || l.LastChange.Before(start.Add(-time.Second)) || l.LastChange.After(time.Now()) || l.LastChangeSource != src {
			t.Errorf("lbs0 last change %v via %q, want just after %v via %s", l.LastChange, l.LastChangeSource, start, src)
		}
	}
	if !found {
		t.Errorf("no lbs0 in %s", out)
	}
	// The connected 10.89.0.0/24 goes too; the static route is the one
	// the test made.
	if len(r.Withdrawn) != 1 || r.Withdrawn[0].Ifname != "lbs0" ||
		!slices.ContainsFunc(r.Withdrawn[0].Routes, func(s string) bool { return strings.HasPrefix(s, "203.0.113.0/24 ") }) {
		t.Errorf("withdrawn routes %+v, want lbs0's, with 203.0.113.0/24", r.Withdrawn)
	}
	text := ns.exec(t, binary(t), "status", "--bpffs-dir", dir, "--state-dir", state)
	for _, want := range []string{"not running", "lbs0", "route 203.0.113.0/24"} {
		if !strings.Contains(text, want) {
			t.Errorf("status text lacks %q:\n%s", want, text)
		}
	}
}

// TestChangedPinnedMapIsReplaced leaves an if_stats pin of the same type
// and sizes but without BTF (so of unknown layout) where the daemon pins
// its counters: the daemon must replace it, say so in its log and in a
// metric, and count into the new map.
func TestChangedPinnedMapIsReplaced(t *testing.T) {
	a, _ := pingPair(t, "lbl0", "lbl1")
	dir := pinDir(t)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	run(t, "bpftool", "map", "create", filepath.Join(dir, "if_stats"), "type", "percpu_hash", "key", "4", "value", "64", "entries", "4096", "name", "if_stats")
	d := a.start(t, "run", "--interfaces", "lbl0", "--bpffs-dir", dir, "--state-dir", t.TempDir())
	if log := d.stderr.String(); !strings.Contains(log, "pinned map has another layout") || !strings.Contains(log, "map=if_stats") {
		t.Errorf("no log line about replacing if_stats:\n%s", log)
	}
	for _, line := range strings.Split(d.stderr.String(), "\n") {
		if strings.Contains(line, "another layout") {
			t.Log(line)
		}
	}
	body := a.scrape(t, defaultMetrics)
	for series, want := range map[string]float64{`linkbeat_pinned_map_replaced{map="if_stats"}`: 1, `linkbeat_pinned_map_replaced{map="link_state"}`: 0} {
		if v, ok := sample(t, body, series); !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", series, v, ok, want)
		}
	}
	a.exec(t, "ping", "-q", "-c", "5", "-i", "0.01", "-W", "2", "10.77.0.2")
	if c := bpftoolCounters(t, filepath.Join(dir, "if_stats"), a.ifindex(t, "lbl0")); c["tx_packets"] < 5 {
		t.Errorf("the new map counted %d packets, want 5", c["tx_packets"])
	}
}
