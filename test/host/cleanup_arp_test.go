package host

import (
	"encoding/json"
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/linkbeat/linkbeat/internal/pathmon"
	"github.com/linkbeat/linkbeat/internal/traffic"
)

// arpFilters counts the path monitor's clsact filters (linkbeat-arp and
// linkbeat-ns) on a device's ingress hook.
func arpFilters(t *testing.T, ns netns, dev string) int {
	t.Helper()
	out := ns.exec(t, "tc", "filter", "show", "dev", dev, "ingress")
	return strings.Count(out, "linkbeat-arp") + strings.Count(out, "linkbeat-ns")
}

// openArpMonitor opens the ARP path monitor under clsact with pin
// directory dir in ns and probes through dev, as a daemon on Linux 6.1
// (no tcx) does. It is never closed: like a killed daemon, it leaves its
// filter and pins behind.
func openArpMonitor(t *testing.T, ns netns, dir, dev string) *pathmon.Monitor {
	t.Helper()
	var m *pathmon.Monitor
	ns.do(t, func() {
		var err error
		if m, err = pathmon.Open(pathmon.Options{PinDir: dir, Mechanism: traffic.Clsact}); err != nil {
			t.Fatal(err)
		}
		spec := pathmon.Bond{Index: 1000, Name: "tbond", Targets: []netip.Addr{netip.MustParseAddr("10.78.0.2"), netip.MustParseAddr("2001:db8:78::2")},
			Interval: time.Second, MissedMax: 3, Slaves: []pathmon.Slave{{Index: ns.ifindex(t, dev), Name: dev}}}
		if err := m.SetBond(spec); err != nil {
			t.Fatal(err)
		}
	})
	return m
}

// TestCleanupRemovesArpState: what the ARP path monitor leaves when its
// daemon is killed under clsact (the linkbeat-arp filter, the arp_replies
// map and the program's pin) is linkbeat's, so `linkbeat cleanup` removes
// all of it and with it the pin directory. A restarted monitor removes
// the filters the killed one left before it attaches its own.
func TestCleanupRemovesArpState(t *testing.T) {
	ns := newNetns(t)
	ns.vethPair(t, "lba0", "lba1")
	ns.vethPair(t, "lbb0", "lbb1")
	dir := pinDir(t)

	killed := openArpMonitor(t, ns, dir, "lba0")
	if n := arpFilters(t, ns, "lba0"); n != 2 {
		t.Fatalf("%d path filters on lba0 while probing, want 2 (ARP and NS)", n)
	}
	// A restart that probes through another slave only: the filter on
	// lba0 is a leftover.
	restarted := openArpMonitor(t, ns, dir, "lbb0")
	if n := arpFilters(t, ns, "lba0"); n != 0 {
		t.Errorf("%d path filters on lba0 after a restart that no longer probes it, want 0", n)
	}
	if n := arpFilters(t, ns, "lbb0"); n != 2 {
		t.Fatalf("%d path filters on lbb0, want 2 (ARP and NS)", n)
	}
	var pins []string
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		pins = append(pins, e.Name())
	}
	for _, want := range []string{traffic.MapArpReplies, traffic.ProgArp, traffic.MapNSReplies, traffic.ProgNS} {
		if !slices.Contains(pins, want) {
			t.Fatalf("pins %v lack %s", pins, want)
		}
	}

	var rep struct {
		Filters    []string `json:"filters"`
		Removed    []string `json:"removed"`
		Foreign    []string `json:"foreign"`
		DirRemoved bool     `json:"dir_removed"`
	}
	// stdout alone: a warning goes to stderr.
	out, err := exec.Command("ip", "netns", "exec", string(ns), binary(t), "cleanup", "--json", "--bpffs-dir", dir).Output()
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("cleanup --json: %v\n%s", err, out)
	}
	if err != nil {
		t.Errorf("cleanup: %v", err)
	}
	t.Logf("cleanup: %s", out)
	if len(rep.Foreign) > 0 || !rep.DirRemoved {
		t.Errorf("cleanup called %v foreign and kept the directory (removed: %v)", rep.Foreign, rep.DirRemoved)
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("pin directory still there after cleanup: %v", err)
	}
	if !slices.Contains(rep.Filters, "lbb0 ingress") {
		t.Errorf("cleanup reports filters %v, want lbb0 ingress among them", rep.Filters)
	}
	for _, dev := range []string{"lba0", "lbb0"} {
		if n := arpFilters(t, ns, dev); n != 0 {
			t.Errorf("%d path filters on %s after cleanup, want 0", n, dev)
		}
	}
	ns.do(t, func() {
		for _, m := range []*pathmon.Monitor{killed, restarted} {
			m.Close()
		}
	})
	if _, err := os.Stat(filepath.Dir(dir)); err != nil {
		t.Fatalf("the bpffs mount went: %v", err)
	}
}
