package soak

import (
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/linkbeat/linkbeat/test/testkit"
)

// settle bounds how long the daemon may take to catch up with the last
// faults before the end state is compared: it is a deadline for
// convergence, not a measure of speed.
const settle = 20 * time.Second

// checkEndState waits for the faults to settle, then requires that each
// link's carrier, as the daemon exports it, and its route match the link's
// final state in the kernel: a link with carrier has its route in force
// and nothing withdrawn, a link without has its route withdrawn. A stuck
// event loop, which keeps goroutines, fds and RSS steady, fails here.
func (s *soak) checkEndState(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(settle)
	for {
		final, err := s.endStateDiff(t)
		if err == nil {
			t.Logf("end state (%s): every link's carrier metric and route match it", strings.Join(final, ", "))
			return
		}
		if time.Now().After(deadline) {
			out, _ := exec.Command("ip", "-n", s.srv, "route", "show", "table", "main").CombinedOutput()
			t.Fatalf("end state still wrong %s after the last fault:\n%v\nroutes of %s:\n%s", settle, err, s.srv, out)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// endStateDiff lists every way the daemon's view differs from the
// kernel's links now (nil when it matches), and each link's carrier.
func (s *soak) endStateDiff(t *testing.T) (final []string, _ error) {
	t.Helper()
	metrics := testkit.ParseMetrics(s.scrape(t))
	routes, err := s.routes()
	if err != nil {
		return nil, err
	}
	var errs []error
	for i := range links {
		dev := name(i)
		up, err := testkit.Carrier(s.srv, dev)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		final = append(final, dev+" "+map[bool]string{true: "up", false: "down"}[up])
		want := map[bool]string{true: "1", false: "0"}[up]
		if got, ok := metrics[`linkbeat_interface_carrier{interface="`+dev+`"}`]; !ok || got != want {
			errs = append(errs, fmt.Errorf("%s: carrier %v in the kernel, linkbeat_interface_carrier %q (exported: %v)", dev, up, got, ok))
		}
		dst := fmt.Sprintf("203.0.%d.0/24", 110+i)
		r, present := routes[dst]
		switch {
		case up && !present:
			errs = append(errs, fmt.Errorf("%s has carrier but its route %s is missing", dev, dst))
		case up && (r.Dev != dev || r.Gateway != fmt.Sprintf("10.%d.0.2", 60+i) || slices.Contains(r.Flags, "linkdown")):
			errs = append(errs, fmt.Errorf("%s has carrier but its route is %+v", dev, r))
		case !up && present:
			errs = append(errs, fmt.Errorf("%s has no carrier but its route %s is in force: %+v", dev, dst, r))
		}
		if up {
			if n := metrics[`linkbeat_routes_withdrawn{interface="`+dev+`"}`]; n != "" && n != "0" {
				errs = append(errs, fmt.Errorf("%s has carrier but linkbeat_routes_withdrawn is %s", dev, n))
			}
		}
	}
	return final, errors.Join(errs...)
}

type kernelRoute struct {
	Dst     string   `json:"dst"`
	Gateway string   `json:"gateway"`
	Dev     string   `json:"dev"`
	Flags   []string `json:"flags"`
}

// routes is the server's main table by destination.
func (s *soak) routes() (map[string]kernelRoute, error) {
	out, err := exec.Command("ip", "-n", s.srv, "-j", "route", "show", "table", "main").Output()
	if err != nil {
		return nil, fmt.Errorf("ip route show: %w", err)
	}
	var rs []kernelRoute
	if err := json.Unmarshal(out, &rs); err != nil {
		return nil, fmt.Errorf("ip -j route show: %w", err)
	}
	m := map[string]kernelRoute{}
	for _, r := range rs {
		m[r.Dst] = r
	}
	return m, nil
}
