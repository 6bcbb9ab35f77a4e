package host

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/linkbeat/linkbeat/internal/routes"
)

// withdrawnInState lists "dst table" of every route the state file holds,
// tables by number as the kernel numbers them.
func withdrawnInState(t *testing.T, dir string) []string {
	t.Helper()
	b, err := routes.ReadRecord(dir)
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Links map[string]struct {
			Routes []struct {
				Route struct {
					Dst   string `json:"dst"`
					Table int    `json:"table"`
				} `json:"route"`
			} `json:"routes"`
		} `json:"links"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("route record (never torn): %v\n%s", err, b)
	}
	var out []string
	for _, l := range st.Links {
		for _, r := range l.Routes {
			out = append(out, fmt.Sprintf("%s %d", r.Route.Dst, r.Route.Table))
		}
	}
	return out
}

// routeKeyOf is "dst table" of an rtTable line of family 4, with the
// table by number, as the state file writes it.
func routeKeyOf(line string) string {
	_, js, _ := strings.Cut(line, " ")
	var o struct {
		Dst   string `json:"dst"`
		Table string `json:"table"`
	}
	_ = json.Unmarshal([]byte(js), &o)
	table := map[string]string{"main": "254", "default": "253", "local": "255"}[o.Table]
	if table == "" {
		table = o.Table
	}
	dst := o.Dst
	if dst == "default" {
		dst = "0.0.0.0/0"
	} else if !strings.Contains(dst, "/") {
		dst += "/32"
	}
	return dst + " " + table
}

// TestFaultSIGKILLDuringFailover cuts or mends a link 20 times and kills
// the daemon with SIGKILL at a random moment 0-5 ms later, in its
// reaction window, then starts it again. While it is dead, every route of
// the link is in the kernel or in the state file; after each restart the
// routes match the carrier and there is one attachment per hook.
func TestFaultSIGKILLDuringFailover(t *testing.T) {
	rng := rand.New(rand.NewPCG(faultSeed(t), 5))
	tp := faultSetup(t, "kx", "ky")
	for _, args := range [][]string{
		{"route", "add", "203.0.113.0/24", "via", gw(0), "dev", "kx", "proto", "static", "metric", "50"},
		{"route", "add", "203.0.115.0/24", "via", gw(0), "dev", "kx", "table", "100"},
		{"route", "add", "default", "nexthop", "via", gw(0), "dev", "kx", "weight", "1", "nexthop", "via", gw(1), "dev", "ky", "weight", "3"},
		{"route", "add", "198.18.0.0/16", "via", gw(1), "dev", "ky"},
	} {
		tp.srv.ip(t, args...)
	}
	orig := rtTable(t, tp.srv)
	var kxRoutes []string // what goes through kx, by "dst table"
	for _, l := range orig {
		if k, devs := rtParse(l); strings.HasPrefix(k, "4 unicast") && slices.Contains(devs, "kx") {
			kxRoutes = append(kxRoutes, routeKeyOf(l))
		}
	}
	if len(kxRoutes) != 4 {
		t.Fatalf("routes through kx: %v, want 4", kxRoutes)
	}
	state, pins := t.TempDir(), pinDir(t)
	args := []string{"run", "--interfaces", "kx,ky", "--bpffs-dir", pins, "--state-dir", state}
	d := tp.srv.start(t, args...)
	sw := nlHandle(t, tp.sw)

	for i := range 20 {
		up := !carrierOf(t, tp.srv, "kx")
		delay := time.Duration(rng.IntN(5001)) * time.Microsecond
		action := map[bool]string{true: "mend", false: "cut"}[up]
		t.Logf("round %d: %s kx, SIGKILL %v later", i, action, delay)
		if err := setPeer(sw, "kx", up); err != nil {
			t.Fatal(err)
		}
		time.Sleep(delay)
		if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-d.done

		// Dead: nothing of kx's may be lost.
		now, err := rtSnapshot(tp.srv)
		if err != nil {
			t.Fatal(err)
		}
		inKernel := map[string]bool{}
		for _, l := range now {
			if k, devs := rtParse(l); strings.HasPrefix(k, "4 unicast") && slices.Contains(devs, "kx") {
				inKernel[routeKeyOf(l)] = true
			}
		}
		saved := withdrawnInState(t, state)
		for _, r := range kxRoutes {
			if !inKernel[r] && !slices.Contains(saved, r) {
				t.Fatalf("round %d (%s, SIGKILL after %v): route %s through kx is neither in the kernel nor in the state file (%v)",
					i, action, delay, r, saved)
			}
		}

		inState := 0
		for _, r := range kxRoutes {
			if slices.Contains(saved, r) {
				inState++
			}
		}
		t.Logf("round %d: killed with %d of kx's %d routes in the kernel, %d in the state file", i, len(inKernel), len(kxRoutes), inState)

		d = tp.srv.start(t, args...)
		var down []string
		if !up {
			down = []string{"kx"}
		}
		settle(t, eventTimeout, fmt.Sprintf("round %d: routes match the carrier after the restart", i), func() error {
			return routesMatch(tp.srv, orig, down...)
		})
		if err := checkPins(t, tp.srv, pins, "kx", "ky"); err != nil {
			t.Fatalf("round %d: pins after the restart: %v", i, err)
		}
		if up && len(withdrawnInState(t, state)) != 0 {
			t.Fatalf("round %d: kx is up and restored, but the state file holds %v", i, withdrawnInState(t, state))
		}
		if strings.Contains(d.stderr.String(), "level=ERROR") {
			t.Fatalf("round %d: the restarted daemon logged an error:\n%s", i, d.stderr.String())
		}
	}
}
