package registry

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// linkMessage builds an RTM_NEWLINK payload as the kernel sends it.
func linkMessage(idx int32, flags uint32, attrs ...*nl.RtAttr) []byte {
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = idx
	msg.Flags = flags
	b := msg.Serialize()
	for _, a := range attrs {
		b = append(b, a.Serialize()...)
	}
	return b
}

func u32(v uint32) []byte { return nl.Uint32Attr(v) }

func TestParseMessageCarrierAndCounters(t *testing.T) {
	data := linkMessage(4, unix.IFF_UP|unix.IFF_BROADCAST,
		nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated("eth1")),
		nl.NewRtAttr(unix.IFLA_CARRIER, []byte{1}),
		nl.NewRtAttr(unix.IFLA_CARRIER_UP_COUNT, u32(5)),
		nl.NewRtAttr(unix.IFLA_CARRIER_DOWN_COUNT, u32(4)),
		nl.NewRtAttr(unix.IFLA_MASTER, u32(9)),
	)
	u, err := ParseMessage(unix.RTM_NEWLINK, data)
	if err != nil {
		t.Fatal(err)
	}
	l := u.Link
	if u.Deleted || l.Index != 4 || l.Name != "eth1" || !l.Carrier || !l.AdminUp || l.UpCount != 5 || l.DownCount != 4 || l.MasterIndex != 9 {
		t.Fatalf("parsed %+v", l)
	}
	// IFLA_CARRIER wins over the absent IFF_LOWER_UP flag: the link is
	// admin up with carrier, but the flag is not in this message.
	cs := l.CarrierState()
	if !cs.Carrier || cs.Ifname != "eth1" {
		t.Fatalf("carrier state %+v", cs)
	}
}

func TestParseMessageNoCarrier(t *testing.T) {
	data := linkMessage(2, unix.IFF_UP|unix.IFF_LOWER_UP,
		nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated("eth0")),
		nl.NewRtAttr(unix.IFLA_CARRIER, []byte{0}),
	)
	u, err := ParseMessage(unix.RTM_DELLINK, data)
	if err != nil {
		t.Fatal(err)
	}
	if !u.Deleted || u.Link.Carrier {
		t.Fatalf("parsed %+v", u)
	}
}

func TestParseMessageBond(t *testing.T) {
	info := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
	info.AddRtAttr(nl.IFLA_INFO_KIND, nl.ZeroTerminated("bond"))
	data := info.AddRtAttr(nl.IFLA_INFO_DATA, nil)
	data.AddRtAttr(nl.IFLA_BOND_MODE, []byte{1}) // active-backup
	data.AddRtAttr(nl.IFLA_BOND_MIIMON, u32(100))
	data.AddRtAttr(nl.IFLA_BOND_ACTIVE_SLAVE, u32(3))
	msg := linkMessage(5, unix.IFF_UP|unix.IFF_MASTER,
		nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated("bond0")), info)
	u, err := ParseMessage(unix.RTM_NEWLINK, msg)
	if err != nil {
		t.Fatal(err)
	}
	b := u.Link.Bond
	if u.Link.Kind != "bond" || b == nil || b.Mode != "active-backup" || b.Miimon != 100 || b.ActiveSlave != 3 {
		t.Fatalf("bond parsed as kind %q %+v", u.Link.Kind, b)
	}
}

func TestParseMessageRejectsGarbage(t *testing.T) {
	if _, err := ParseMessage(unix.RTM_NEWROUTE, make([]byte, 32)); err == nil {
		t.Fatal("route message accepted")
	}
	if _, err := ParseMessage(unix.RTM_NEWLINK, []byte{1, 2}); err == nil {
		t.Fatal("short message accepted")
	}
}

func TestParseBridgeMessages(t *testing.T) {
	protinfo := nl.NewRtAttr(unix.IFLA_PROTINFO|unix.NLA_F_NESTED, nil)
	protinfo.AddRtAttr(unix.IFLA_BRPORT_STATE, []byte{4})
	msg := nl.NewIfInfomsg(unix.AF_BRIDGE)
	msg.Index = 7
	data := append(msg.Serialize(), nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated("eth3")).Serialize()...)
	data = append(data, protinfo.Serialize()...)

	u, err := ParseMessage(unix.RTM_NEWLINK, data)
	if err != nil {
		t.Fatal(err)
	}
	if !u.Bridge || u.Deleted || u.Link.Index != 7 || u.Link.BridgePort == nil || u.Link.BridgePort.State != "blocking" {
		t.Fatalf("parsed %+v (port %+v)", u, u.Link.BridgePort)
	}
	// The port leaving its bridge is not the link going away.
	u, err = ParseMessage(unix.RTM_DELLINK, msg.Serialize())
	if err != nil || !u.Bridge || u.Deleted || u.Link.BridgePort != nil {
		t.Fatalf("parsed %+v, %v", u, err)
	}

	tab := NewTable()
	tab.Apply(Update{Link: Link{Index: 7, Name: "eth3", Carrier: true, UpCount: 3}})
	ch := tab.Apply(Update{Bridge: true, Link: Link{Index: 7, BridgePort: &BridgePort{State: "forwarding"}}})
	l, _ := tab.Get(7)
	if len(ch) != 1 || ch[0].Kind != Updated || l.BridgePort.State != "forwarding" || !l.Carrier || l.UpCount != 3 || l.Name != "eth3" {
		t.Fatalf("changes %+v, link %+v", ch, l)
	}
	if ch := tab.Apply(Update{Bridge: true, Link: Link{Index: 7, BridgePort: &BridgePort{State: "forwarding"}}}); len(ch) != 0 {
		t.Fatalf("an unchanged port state is a change: %+v", ch)
	}
	if ch := tab.Apply(Update{Bridge: true, Link: Link{Index: 99}}); len(ch) != 0 {
		t.Fatalf("a port of an unknown link is a change: %+v", ch)
	}
}

func TestParseBridgeSlaveDataInLinkMessage(t *testing.T) {
	li := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
	li.AddRtAttr(unix.IFLA_INFO_SLAVE_KIND, nl.ZeroTerminated("bridge"))
	sd := li.AddRtAttr(unix.IFLA_INFO_SLAVE_DATA, nil)
	sd.AddRtAttr(unix.IFLA_BRPORT_STATE, []byte{3})
	data := linkMessage(5, unix.IFF_UP, nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated("veth0")), li)
	u, err := ParseMessage(unix.RTM_NEWLINK, data)
	if err != nil {
		t.Fatal(err)
	}
	if u.Bridge || u.Link.BridgePort == nil || u.Link.BridgePort.State != "forwarding" {
		t.Fatalf("parsed %+v", u.Link)
	}
}

func TestParseBondDataTheLibraryGetsWrong(t *testing.T) {
	li := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
	li.AddRtAttr(nl.IFLA_INFO_KIND, nl.ZeroTerminated("bond"))
	data := li.AddRtAttr(nl.IFLA_INFO_DATA, nil)
	data.AddRtAttr(nl.IFLA_BOND_MODE, []byte{4})
	data.AddRtAttr(nl.IFLA_BOND_ARP_VALIDATE, u32(3))
	ad := data.AddRtAttr(nl.IFLA_BOND_AD_INFO, nil)
	ad.AddRtAttr(nl.IFLA_BOND_AD_INFO_AGGREGATOR, nl.Uint16Attr(2))
	ad.AddRtAttr(nl.IFLA_BOND_AD_INFO_PARTNER_MAC, []byte{2, 0, 0, 0, 0, 9})
	ns := data.AddRtAttr(unix.IFLA_BOND_NS_IP6_TARGET, nil)
	ns.AddRtAttr(0, netip.MustParseAddr("2001:db8::1").AsSlice())
	ns.AddRtAttr(1, netip.MustParseAddr("fe80::2").AsSlice())
	u, err := ParseMessage(unix.RTM_NEWLINK, linkMessage(6, unix.IFF_UP, nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated("bond0")), li))
	if err != nil {
		t.Fatal(err)
	}
	b := u.Link.Bond
	if b == nil || b.Mode != "802.3ad" || b.ArpValidate != "all" || b.AdAggregator != 2 || b.AdPartnerMac != "02:00:00:00:00:09" ||
		strings.Join(b.NsIP6Targets, ",") != "2001:db8::1,fe80::2" {
		t.Fatalf("bond %+v", b)
	}
}

// The kernel's names for a slave's state are lower case, as in sysfs; the
// netlink library's are upper case.
func TestParseBondSlaveStateNames(t *testing.T) {
	li := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
	li.AddRtAttr(nl.IFLA_INFO_SLAVE_KIND, nl.ZeroTerminated("bond"))
	sd := li.AddRtAttr(nl.IFLA_INFO_SLAVE_DATA, nil)
	sd.AddRtAttr(nl.IFLA_BOND_SLAVE_STATE, []byte{1})
	sd.AddRtAttr(nl.IFLA_BOND_SLAVE_MII_STATUS, []byte{0})
	u, err := ParseMessage(unix.RTM_NEWLINK, linkMessage(3, unix.IFF_UP, nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated("eth1")), li))
	if err != nil {
		t.Fatal(err)
	}
	s := u.Link.BondSlave
	if s == nil || s.State != "backup" || s.MiiStatus != "up" || !s.LinkUp() {
		t.Fatalf("slave %+v", s)
	}
}

// TestParseMessageOperState: linkwatch's notice of a carrier loss says
// operstate down (IF_OPER_DOWN 2) or lowerlayerdown (3); up (6) and
// unknown (0) are not down.
func TestParseMessageOperState(t *testing.T) {
	for _, c := range []struct {
		state byte
		down  bool
	}{{2, true}, {3, true}, {6, false}, {0, false}} {
		data := linkMessage(2, unix.IFF_UP,
			nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated("eth0")),
			nl.NewRtAttr(unix.IFLA_OPERSTATE, []byte{c.state}),
		)
		u, err := ParseMessage(unix.RTM_NEWLINK, data)
		if err != nil {
			t.Fatal(err)
		}
		if u.Link.OperDown != c.down {
			t.Errorf("operstate %d: OperDown %v, want %v", c.state, u.Link.OperDown, c.down)
		}
	}
}
