//go:build vmguest

package guest

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

// What linkbeat reports for the bonding modes it does not
// switch (802.3ad, balance-alb) and for STP bridge ports, compared with the
// kernel's own view read from sysfs at the same moment. The report checked
// is `linkbeat status --json` (bonds[].slaves[], links[]); `linkbeat links
// --json` (bond_slave, bridge_port), the registry's view, is checked too.

// lbLink is the part of a `linkbeat links --json` entry these tests read.
type lbLink struct {
	Name   string `json:"name"`
	Kind   string `json:"kind"`
	Master string `json:"master"`
	Bond   *struct {
		Mode         string `json:"mode"`
		AdAggregator int    `json:"ad_aggregator"`
	} `json:"bond"`
	BondSlave  map[string]any `json:"bond_slave"`
	BridgePort *struct {
		State string `json:"stp_state"`
	} `json:"bridge_port"`
}

func linksJSON(t *testing.T) map[string]lbLink {
	t.Helper()
	out := runLinkbeat(t, "links", "--json")
	var ls []lbLink
	if err := json.Unmarshal(out, &ls); err != nil {
		t.Fatalf("links --json: %v\n%s", err, out)
	}
	m := map[string]lbLink{}
	for _, l := range ls {
		m[l.Name] = l
	}
	return m
}

// statusReport is the part of `linkbeat status --json` these tests read;
// slaves and links stay generic so a missing field is told from a zero.
type statusReport struct {
	Links []map[string]any `json:"links"`
	Bonds []struct {
		Name    string           `json:"name"`
		Mode    string           `json:"mode"`
		Slaves  []map[string]any `json:"slaves"`
		Options map[string]any   `json:"options"`
	} `json:"bonds"`
	raw []byte
}

func statusJSON(t *testing.T, args ...string) statusReport {
	t.Helper()
	out := runLinkbeat(t, append([]string{"status", "--json"}, args...)...)
	var r statusReport
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	r.raw = out
	return r
}

// slaves returns bond's slaves in the report by name; ok is false if the
// bond is not listed.
func (r statusReport) slaves(bond string) (map[string]map[string]any, map[string]any, bool) {
	for _, b := range r.Bonds {
		if b.Name == bond {
			m := map[string]map[string]any{}
			for _, s := range b.Slaves {
				name, _ := s["name"].(string)
				m[name] = s
			}
			return m, b.Options, true
		}
	}
	return nil, nil, false
}

// field renders a JSON value as sysfs would print it ("" when missing).
func field(m map[string]any, key string) string {
	switch v := m[key].(type) {
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case string:
		return strings.ToLower(v) // sysfs spells states in lower case
	case nil:
		return ""
	default:
		return fmt.Sprint(v)
	}
}

// stableSnapshot reads the kernel, then linkbeat, then the kernel again,
// until both kernel reads agree (state machines keep running meanwhile),
// and returns the kernel's view and linkbeat's.
func stableSnapshot(t *testing.T, kernel func() map[string]string, lb func() map[string]string) (map[string]string, map[string]string) {
	t.Helper()
	for i := 0; ; i++ {
		k1 := kernel()
		l := lb()
		k2 := kernel()
		if maps.Equal(k1, k2) {
			return k1, l
		}
		if i == 20 {
			t.Fatalf("the kernel's view kept changing while linkbeat was read: %v then %v", k1, k2)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// compareViews reports every key where linkbeat (source src) differs from
// the kernel.
func compareViews(t *testing.T, src string, k, l map[string]string) {
	t.Helper()
	for _, key := range slices.Sorted(maps.Keys(k)) {
		switch {
		case l[key] == "":
			t.Errorf("%s: no %s (the kernel has %s)", src, key, k[key])
		case l[key] != k[key]:
			t.Errorf("%s: %s is %s, the kernel's is %s", src, key, l[key], k[key])
		}
	}
}

// TestBondStatusModes: 802.3ad, balance-alb and an STP bridge.
func TestBondStatusModes(t *testing.T) {
	requireLinkbeat(t)

	// 802.3ad: each slave's aggregator id and LACP actor and partner
	// port state, as the kernel has them. Nobody answers LACP on the
	// hub, so each slave is an individual port in an aggregator of its
	// own (eth0 and eth1 also differ in speed; two 1 Gb/s slaves, eth1
	// and eth3, were seen apart as well): the values must be each
	// slave's own, not the bond's.
	t.Run("802.3ad", func(t *testing.T) {
		guardNICs(t)
		b := newBond(t, bondConfig{Mode: "802.3ad", Miimon: 100, LacpRate: "fast", Slaves: []string{"eth0", "eth1"}})
		waitFor(t, 30*time.Second, "aggregator ids on both slaves", func() bool {
			for _, s := range b.Slaves {
				if a := SlaveAttr(s, "ad_aggregator_id"); a == "" || a == "0" {
					return false
				}
			}
			return true
		})
		time.Sleep(1500 * time.Millisecond) // a few fast LACPDU periods
		fields := []string{"ad_aggregator_id", "ad_actor_oper_port_state", "ad_partner_oper_port_state", "state", "mii_status"}
		kernel := func() map[string]string {
			m := map[string]string{"bond ad_aggregator": b.Opt("ad_aggregator")}
			for _, s := range b.Slaves {
				for _, f := range fields {
					m[s+" "+f] = SlaveAttr(s, f)
				}
			}
			return m
		}
		fromStatus := func() map[string]string {
			m := map[string]string{}
			slaves, opts, ok := statusJSON(t).slaves(b.Name)
			if !ok {
				return m
			}
			m["bond ad_aggregator"] = field(opts, "ad_aggregator")
			for _, s := range b.Slaves {
				for _, f := range fields {
					m[s+" "+f] = field(slaves[s], f)
				}
			}
			return m
		}
		fromLinks := func() map[string]string {
			ls := linksJSON(t)
			m := map[string]string{}
			if bl := ls[b.Name]; bl.Bond != nil && bl.Bond.AdAggregator != 0 {
				m["bond ad_aggregator"] = strconv.Itoa(bl.Bond.AdAggregator)
			}
			for _, s := range b.Slaves {
				for _, f := range fields {
					m[s+" "+f] = field(ls[s].BondSlave, f)
				}
			}
			return m
		}
		k, l := stableSnapshot(t, kernel, fromStatus)
		t.Logf("kernel:        %v", k)
		t.Logf("status --json: %v", l)
		// The precondition of a per-slave check: in one aggregator, a
		// slave's own values and the bond's could not be told apart.
		if k["eth0 ad_aggregator_id"] == k["eth1 ad_aggregator_id"] {
			t.Fatalf("testbed: both slaves are in aggregator %s; without a LACP partner each should have its own", k["eth0 ad_aggregator_id"])
		}
		compareViews(t, "status --json", k, l)
		k, l = stableSnapshot(t, kernel, fromLinks)
		t.Logf("links --json:  %v", l)
		compareViews(t, "links --json", k, l)
	})

	// balance-alb: each slave's share of the traffic, from linkbeat's BPF
	// counters (fresh pins). The stream to the peer goes to one
	// destination, so tlb's transmit balancing puts it on one slave: that
	// slave must have nearly all of the tx share, and the shares must add
	// up to 1.
	t.Run("balance-alb", func(t *testing.T) {
		n := newBondNet(t, bondConfig{Mode: "balance-alb", Miimon: 100})
		// Fresh pins: the shares must come from this stream, not from
		// what earlier tests in this boot counted.
		pinDir := "/sys/fs/bpf/linkbeat-alb-test"
		os.RemoveAll(pinDir)
		lb := startBondRun(t, "--bpffs-dir", pinDir)
		t.Cleanup(func() {
			lb.Stop()
			if out, err := exec.Command(linkbeatBin, "cleanup", "--bpffs-dir", pinDir).CombinedOutput(); err != nil {
				t.Logf("linkbeat cleanup --bpffs-dir %s: %v\n%s", pinDir, err, out)
			}
			os.RemoveAll(pinDir)
		})
		tx0 := map[string]uint64{}
		for _, s := range n.Bond.Slaves {
			tx0[s] = txPackets(s)
		}
		st := n.startStream(t, streamRate)
		time.Sleep(1500 * time.Millisecond)
		st.Stop()
		busiest, most, total := "", uint64(0), uint64(0)
		for _, s := range n.Bond.Slaves {
			d := txPackets(s) - tx0[s]
			t.Logf("%s sent %d packets (sysfs)", s, d)
			total += d
			if d > most {
				busiest, most = s, d
			}
		}
		rep := statusJSON(t, "--state-dir", lb.StateDir, "--bpffs-dir", pinDir)
		slaves, _, ok := rep.slaves(n.Bond.Name)
		if !ok {
			t.Fatalf("status --json lists no bond %s:\n%s", n.Bond.Name, rep.raw)
		}
		shares := map[string]float64{}
		for _, s := range n.Bond.Slaves {
			t.Logf("status --json: %s %v", s, slaves[s])
			v, ok := slaves[s]["tx_share"].(float64)
			if !ok {
				t.Errorf("status --json: slave %s of %s has no tx_share (its part of the bond's transmitted bytes): %v", s, n.Bond.Name, slaves[s])
				continue
			}
			if v < 0 || v > 1 {
				t.Errorf("status --json: %s tx_share %v is not a fraction", s, v)
			}
			shares[s] = v
			if r, ok := slaves[s]["rx_share"].(float64); ok && (r < 0 || r > 1) {
				t.Errorf("status --json: %s rx_share %v is not a fraction", s, r)
			}
		}
		if len(shares) != len(n.Bond.Slaves) {
			return
		}
		sum := 0.0
		for _, v := range shares {
			sum += v
		}
		if math.Abs(sum-1) > 0.001 {
			t.Errorf("the slaves' tx shares add up to %v, want 1", sum)
		}
		if shares[busiest] < 0.9 {
			t.Errorf("%s carried the stream (%d packets, %d%% of the bond's) but its tx_share is %v",
				busiest, most, 100*most/max(total, 1), shares[busiest])
		}
	})

	// An STP bridge over eth0 and eth1. Both are on the same QEMU hub, a
	// loop: STP must block one port and forward the other. The state of
	// each port in `status --json` (and `links --json`) must be the
	// kernel's right after the bridge comes up, once STP has converged
	// (forwarding and blocking), and after the forwarding port's cable is
	// cut (disabled).
	t.Run("bridge-stp", func(t *testing.T) {
		guardNICs(t)
		ports := []string{"eth0", "eth1"}
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}
		if err := netlink.LinkAdd(br); err != nil {
			t.Fatalf("create br0: %v", err)
		}
		t.Cleanup(func() {
			if l, err := netlink.LinkByName("br0"); err == nil {
				netlink.LinkDel(l)
			}
		})
		writeSysctl(t, "net/ipv6/conf/br0/disable_ipv6", "1")
		// Times in 1/100 s: the shortest the kernel allows with STP on.
		for _, o := range [][2]string{{"forward_delay", "200"}, {"hello_time", "100"}, {"max_age", "600"}, {"stp_state", "1"}} {
			p := "/sys/class/net/br0/bridge/" + o[0]
			if err := os.WriteFile(p, []byte(o[1]), 0o644); err != nil {
				t.Fatalf("%s = %s: %v", p, o[1], err)
			}
		}
		brl := mustLink(t, "br0")
		for _, p := range ports {
			setAdmin(t, p, false)
			if err := netlink.LinkSetMaster(mustLink(t, p), brl); err != nil {
				t.Fatalf("add %s to br0: %v", p, err)
			}
			setAdmin(t, p, true)
		}
		setAdmin(t, "br0", true)

		kernel := func() map[string]string {
			m := map[string]string{}
			for _, p := range ports {
				m[p] = bridgeStateName(readTrim("/sys/class/net/" + p + "/brport/state"))
			}
			return m
		}
		fromLinks := func() map[string]string {
			ls := linksJSON(t)
			m := map[string]string{}
			for _, p := range ports {
				if bp := ls[p].BridgePort; bp != nil {
					m[p] = bp.State
				}
			}
			return m
		}
		// status --json: links[].stp_state, or links[].bridge_port.stp_state.
		fromStatus := func() map[string]string {
			m := map[string]string{}
			for _, l := range statusJSON(t).Links {
				name, _ := l["name"].(string)
				if !slices.Contains(ports, name) {
					continue
				}
				if v := field(l, "stp_state"); v != "" {
					m[name] = v
				} else if bp, ok := l["bridge_port"].(map[string]any); ok {
					m[name] = field(bp, "stp_state")
				}
			}
			return m
		}
		compare := func(when string) map[string]string {
			t.Helper()
			var k map[string]string
			for _, src := range []struct {
				name string
				read func() map[string]string
			}{{"status --json", fromStatus}, {"links --json", fromLinks}} {
				var l map[string]string
				k, l = stableSnapshot(t, kernel, src.read)
				t.Logf("%s: kernel %v, %s %v", when, k, src.name, l)
				compareViews(t, src.name+" ("+when+") stp_state of", k, l)
			}
			return k
		}
		compare("just up")

		var fwd string
		waitFor(t, 30*time.Second, "STP to forward one port and block the other", func() bool {
			k := kernel()
			fwd = ""
			for _, p := range ports {
				if k[p] == "forwarding" {
					fwd = p
				}
			}
			return fwd != "" && slices.Contains(slices.Collect(maps.Values(k)), "blocking")
		})
		compare("converged")

		setLinks(t, false, netdevOf(fwd))
		waitFor(t, 30*time.Second, fwd+" disabled", func() bool { return kernel()[fwd] == "disabled" })
		k := compare(fwd + " cut")
		if k[fwd] != "disabled" {
			t.Errorf("kernel state of the cut port %s is %s", fwd, k[fwd])
		}
		setLinks(t, true, netdevOf(fwd))
	})
}

// bridgeStateName turns /sys/class/net/<port>/brport/state (BR_STATE_*)
// into its name.
func bridgeStateName(v string) string {
	names := []string{"disabled", "listening", "learning", "forwarding", "blocking"}
	if n, err := strconv.Atoi(v); err == nil && n >= 0 && n < len(names) {
		return names[n]
	}
	return fmt.Sprintf("state %q", v)
}
