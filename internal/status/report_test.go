package status

import (
	"bytes"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/linkbeat/linkbeat/internal/bond"
	"github.com/linkbeat/linkbeat/internal/carrier"
	"github.com/linkbeat/linkbeat/internal/fastpath"
	"github.com/linkbeat/linkbeat/internal/pathmon"
	"github.com/linkbeat/linkbeat/internal/registry"
	"github.com/linkbeat/linkbeat/internal/routes"
	"github.com/linkbeat/linkbeat/internal/traffic"
)

var (
	now  = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	mono = 1000 * time.Second
)

func fixture() Inputs {
	return Inputs{
		Links: []registry.Link{
			{Index: 1, Name: "lo", Loopback: true, Carrier: true},
			{Index: 2, Name: "eth0", Kind: "device", Carrier: false, UpCount: 1, DownCount: 2, MasterIndex: 10,
				BondSlave: &registry.BondSlave{State: "backup", MiiStatus: "down"}},
			{Index: 3, Name: "eth1", Kind: "device", Carrier: true, UpCount: 3, DownCount: 2, MasterIndex: 10,
				BondSlave: &registry.BondSlave{State: "active", MiiStatus: "up"}},
			{Index: 4, Name: "eth2", Kind: "device", Carrier: true, UpCount: 5, DownCount: 4},
			{Index: 5, Name: "eth3", Kind: "device", Carrier: true, UpCount: 1},
			{Index: 10, Name: "bond0", Kind: "bond", Carrier: true, Bond: &registry.Bond{Mode: "active-backup", ActiveSlave: 3}},
		},
		Counters: map[int]traffic.Counters{
			2: {RxPackets: 5, RxLastNS: uint64(990 * time.Second)},
			3: {RxPackets: 9, TxPackets: 4, RxLastNS: uint64(999 * time.Second)},
			4: {RxPackets: 1},
		},
		LinkStates: map[int]traffic.LinkState{
			// Seen going down 100s ago, via fentry; the device agrees.
			2: {Carrier: false, ChangedNS: uint64(900 * time.Second), UpCount: 1, DownCount: 2, Source: uint8(carrier.SourceFentry)},
			// First sight only, nothing changed since.
			3: {Carrier: true, SeenNS: uint64(800 * time.Second), UpCount: 3, DownCount: 2},
			// Recorded at 4/4 down, but the device is at 5/4 up now.
			4: {Carrier: false, ChangedNS: uint64(500 * time.Second), UpCount: 4, DownCount: 4, Source: uint8(carrier.SourceNetlink)},
		},
		Bonds: bond.State{Last: map[string]bond.Failover{"bond0": {Bond: "bond0", From: "eth0", To: "eth1", Reason: bond.ReasonCarrier,
			By: "linkbeat", Duration: 420 * time.Microsecond, At: now.Add(-100 * time.Second)}}},
		Withdrawn: []routes.WithdrawnLink{{Ifname: "eth0", Ifindex: 2, Routes: []string{"203.0.113.0/24 table 254 metric 0"}}},
		Sources:   &Sources{PID: 42, CarrierSource: "fentry", TCMechanism: "tcx", Tracepoints: true, BpffsDir: "/sys/fs/bpf/linkbeat"},
		Running:   false,
		BpffsDir:  "/sys/fs/bpf/linkbeat",
		Now:       now,
		Mono:      mono,
	}
}

func link(t *testing.T, r Report, name string) Link {
	t.Helper()
	for _, l := range r.Links {
		if l.Name == name {
			return l
		}
	}
	t.Fatalf("no link %s in %+v", name, r.Links)
	return Link{}
}

func TestBuildLastChange(t *testing.T) {
	r := Build(fixture())
	if len(r.Links) != 5 {
		t.Fatalf("%d links, want 5 (loopback left out)", len(r.Links))
	}
	eth0 := link(t, r, "eth0")
	if eth0.LastChange == nil || !eth0.LastChange.Equal(now.Add(-100*time.Second)) || eth0.LastChangeSource != "fentry" {
		t.Errorf("eth0 last change %v via %q, want %v via fentry", eth0.LastChange, eth0.LastChangeSource, now.Add(-100*time.Second))
	}
	if eth1 := link(t, r, "eth1"); eth1.LastChange != nil || !strings.Contains(eth1.LastChangeNote, "no change seen") {
		t.Errorf("eth1: %+v, want no last change and a note", eth1)
	}
	if eth2 := link(t, r, "eth2"); eth2.LastChange != nil || !strings.Contains(eth2.LastChangeNote, "changed since linkbeat last saw it") {
		t.Errorf("eth2: %+v, want the stale record called out", eth2)
	}
	if eth3 := link(t, r, "eth3"); eth3.Monitored || eth3.Counters != nil || eth3.LastChangeNote != "" {
		t.Errorf("eth3 has no pins: %+v", eth3)
	}
}

func TestBuildCountersAndLastSeen(t *testing.T) {
	r := Build(fixture())
	eth1 := link(t, r, "eth1")
	if !eth1.Monitored || eth1.Counters.RxPackets != 9 || eth1.Counters.TxPackets != 4 {
		t.Errorf("eth1 counters %+v", eth1.Counters)
	}
	if eth1.RxLastSeen == nil || !eth1.RxLastSeen.Equal(now.Add(-time.Second)) {
		t.Errorf("eth1 rx last seen %v, want %v", eth1.RxLastSeen, now.Add(-time.Second))
	}
	if eth1.TxLastSeen != nil {
		t.Errorf("eth1 never sent, but tx last seen is %v", eth1.TxLastSeen)
	}
}

func TestBuildBondsAndDaemon(t *testing.T) {
	r := Build(fixture())
	if len(r.Bonds) != 1 {
		t.Fatalf("bonds %+v", r.Bonds)
	}
	b := r.Bonds[0]
	if b.Mode != "active-backup" || b.ActiveSlave != "eth1" || len(b.Slaves) != 2 {
		t.Fatalf("bond %+v", b)
	}
	if s := b.Slaves[0]; s.Name != "eth0" || s.State != "backup" || s.MiiStatus != "down" || s.Carrier || s.AggregatorID != nil {
		t.Errorf("slave eth0 %+v", s)
	}
	if f := b.LastFailover; f == nil || f.To != "eth1" || f.DurationNS != int64(420*time.Microsecond) {
		t.Errorf("last failover %+v", f)
	}
	if d := r.Daemon; d.Running || !d.Recorded || d.CarrierSource != "fentry" || d.TCMechanism != "tcx" || !d.Pinned {
		t.Errorf("daemon %+v", d)
	}
	var buf bytes.Buffer
	if err := WriteText(&buf, r, now); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"not running", "carrier fentry, tc tcx", "bond bond0: mode active-backup, active slave eth1",
		"last failover: eth0 -> eth1, reason carrier, by linkbeat", "took 420µs", "route 203.0.113.0/24"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("text output lacks %q:\n%s", want, buf.String())
		}
	}
}

func TestBuild8023adSlaves(t *testing.T) {
	in := fixture()
	in.Links[5].Bond.Mode = "802.3ad"
	in.Links[2].BondSlave.AggregatorID, in.Links[2].BondSlave.ActorState, in.Links[2].BondSlave.PartnerState = 2, 0x3d, 0x3f
	s := Build(in).Bonds[0].Slaves[1]
	if s.AggregatorID == nil || *s.AggregatorID != 2 || *s.ActorState != 0x3d || *s.PartnerState != 0x3f {
		t.Fatalf("802.3ad slave %+v", s)
	}
}

func TestBuildWithoutAnyDaemon(t *testing.T) {
	r := Build(Inputs{Links: fixture().Links, Now: now, Mono: mono, BpffsDir: "/x"})
	if r.Daemon.Recorded || r.Daemon.Pinned || len(r.Withdrawn) != 0 || r.Withdrawn == nil {
		t.Fatalf("report %+v", r.Daemon)
	}
	var buf bytes.Buffer
	if err := WriteText(&buf, r, now); err != nil || !strings.Contains(buf.String(), "no record of a run") {
		t.Fatalf("%v\n%s", err, buf.String())
	}
}

func TestSourcesRoundTrip(t *testing.T) {
	dir := t.TempDir()
	if s, err := ReadSources(dir); s != nil || err != nil {
		t.Fatalf("empty dir: %v %v", s, err)
	}
	want := Sources{PID: 7, Started: now, CarrierSource: "netlink", TCMechanism: "clsact", ReplacedMaps: map[string]string{"if_stats": "size"}}
	if err := WriteSources(dir, want); err != nil {
		t.Fatal(err)
	}
	got, err := ReadSources(dir)
	if err != nil || got.PID != 7 || !got.Started.Equal(now) || got.TCMechanism != "clsact" || got.ReplacedMaps["if_stats"] != "size" {
		t.Fatalf("read back %+v, %v", got, err)
	}
}

func TestBuildSlaveTrafficShare(t *testing.T) {
	in := fixture()
	in.Links[5].Bond.Mode = "balance-alb"
	in.Counters[2] = traffic.Counters{RxBytes: 100, TxBytes: 300}
	in.Counters[3] = traffic.Counters{RxBytes: 300, TxBytes: 100}
	b := Build(in).Bonds[0]
	s0, s1 := b.Slaves[0], b.Slaves[1]
	if s0.RxShare == nil || *s0.RxShare != 0.25 || *s0.TxShare != 0.75 || *s1.RxShare != 0.75 || *s1.TxShare != 0.25 {
		t.Fatalf("shares eth0 %v/%v eth1 %v/%v", s0.RxShare, s0.TxShare, s1.RxShare, s1.TxShare)
	}
	var buf bytes.Buffer
	if err := WriteText(&buf, Build(in), now); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "75.0%") || !strings.Contains(buf.String(), "mode balance-alb") {
		t.Fatalf("text output lacks the shares:\n%s", buf.String())
	}
}

func TestBuildBridgePortState(t *testing.T) {
	in := fixture()
	in.Links[3].BridgePort = &registry.BridgePort{State: "blocking"}
	r := Build(in)
	var got string
	for _, l := range r.Links {
		if l.Name == in.Links[3].Name {
			got = l.StpState
		}
	}
	if got != "blocking" {
		t.Fatalf("stp state %q", got)
	}
	var buf bytes.Buffer
	if err := WriteText(&buf, r, now); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "(stp blocking)") {
		t.Fatalf("text output lacks the port state:\n%s", buf.String())
	}
}

// TestBuildPathReplies: the pinned path counters land on their slave, per
// target, with the last reply as a wall time, and the text lists them.
func TestBuildPathReplies(t *testing.T) {
	in := fixture()
	in.Paths = []pathmon.Reply{
		{Ifindex: 2, Target: netip.MustParseAddr("2001:db8::1"), Kind: pathmon.KindNS},
		{Ifindex: 3, Target: netip.MustParseAddr("192.0.2.1"), Kind: pathmon.KindARP, Replies: 12, LastNs: uint64(998 * time.Second)},
		{Ifindex: 3, Target: netip.MustParseAddr("2001:db8::1"), Kind: pathmon.KindNS, Replies: 9, LastNs: uint64(999 * time.Second)},
		{Ifindex: 4, Target: netip.MustParseAddr("2001:db8::1"), Kind: pathmon.KindNS, Replies: 1}, // not a slave
	}
	r := Build(in)
	if len(r.Bonds) != 1 || len(r.Bonds[0].Slaves) != 2 {
		t.Fatalf("bonds %+v", r.Bonds)
	}
	eth0, eth1 := r.Bonds[0].Slaves[0], r.Bonds[0].Slaves[1]
	if len(eth0.Paths) != 1 || eth0.Paths[0].Replies != 0 || eth0.Paths[0].LastSeen != nil || eth0.Paths[0].Probe != "ns" {
		t.Errorf("eth0 paths %+v, want one NS target never answered", eth0.Paths)
	}
	if len(eth1.Paths) != 2 || eth1.Paths[1].Target != "2001:db8::1" || eth1.Paths[1].Replies != 9 ||
		eth1.Paths[1].LastSeen == nil || !eth1.Paths[1].LastSeen.Equal(now.Add(-time.Second)) {
		t.Errorf("eth1 paths %+v, want ARP and NS, NS last seen 1s ago", eth1.Paths)
	}
	var buf strings.Builder
	if err := WriteText(&buf, r, now); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"PATH", "eth1  2001:db8::1  ns     9", "eth0  2001:db8::1  ns     0", "(1s ago)"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, buf.String())
		}
	}
}

func TestBuildFastPath(t *testing.T) {
	in := fixture()
	in.FastPath = map[string]fastpath.BondStatus{"bond0": {Name: "bond0", Live: true}}
	in.FastRedirects = map[int]fastpath.Redirect{10: {DeadNs: uint64(999 * time.Second), ExpiresNs: uint64(1000*time.Second + 500*time.Millisecond),
		FirstNs: uint64(999*time.Second + 300*time.Microsecond), Dead: 2, To: 3}}
	in.Bonds.LastFast = map[string]bond.Failover{"bond0": {Bond: "bond0", From: "eth0", To: "eth1", By: "fastpath", Duration: 300 * time.Microsecond, At: now}}
	r := Build(in)
	fp := r.Bonds[0].FastPath
	if fp == nil || !fp.Live || fp.Pending == nil || fp.Last == nil {
		t.Fatalf("fast path %+v", fp)
	}
	if p := fp.Pending; p.From != "eth0" || p.To != "eth1" || p.FirstRedirectNS != int64(300*time.Microsecond) || !p.Since.Equal(now.Add(-time.Second)) {
		t.Errorf("pending %+v", p)
	}
	var buf bytes.Buffer
	if err := WriteText(&buf, r, now); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"fast path: PENDING: eth0's frames leave through eth1", "last fast failover: eth0 -> eth1"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, buf.String())
		}
	}
	// 802.3ad: the dead slave's flows are spread over the live ports the
	// bond transmits on.
	hash := fixture()
	hash.FastPath, hash.FastRedirects = in.FastPath, in.FastRedirects
	hash.Links[3].MasterIndex, hash.Links[3].BondSlave = 10, &registry.BondSlave{State: "active", MiiStatus: "up"}
	hash.Links[4].MasterIndex, hash.Links[4].BondSlave = 10, &registry.BondSlave{State: "backup", MiiStatus: "up"} // another aggregator
	hash.Links[5].Bond.Mode = "802.3ad"
	hr := Build(hash)
	if p := hr.Bonds[0].FastPath.Pending; p == nil || !slices.Equal(p.Spread, []string{"eth1", "eth2"}) {
		t.Errorf("802.3ad pending %+v, want spread over eth1 and eth2", p)
	}
	buf.Reset()
	if err := WriteText(&buf, hr, now); err != nil {
		t.Fatal(err)
	}
	if want := "fast path: PENDING: eth0's frames leave through eth1, eth2 (by flow hash)"; !strings.Contains(buf.String(), want) {
		t.Errorf("text lacks %q:\n%s", want, buf.String())
	}

	in.FastPath["bond0"] = fastpath.BondStatus{Name: "bond0", Why: "downdelay=200ms: ..."}
	in.FastRedirects = nil
	buf.Reset()
	if err := WriteText(&buf, Build(in), now); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "fast path: off: downdelay=200ms") {
		t.Errorf("text lacks why the fast path is off:\n%s", buf.String())
	}
}
