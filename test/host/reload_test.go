package host

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// hangup sends SIGHUP to a daemon started through `ip netns exec`, which
// execs linkbeat, so the pid is linkbeat's.
func (d *daemon) hangup(t *testing.T) {
	t.Helper()
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
}

// logged waits until the daemon's log holds want n times.
func (d *daemon) logged(t *testing.T, want string, n int) {
	t.Helper()
	waitFor(t, "log line "+want, func() bool { return strings.Count(d.stderr.String(), want) >= n })
}

func writeConfig(t *testing.T, path, doc string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestReloadAppliesAndRefuses walks one daemon through reloads: a new
// interface joins (its routes go, the others' programs are not touched),
// a broken file is refused with the old config kept in force, `routes:
// keep` gives a down link its routes back (its nexthop objects once the
// kernel takes them again), and leaving the set does too.
func TestReloadAppliesAndRefuses(t *testing.T) {
	tp := rtSetup(t)
	before := rtTable(t, tp.ns)
	cfg := filepath.Join(t.TempDir(), "linkbeat.yaml")
	writeConfig(t, cfg, "interfaces:\n  y: {}\n")
	d := tp.ns.start(t, "run", "--config", cfg, "--bpffs-dir", pinDir(t), "--state-dir", tp.stateDir, "--tc", "tcx")
	y := tp.ns.ifindex(t, "y")
	yLinks := tcxLinks(t, tp.ns, y)
	if len(yLinks["tc_ingress"]) != 1 || tcCount(t, tp.ns, "x", tp.x, "tcx", "ingress") != 0 {
		t.Fatalf("at start: y has %v, x has %d ingress programs; want y attached and x not", yLinks, tcCount(t, tp.ns, "x", tp.x, "tcx", "ingress"))
	}
	scrape := func() string { return tp.ns.scrape(t, defaultMetrics) }
	value := func(series string) float64 {
		t.Helper()
		v, ok := sample(t, scrape(), series)
		if !ok {
			t.Fatalf("no series %s", series)
		}
		return v
	}

	// x is not monitored: losing carrier leaves its routes to the kernel,
	// which keeps them, flagged linkdown.
	tp.cut(t)
	time.Sleep(300 * time.Millisecond)
	if l := rtGrep(rtTable(t, tp.ns), `"dst":"203.0.113.0/24"`); len(l) != 1 || strings.Contains(d.stderr.String(), "ifname=x") {
		t.Fatalf("linkbeat acted on x, which it does not monitor: %v\n%s", l, d.stderr.String())
	}

	// 1. x joins: it is down, so its routes go; y keeps its tcx links.
	writeConfig(t, cfg, "interfaces:\n  x: {}\n  y: {}\n")
	d.hangup(t)
	d.logged(t, "msg=\"config reloaded\"", 1)
	waitFor(t, "x's routes to be withdrawn", func() bool { return len(rtGrep(rtTable(t, tp.ns), `"dst":"203.0.113.0/24"`)) == 0 })
	tp.assertWithdrawn(t)
	if n := tcCount(t, tp.ns, "x", tp.x, "tcx", "ingress"); n != 1 {
		t.Errorf("x ingress programs after joining: %d, want 1", n)
	}
	if now := tcxLinks(t, tp.ns, y); len(now["tc_ingress"]) != 1 || now["tc_ingress"][0] != yLinks["tc_ingress"][0] ||
		len(now["tc_egress"]) != 1 || now["tc_egress"][0] != yLinks["tc_egress"][0] {
		t.Errorf("y's tcx links changed across the reload: %v, then %v", yLinks, now)
	}
	if v := value(`linkbeat_config_reloads_total{result="success"}`); v != 1 {
		t.Errorf("reloads success = %v, want 1", v)
	}

	// 2. A broken file is refused; the config in force still acts.
	writeConfig(t, cfg, "interfaces:\n  x: {routes: sometimes}\n")
	d.hangup(t)
	d.logged(t, "msg=\"config reload refused: the running config stays in force\"", 1)
	if !strings.Contains(d.stderr.String(), "line 2") {
		t.Errorf("the refusal does not name the line:\n%s", d.stderr.String())
	}
	if v := value(`linkbeat_config_reloads_total{result="failure"}`); v != 1 {
		t.Errorf("reloads failure = %v, want 1", v)
	}
	if v := value(`linkbeat_config_last_reload_successful`); v != 0 {
		t.Errorf("last reload successful = %v, want 0", v)
	}
	tp.mend(t)
	waitFor(t, "x's routes to come back", func() bool { return len(rtGrep(rtTable(t, tp.ns), `"dst":"203.0.113.0/24"`)) == 1 })
	rtDiff(t, rtTable(t, tp.ns), before)
	tp.cut(t)
	waitFor(t, "x's routes to go again", func() bool { return len(rtGrep(rtTable(t, tp.ns), `"dst":"203.0.113.0/24"`)) == 0 })

	// 3. routes: keep for x, still down: what was withdrawn comes back.
	writeConfig(t, cfg, "interfaces:\n  x: {routes: keep}\n  y: {}\n")
	d.hangup(t)
	d.logged(t, "msg=\"config reloaded\"", 2)
	waitFor(t, "x's routes to come back under routes: keep", func() bool { return len(rtGrep(rtTable(t, tp.ns), `"dst":"203.0.113.0/24"`)) == 1 })
	if v := value(`linkbeat_config_last_reload_successful`); v != 1 {
		t.Errorf("last reload successful = %v, want 1", v)
	}
	// The kernel takes no nexthop object on a link without carrier: those,
	// and the routes using them, wait for x's carrier.
	d.logged(t, "msg=\"nexthop objects of a released link wait for its carrier\" ifname=x", 1)
	if l := rtGrep(rtTable(t, tp.ns), `"dst":"2001:db8:99::/64"`); len(l) != 1 {
		t.Errorf("IPv6 route of x not back under routes: keep: %v", l)
	}

	// 4. Back to withdraw, then x leaves the set while down: released,
	// its routes come back and its programs go.
	writeConfig(t, cfg, "interfaces:\n  x: {}\n  y: {}\n")
	d.hangup(t)
	d.logged(t, "msg=\"config reloaded\"", 3)
	waitFor(t, "x's routes to go under withdraw", func() bool { return len(rtGrep(rtTable(t, tp.ns), `"dst":"203.0.113.0/24"`)) == 0 })
	writeConfig(t, cfg, "interfaces:\n  y: {}\n")
	d.hangup(t)
	d.logged(t, "msg=\"interface no longer monitored\"", 1)
	waitFor(t, "x's routes to come back once released", func() bool { return len(rtGrep(rtTable(t, tp.ns), `"dst":"203.0.113.0/24"`)) == 1 })
	if n := tcCount(t, tp.ns, "x", tp.x, "tcx", "ingress"); n != 0 {
		t.Errorf("x ingress programs after leaving the set: %d, want 0", n)
	}
	// Its carrier returns: what waited comes back, though x is no longer
	// monitored, and the table is the original.
	tp.mend(t)
	waitFor(t, "x's nexthop objects to come back", func() bool { return len(rtGrep(rtTable(t, tp.ns), "nh ", `"gateway":"10.1.0.2","id":10,`)) == 1 })
	time.Sleep(100 * time.Millisecond)
	rtDiff(t, rtTable(t, tp.ns), before)
}

// TestReloadLosesNoEvents flaps a monitored link while reloads keep
// coming: every carrier change is still counted.
func TestReloadLosesNoEvents(t *testing.T) {
	tp := rtSetup(t)
	cfg := filepath.Join(t.TempDir(), "linkbeat.yaml")
	writeConfig(t, cfg, "interfaces:\n  x: {}\n")
	d := tp.ns.start(t, "run", "--config", cfg, "--bpffs-dir", pinDir(t), "--state-dir", tp.stateDir)
	done := make(chan struct{})
	hups := 0
	go func() {
		defer close(done)
		for i := 0; i < 10; i++ {
			tp.cut(t)
			tp.mend(t)
		}
	}()
	for loop := true; loop; {
		select {
		case <-done:
			loop = false
		case <-time.After(15 * time.Millisecond):
			d.hangup(t)
			hups++
		}
	}
	d.logged(t, "msg=\"config reloaded\"", 1)
	for _, dir := range []string{"down", "up"} {
		series := `linkbeat_interface_carrier_changes_total{direction="` + dir + `",interface="x"}`
		waitFor(t, series+" = 10", func() bool {
			v, _ := sample(t, tp.ns.scrape(t, defaultMetrics), series)
			return v == 10
		})
	}
	t.Logf("%d SIGHUPs during 10 flaps; %d reloads logged", hups, strings.Count(d.stderr.String(), "msg=\"config reloaded\""))
}
