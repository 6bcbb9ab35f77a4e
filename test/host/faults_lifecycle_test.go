package host

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/linkbeat/linkbeat/internal/routes"

	"github.com/cilium/ebpf/link"
)

// goroutines reads linkbeat_goroutines from the daemon's metrics.
func goroutines(t *testing.T, ns netns) float64 {
	t.Helper()
	// Not go_goroutines: that counts the scrape's own collect workers too,
	// more of them the busier the CPUs.
	v, ok := sample(t, ns.scrape(t, defaultMetrics), "linkbeat_goroutines")
	if !ok {
		t.Fatal("the scrape has no linkbeat_goroutines")
	}
	return v
}

// goroutineBaseline is the settled count: the least of a few samples,
// so that a scrape or script finishing does not count.
func goroutineBaseline(t *testing.T, ns netns) float64 {
	t.Helper()
	low := goroutines(t, ns)
	for range 5 {
		time.Sleep(200 * time.Millisecond)
		low = min(low, goroutines(t, ns))
	}
	return low
}

// noGoroutineLeft waits for the daemon to be back at its baseline.
func noGoroutineLeft(t *testing.T, ns netns, baseline float64, after string) {
	t.Helper()
	settle(t, 10*time.Second, "no goroutine left behind "+after, func() error {
		if n := goroutines(t, ns); n > baseline {
			return fmt.Errorf("linkbeat_goroutines %v, baseline %v", n, baseline)
		}
		return nil
	})
}

// checkPins compares linkbeat's pinned tcx links with the interfaces that
// should have them: exactly one link per hook of each live monitored
// interface, each attached to that interface, and none for anything else.
func checkPins(t *testing.T, ns netns, dir string, live ...string) error {
	t.Helper()
	want := map[string]bool{}
	for _, dev := range live {
		idx := ns.ifindex(t, dev)
		for _, hook := range []string{"ingress", "egress"} {
			want[fmt.Sprintf("link_tcx_%s_%d", hook, idx)] = true
			if n := tcCount(t, ns, dev, idx, "tcx", hook); n != 1 {
				return fmt.Errorf("%s %s: %d programs of ours attached, want 1", dev, hook, n)
			}
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "link_tcx_") {
			continue
		}
		if !want[e.Name()] {
			errs = append(errs, fmt.Errorf("stale pin %s", e.Name()))
			continue
		}
		delete(want, e.Name())
		l, err := link.LoadPinnedLink(filepath.Join(dir, e.Name()), nil)
		if err != nil {
			errs = append(errs, fmt.Errorf("load %s: %w", e.Name(), err))
			continue
		}
		info, err := l.Info()
		l.Close()
		if err != nil || info.TCX() == nil || !strings.HasSuffix(e.Name(), fmt.Sprintf("_%d", info.TCX().Ifindex)) {
			errs = append(errs, fmt.Errorf("pin %s: link info %+v (%v), not attached to its interface", e.Name(), info, err))
		}
	}
	for name := range want {
		errs = append(errs, fmt.Errorf("no pin %s", name))
	}
	return errors.Join(errs...)
}

// stateLinks lists the links (name#ifindex) the routes state file holds.
func stateLinks(t *testing.T, dir string) []string {
	t.Helper()
	b, err := routes.ReadRecord(dir)
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Links map[string]any `json:"links"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("route record: %v\n%s", err, b)
	}
	var out []string
	for id := range st.Links {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// forgotten checks that nothing of dev is left: no state, no series, no
// withdrawn routes in status.
func forgotten(t *testing.T, ns netns, pins, state, dev string) error {
	t.Helper()
	var errs []error
	for _, id := range stateLinks(t, state) {
		if strings.HasPrefix(id, dev+"#") {
			errs = append(errs, fmt.Errorf("state file still holds %s", id))
		}
	}
	body := ns.scrape(t, defaultMetrics)
	if v, ok := sample(t, body, `linkbeat_interface_carrier{interface="`+dev+`"}`); ok {
		errs = append(errs, fmt.Errorf("linkbeat_interface_carrier{%s} still there (%v)", dev, v))
	}
	if v, ok := sample(t, body, `linkbeat_routes_withdrawn{interface="`+dev+`"}`); ok && v != 0 {
		errs = append(errs, fmt.Errorf("linkbeat_routes_withdrawn{%s} = %v", dev, v))
	}
	for _, w := range ns.status(t, pins, state).Withdrawn {
		if w.Ifname == dev {
			errs = append(errs, fmt.Errorf("status lists withdrawn routes of %s: %v", dev, w.Routes))
		}
	}
	return errors.Join(errs...)
}

// logSince returns what the daemon logged after mark (a length of its log).
func logSince(d *daemon, mark int) string { return d.stderr.String()[mark:] }

// TestFaultInterfaceLifecycle runs one daemon (every interface monitored)
// through an interface's life: deleted while down with routes withdrawn,
// re-created with the same name, renamed, and moved to another netns.
// After each step: routes right, nothing stale in the state file, the
// metrics or the pins, and no goroutine left behind.
func TestFaultInterfaceLifecycle(t *testing.T) {
	tp := faultSetup(t, "lc0", "lc1")
	tp.srv.ip(t, "route", "add", "203.0.113.0/24", "via", gw(0), "dev", "lc0")
	tp.srv.ip(t, "route", "add", "203.0.114.0/24", "via", gw(1), "dev", "lc1")
	before := rtTable(t, tp.srv)
	state, pins := t.TempDir(), pinDir(t)
	d := tp.srv.start(t, "run", "--bpffs-dir", pins, "--state-dir", state)
	sw := nlHandle(t, tp.sw)
	// cut sets the carrier of the link whose peer is dev+"p": lc0's peer
	// keeps its name when lc0 is renamed.
	cut := func(t *testing.T, dev string, up bool) { tp.setCarrier(t, sw, dev, up) }

	// Warm every path once (a withdrawal, a restore, a scrape) before
	// the baseline.
	cut(t, "lc0", false)
	settle(t, eventTimeout, "lc0's routes withdrawn", func() error { return routesMatch(tp.srv, before, "lc0") })
	cut(t, "lc0", true)
	settle(t, eventTimeout, "lc0's routes back", func() error { return routesMatch(tp.srv, before) })
	if err := checkPins(t, tp.srv, pins, "lc0", "lc1"); err != nil {
		t.Fatal(err)
	}
	baseline := goroutineBaseline(t, tp.srv)
	t.Logf("settled goroutines: %v", baseline)

	t.Run("deleted while down", func(t *testing.T) {
		cut(t, "lc0", false)
		settle(t, eventTimeout, "lc0's routes withdrawn", func() error { return routesMatch(tp.srv, before, "lc0") })
		if ids := stateLinks(t, state); len(ids) != 1 || !strings.HasPrefix(ids[0], "lc0#") {
			t.Fatalf("state file holds %v, want lc0's withdrawal", ids)
		}
		mark := len(d.stderr.String())
		tp.srv.ip(t, "link", "del", "lc0")
		settle(t, eventTimeout, "lc0 forgotten", func() error { return forgotten(t, tp.srv, pins, state, "lc0") })
		// Another link's change makes the daemon act: no restore of the
		// gone link's routes may be tried, or fail.
		cut(t, "lc1", false)
		settle(t, eventTimeout, "lc1's routes withdrawn", func() error {
			now, err := rtSnapshot(tp.srv)
			if err != nil {
				return err
			}
			if l := rtGrep(now, `"dev":"lc1"`, `"table":"main"`); len(l) != 0 {
				return fmt.Errorf("still via lc1: %v", l)
			}
			return nil
		})
		cut(t, "lc1", true)
		settle(t, eventTimeout, "lc1's routes back", func() error {
			now, err := rtSnapshot(tp.srv)
			if err != nil {
				return err
			}
			if l := rtGrep(now, `"dst":"203.0.114.0/24"`); len(l) != 1 {
				return fmt.Errorf("203.0.114.0/24: %v", l)
			}
			return nil
		})
		if l := logSince(d, mark); strings.Contains(l, "level=ERROR") || strings.Contains(l, "restore routes of lc0") {
			t.Errorf("errors after lc0 was deleted:\n%s", l)
		}
		if err := checkPins(t, tp.srv, pins, "lc1"); err != nil {
			t.Error(err)
		}
		noGoroutineLeft(t, tp.srv, baseline, "after the delete")
	})

	var recreated []string // the table with the new lc0
	t.Run("re-created with the same name", func(t *testing.T) {
		old := stateLinks(t, state)
		var srv, sw []string
		tp.addLinkCmds(0, "lc0", &srv, &sw)
		ipBatch(t, tp.srv, srv...)
		ipBatch(t, tp.sw, sw...)
		waitFor(t, "lc0 carrier", func() bool { return carrierOf(t, tp.srv, "lc0") })
		tp.srv.ip(t, "route", "add", "203.0.113.0/24", "via", gw(0), "dev", "lc0")
		recreated = rtTable(t, tp.srv)
		idx := tp.srv.ifindex(t, "lc0")
		settle(t, eventTimeout, "the new lc0 monitored", func() error {
			if v, ok := sample(t, tp.srv.scrape(t, defaultMetrics), `linkbeat_interface_carrier{interface="lc0"}`); !ok || v != 1 {
				return fmt.Errorf("linkbeat_interface_carrier{lc0} = %v (present %v)", v, ok)
			}
			return checkPins(t, tp.srv, pins, "lc0", "lc1")
		})
		cut(t, "lc0", false)
		settle(t, eventTimeout, "the new lc0's routes withdrawn", func() error { return routesMatch(tp.srv, recreated, "lc0") })
		if ids := stateLinks(t, state); !slices.Contains(ids, fmt.Sprintf("lc0#%d", idx)) {
			t.Errorf("state file holds %v (before: %v), want lc0#%d", ids, old, idx)
		}
		cut(t, "lc0", true)
		settle(t, eventTimeout, "the new lc0's routes back", func() error { return routesMatch(tp.srv, recreated) })
		if ids := stateLinks(t, state); len(ids) != 0 {
			t.Errorf("state file still holds %v", ids)
		}
		noGoroutineLeft(t, tp.srv, baseline, "after the re-creation")
	})
	if recreated == nil {
		t.FailNow()
	}

	t.Run("renamed while monitored", func(t *testing.T) {
		// Its cable is out when it is renamed (a link must be down to
		// be renamed, and that flushes its routes: the kernel's doing,
		// not linkbeat's to restore). What linkbeat withdrew before
		// must come back under the new name.
		idx := tp.srv.ifindex(t, "lc0")
		cut(t, "lc0", false)
		settle(t, eventTimeout, "lc0's routes withdrawn", func() error { return routesMatch(tp.srv, recreated, "lc0") })
		tp.srv.ip(t, "link", "set", "lc0", "down")
		tp.srv.ip(t, "link", "set", "lc0", "name", "lc9")
		tp.srv.ip(t, "link", "set", "lc9", "up")
		cut(t, "lc0", true)
		renamed := make([]string, len(recreated))
		for i, l := range recreated {
			renamed[i] = strings.ReplaceAll(l, `"dev":"lc0"`, `"dev":"lc9"`)
		}
		settle(t, eventTimeout, "lc9 (was lc0) monitored, with its routes back", func() error {
			if v, ok := sample(t, tp.srv.scrape(t, defaultMetrics), `linkbeat_interface_carrier{interface="lc9"}`); !ok || v != 1 {
				return fmt.Errorf("linkbeat_interface_carrier{lc9} = %v (present %v)", v, ok)
			}
			return routesMatch(tp.srv, renamed)
		})
		if err := forgotten(t, tp.srv, pins, state, "lc0"); err != nil {
			t.Error(err)
		}
		if ids := stateLinks(t, state); len(ids) != 0 {
			t.Errorf("state file holds %v after the restore", ids)
		}
		mark := len(d.stderr.String())
		cut(t, "lc0", false)
		settle(t, eventTimeout, "lc9's routes withdrawn", func() error { return routesMatch(tp.srv, renamed, "lc9") })
		if ids := stateLinks(t, state); !slices.Equal(ids, []string{fmt.Sprintf("lc9#%d", idx)}) {
			t.Errorf("state file holds %v, want lc9#%d", ids, idx)
		}
		cut(t, "lc0", true)
		settle(t, eventTimeout, "lc9's routes back", func() error { return routesMatch(tp.srv, renamed) })
		// The routes are back before the daemon logs the event it did it
		// for: wait for the line rather than read the log at once.
		settle(t, eventTimeout, "the events after the rename to carry the new name", func() error {
			if l := logSince(d, mark); !strings.Contains(l, `msg="link down" ifname=lc9`) || !strings.Contains(l, `msg="link up" ifname=lc9`) {
				return fmt.Errorf("log since the rename:\n%s", l)
			}
			return nil
		})
		if err := checkPins(t, tp.srv, pins, "lc9", "lc1"); err != nil {
			t.Error(err)
		}
		noGoroutineLeft(t, tp.srv, baseline, "after the rename")
	})

	t.Run("moved to another netns", func(t *testing.T) {
		other := newNetns(t)
		dev := "lc9"
		if execQuiet("ip", "-n", string(tp.srv), "link", "show", "dev", "lc9") != nil {
			dev = "lc0" // the rename failed
		}
		cut(t, "lc0", false)
		settle(t, eventTimeout, dev+"'s routes withdrawn", func() error {
			now, err := rtSnapshot(tp.srv)
			if err != nil {
				return err
			}
			if l := rtGrep(now, `"dev":"`+dev+`"`, `"table":"main"`); len(l) != 0 {
				return fmt.Errorf("still via %s: %v", dev, l)
			}
			return nil
		})
		mark := len(d.stderr.String())
		tp.srv.ip(t, "link", "set", dev, "netns", string(other))
		settle(t, eventTimeout, dev+" forgotten", func() error { return forgotten(t, tp.srv, pins, state, dev) })
		// Its carrier comes back over there: nothing of linkbeat's may
		// follow it, neither routes nor programs.
		other.ip(t, "link", "set", dev, "up")
		cut(t, "lc0", true)
		waitFor(t, dev+" carrier in the other netns", func() bool { return carrierOf(t, other, dev) })
		time.Sleep(500 * time.Millisecond)
		if r := other.ip(t, "route", "show", "table", "all"); strings.Contains(r, "203.0.113.0") {
			t.Errorf("a route withdrawn in the daemon's netns was restored in the other:\n%s", r)
		}
		idx := other.ifindex(t, dev)
		for _, hook := range []string{"ingress", "egress"} {
			if n := tcCount(t, other, dev, idx, "tcx", hook); n != 0 {
				t.Errorf("%s %s in the other netns: %d programs of ours still attached", dev, hook, n)
			}
		}
		if err := checkPins(t, tp.srv, pins, "lc1"); err != nil {
			t.Error(err)
		}
		if l := logSince(d, mark); strings.Contains(l, "level=ERROR") {
			t.Errorf("errors after the move:\n%s", l)
		}
		noGoroutineLeft(t, tp.srv, baseline, "after the move")
	})
}
