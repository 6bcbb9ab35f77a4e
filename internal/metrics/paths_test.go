package metrics

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/linkbeat/linkbeat/internal/pathmon"
	"github.com/linkbeat/linkbeat/internal/registry"
)

func TestPathMetricsPerSlaveAndTarget(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	mono := 1000 * time.Second
	links := []registry.Link{
		{Index: 10, Name: "bond0", Bond: &registry.Bond{Mode: "active-backup"}},
		{Index: 2, Name: "eth0", MasterIndex: 10, BondSlave: &registry.BondSlave{}},
		{Index: 3, Name: "eth1", MasterIndex: 10, BondSlave: &registry.BondSlave{}},
		{Index: 4, Name: "eth2"}, // released from the bond: left out
	}
	replies := []pathmon.Reply{
		{Ifindex: 2, Target: netip.MustParseAddr("192.0.2.1"), Kind: pathmon.KindARP, Replies: 7, LastNs: uint64(998 * time.Second)},
		{Ifindex: 2, Target: netip.MustParseAddr("2001:db8::1"), Kind: pathmon.KindNS, Replies: 5, LastNs: uint64(999 * time.Second)},
		{Ifindex: 3, Target: netip.MustParseAddr("2001:db8::1"), Kind: pathmon.KindNS}, // never answered: no last reply
		{Ifindex: 4, Target: netip.MustParseAddr("2001:db8::1"), Kind: pathmon.KindNS, Replies: 1},
		{Ifindex: 9, Target: netip.MustParseAddr("2001:db8::1"), Kind: pathmon.KindNS, Replies: 1}, // gone
	}
	got := pathMetrics(newPathDescs(), replies, links, now, mono)
	want := `
# HELP linkbeat_path_last_reply_timestamp_seconds Unix time of the latest answer to linkbeat's path probes through a bond slave, by target and probe.
# TYPE linkbeat_path_last_reply_timestamp_seconds gauge
linkbeat_path_last_reply_timestamp_seconds{bond="bond0",probe="arp",slave="eth0",target="192.0.2.1"} 1.699999998e+09
linkbeat_path_last_reply_timestamp_seconds{bond="bond0",probe="ns",slave="eth0",target="2001:db8::1"} 1.699999999e+09
# HELP linkbeat_path_replies_total Answers to linkbeat's path probes through a bond slave, by target and probe (arp: ARP replies, ns: neighbour advertisements), counted on the slave's TC ingress.
# TYPE linkbeat_path_replies_total counter
linkbeat_path_replies_total{bond="bond0",probe="arp",slave="eth0",target="192.0.2.1"} 7
linkbeat_path_replies_total{bond="bond0",probe="ns",slave="eth0",target="2001:db8::1"} 5
linkbeat_path_replies_total{bond="bond0",probe="ns",slave="eth1",target="2001:db8::1"} 0
`
	if err := testutil.CollectAndCompare(sliceCollector(got), strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
}
