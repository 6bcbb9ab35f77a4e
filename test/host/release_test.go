package host

import (
	"path/filepath"
	"testing"
	"time"
)

// TestStartReleasesUnmonitoredLinks: routes an earlier run withdrew from a
// link that this run no longer monitors come back at start, but for the
// nexthop objects the kernel takes only with carrier; those come back with
// the carrier, though the link is not monitored.
func TestStartReleasesUnmonitoredLinks(t *testing.T) {
	tp := rtSetup(t)
	before := rtTable(t, tp.ns)
	cfg := filepath.Join(t.TempDir(), "linkbeat.yaml")
	writeConfig(t, cfg, "interfaces:\n  x: {}\n  y: {}\n")
	args := []string{"run", "--config", cfg, "--bpffs-dir", pinDir(t), "--state-dir", tp.stateDir}
	d := tp.ns.start(t, args...)
	tp.cut(t)
	waitFor(t, "x's routes to go", func() bool { return len(rtGrep(rtTable(t, tp.ns), `"dst":"203.0.113.0/24"`)) == 0 })
	d.stop()
	if len(rtGrep(rtTable(t, tp.ns), `"dst":"203.0.113.0/24"`)) != 0 {
		t.Fatal("x's routes came back at the stop, while x is down")
	}

	// x leaves the set while down and no daemon runs.
	writeConfig(t, cfg, "interfaces:\n  y: {}\n")
	d = tp.ns.start(t, args...)
	waitFor(t, "x's routes to come back at start", func() bool { return len(rtGrep(rtTable(t, tp.ns), `"dst":"203.0.113.0/24"`)) == 1 })
	d.logged(t, "msg=\"nexthop objects of a released link wait for its carrier\" ifname=x", 1)
	tp.mend(t)
	waitFor(t, "x's nexthop objects to come back", func() bool { return len(rtGrep(rtTable(t, tp.ns), "nh ", `"gateway":"10.1.0.2","id":10,`)) == 1 })
	time.Sleep(100 * time.Millisecond)
	rtDiff(t, rtTable(t, tp.ns), before)
}
