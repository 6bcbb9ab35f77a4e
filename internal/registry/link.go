// Package registry keeps linkbeat's live view of the network interfaces,
// from rtnetlink: ifindex and name, kind, carrier, master, and bond
// configuration. Parsing is kept apart from the socket so it is tested on
// fixtures.
package registry

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/linkbeat/linkbeat/internal/carrier"
)

// Link is one interface as rtnetlink last described it.
type Link struct {
	Index    int
	Name     string
	Kind     string // "device" for a plain NIC, else the rtnetlink kind
	Loopback bool
	AdminUp  bool
	Carrier  bool
	// OperDown is IFLA_OPERSTATE down or lowerlayerdown. Linkwatch sets it
	// for a carrier loss and its first notice with it comes after the
	// NETDEV_CHANGE notifiers (netdev_state_change), where Carrier may
	// come from the driver's call earlier.
	OperDown    bool
	UpCount     uint32
	DownCount   uint32
	MasterIndex int
	Bond        *Bond       // set when Kind is "bond"
	BondSlave   *BondSlave  // set when the master is a bond
	BridgePort  *BridgePort // set when the master is a bridge
}

// Bond is a bond master's configuration.
type Bond struct {
	Mode         string   `json:"mode"`
	Miimon       int      `json:"miimon"`
	UpDelay      int      `json:"updelay"`
	DownDelay    int      `json:"downdelay"`
	ArpInterval  int      `json:"arp_interval"`
	ArpIPTargets []string `json:"arp_ip_target"`
	ArpValidate  string   `json:"arp_validate"`
	// NsIP6Targets is ns_ip6_target (Linux 6.0+): the ARP monitor's IPv6
	// peers, probed by neighbour solicitation.
	NsIP6Targets    []string `json:"ns_ip6_target,omitempty"`
	ActiveSlave     int      `json:"-"` // ifindex, 0 when none
	Primary         int      `json:"-"` // ifindex, 0 when none
	PrimaryReselect string   `json:"primary_reselect"`
	FailOverMac     string   `json:"fail_over_mac"`
	// AdAggregator is 802.3ad's active aggregator, 0 when none.
	AdAggregator int    `json:"ad_aggregator,omitempty"`
	AdPartnerMac string `json:"ad_partner_mac,omitempty"`
}

// BondSlave is a port's state in its bond's own view.
type BondSlave struct {
	State            string `json:"state"`      // "active" or "backup"
	MiiStatus        string `json:"mii_status"` // "up", "going_down", "down", "going_back"
	LinkFailureCount uint32 `json:"link_failure_count"`
	PermHWAddr       string `json:"perm_hwaddr"`
	QueueID          uint16 `json:"queue_id"`
	// 802.3ad: the aggregator the port is in and the LACP port states
	// (bits: activity, timeout, aggregation, sync, collecting,
	// distributing, defaulted, expired).
	AggregatorID uint16 `json:"ad_aggregator_id,omitempty"`
	ActorState   uint8  `json:"ad_actor_oper_port_state,omitempty"`
	PartnerState uint16 `json:"ad_partner_oper_port_state,omitempty"`
}

// BridgePort is a bridge port's STP state.
type BridgePort struct {
	State string `json:"stp_state"` // disabled, listening, learning, forwarding, blocking
}

// bridgeStates are BR_STATE_* in order.
var bridgeStates = []string{"disabled", "listening", "learning", "forwarding", "blocking"}

func bridgeState(v byte) string {
	if int(v) < len(bridgeStates) {
		return bridgeStates[v]
	}
	return fmt.Sprintf("state%d", v)
}

// LinkUp reports whether the bond counts the port as up (BOND_LINK_UP).
func (s *BondSlave) LinkUp() bool { return s != nil && s.MiiStatus == "up" }

// CarrierState is the link's carrier as the carrier tracker wants it.
func (l Link) CarrierState() carrier.LinkState {
	return carrier.LinkState{Ifindex: l.Index, Ifname: l.Name, Carrier: l.Carrier, UpCount: l.UpCount, DownCount: l.DownCount}
}

// Update is one parsed rtnetlink link message.
type Update struct {
	Deleted bool
	Link    Link
	// Bridge marks an AF_BRIDGE message: it carries only a bridge port's
	// state (Link.BridgePort, nil when the port left its bridge), never
	// the link's carrier or its deletion.
	Bridge bool
}

// ParseMessage parses an RTM_NEWLINK or RTM_DELLINK payload (the bytes after
// the netlink header).
func ParseMessage(msgType uint16, data []byte) (Update, error) {
	if msgType != unix.RTM_NEWLINK && msgType != unix.RTM_DELLINK {
		return Update{}, fmt.Errorf("not a link message: type %d", msgType)
	}
	if len(data) < unix.SizeofIfInfomsg {
		return Update{}, fmt.Errorf("short link message: %d bytes", len(data))
	}
	if data[0] == unix.AF_BRIDGE {
		return parseBridgeMessage(msgType, data)
	}
	nlLink, err := netlink.LinkDeserialize(nil, data)
	if err != nil {
		return Update{}, fmt.Errorf("parse link message: %w", err)
	}
	attrs, err := nl.ParseRouteAttr(data[unix.SizeofIfInfomsg:])
	if err != nil {
		return Update{}, fmt.Errorf("parse link attributes: %w", err)
	}
	info := linkInfo(attrs)
	a := nlLink.Attrs()
	l := Link{
		Index:       a.Index,
		Name:        a.Name,
		Kind:        nlLink.Type(),
		Loopback:    a.RawFlags&unix.IFF_LOOPBACK != 0,
		AdminUp:     a.RawFlags&unix.IFF_UP != 0,
		MasterIndex: a.MasterIndex,
	}
	// IFLA_CARRIER is the driver's carrier bit, even on a link that is
	// administratively down (IFF_LOWER_UP is not).
	l.Carrier = a.RawFlags&unix.IFF_LOWER_UP != 0
	l.OperDown = a.OperState == netlink.OperDown || a.OperState == netlink.OperLowerLayerDown
	for _, at := range attrs {
		switch at.Attr.Type {
		case unix.IFLA_CARRIER:
			if len(at.Value) >= 1 {
				l.Carrier = at.Value[0] != 0
			}
		case unix.IFLA_CARRIER_UP_COUNT:
			l.UpCount = native32(at.Value)
		case unix.IFLA_CARRIER_DOWN_COUNT:
			l.DownCount = native32(at.Value)
		}
	}
	if b, ok := nlLink.(*netlink.Bond); ok {
		l.Bond = &Bond{
			Mode: b.Mode.String(), Miimon: max(b.Miimon, 0), UpDelay: max(b.UpDelay, 0), DownDelay: max(b.DownDelay, 0),
			ArpInterval: max(b.ArpInterval, 0), ActiveSlave: max(b.ActiveSlave, 0), Primary: max(b.Primary, 0),
			ArpValidate: b.ArpValidate.String(), PrimaryReselect: b.PrimaryReselect.String(), FailOverMac: b.FailOverMac.String(),
			ArpIPTargets: []string{},
		}
		for _, ip := range b.ArpIpTargets {
			l.Bond.ArpIPTargets = append(l.Bond.ArpIPTargets, ip.String())
		}
		bondData(info, l.Bond)
	}
	if s, ok := a.Slave.(*netlink.BondSlave); ok {
		// The library's names are upper case; the kernel's (sysfs,
		// iproute2) are lower case.
		l.BondSlave = &BondSlave{State: strings.ToLower(s.State.String()), MiiStatus: strings.ToLower(s.MiiStatus.String()),
			LinkFailureCount: s.LinkFailureCount, PermHWAddr: s.PermHardwareAddr.String(), QueueID: s.QueueId,
			AggregatorID: s.AggregatorId, ActorState: s.AdActorOperPortState, PartnerState: s.AdPartnerOperPortState}
	}
	l.BridgePort = bridgeSlaveData(info)
	return Update{Deleted: msgType == unix.RTM_DELLINK, Link: l}, nil
}

// arpValidate names BOND_ARP_VALIDATE_* (the library's own table calls
// "all" "none" and knows no filter values).
var arpValidate = []string{"none", "active", "backup", "all", "filter", "filter_active", "filter_backup"}

// bondData reads what the netlink library gets wrong or skips from the
// bond's IFLA_INFO_DATA: arp_validate, ns_ip6_target and 802.3ad's
// aggregator info.
func bondData(info map[uint16][]byte, b *Bond) {
	data, err := nl.ParseRouteAttr(info[unix.IFLA_INFO_DATA])
	if err != nil {
		return
	}
	for _, d := range data {
		switch d.Attr.Type & nl.NLA_TYPE_MASK {
		case nl.IFLA_BOND_ARP_VALIDATE:
			if v := native32(d.Value); int(v) < len(arpValidate) {
				b.ArpValidate = arpValidate[v]
			} else {
				b.ArpValidate = fmt.Sprintf("arp_validate(%d)", v)
			}
		case unix.IFLA_BOND_NS_IP6_TARGET:
			// Nested, one 16-byte address per attribute (type: index).
			targets, err := nl.ParseRouteAttr(d.Value)
			if err != nil {
				continue
			}
			for _, t := range targets {
				if a, ok := netip.AddrFromSlice(t.Value); ok && a.Is6() {
					b.NsIP6Targets = append(b.NsIP6Targets, a.String())
				}
			}
		case nl.IFLA_BOND_AD_INFO:
			info, err := nl.ParseRouteAttr(d.Value)
			if err != nil {
				continue
			}
			for _, i := range info {
				switch i.Attr.Type & nl.NLA_TYPE_MASK {
				case nl.IFLA_BOND_AD_INFO_AGGREGATOR:
					if len(i.Value) >= 2 {
						b.AdAggregator = int(nl.NativeEndian().Uint16(i.Value))
					}
				case nl.IFLA_BOND_AD_INFO_PARTNER_MAC:
					if len(i.Value) >= 6 {
						b.AdPartnerMac = net.HardwareAddr(i.Value[:6]).String()
					}
				}
			}
		}
	}
}

// linkInfo returns IFLA_LINKINFO's parts (IFLA_INFO_KIND, IFLA_INFO_DATA,
// IFLA_INFO_SLAVE_KIND, IFLA_INFO_SLAVE_DATA...) by type, unparsed.
func linkInfo(attrs []syscall.NetlinkRouteAttr) map[uint16][]byte {
	for _, at := range attrs {
		if at.Attr.Type&nl.NLA_TYPE_MASK != unix.IFLA_LINKINFO {
			continue
		}
		info, err := nl.ParseRouteAttr(at.Value)
		if err != nil {
			return nil
		}
		out := make(map[uint16][]byte, len(info))
		for _, i := range info {
			out[i.Attr.Type&nl.NLA_TYPE_MASK] = i.Value
		}
		return out
	}
	return nil
}

// bridgeSlaveData reads the bridge slave data that AF_UNSPEC messages
// (and dumps) carry for a bridge port.
func bridgeSlaveData(info map[uint16][]byte) *BridgePort {
	if strings.TrimRight(string(info[unix.IFLA_INFO_SLAVE_KIND]), "\x00") != "bridge" {
		return nil
	}
	return brportState(info[unix.IFLA_INFO_SLAVE_DATA])
}

// brportState finds IFLA_BRPORT_STATE in a list of IFLA_BRPORT_* attributes.
func brportState(b []byte) *BridgePort {
	data, err := nl.ParseRouteAttr(b)
	if err != nil {
		return nil
	}
	for _, d := range data {
		if d.Attr.Type&nl.NLA_TYPE_MASK == unix.IFLA_BRPORT_STATE && len(d.Value) >= 1 {
			return &BridgePort{State: bridgeState(d.Value[0])}
		}
	}
	return nil
}

// parseBridgeMessage reads the bridge's own notice about a port
// (br_ifinfo_notify), sent on STP state changes. RTM_DELLINK here means
// the port left its bridge, not that the link is gone.
func parseBridgeMessage(msgType uint16, data []byte) (Update, error) {
	info := nl.DeserializeIfInfomsg(data)
	u := Update{Bridge: true, Link: Link{Index: int(info.Index)}}
	if msgType == unix.RTM_DELLINK {
		return u, nil
	}
	attrs, err := nl.ParseRouteAttr(data[unix.SizeofIfInfomsg:])
	if err != nil {
		return Update{}, fmt.Errorf("parse bridge port attributes: %w", err)
	}
	for _, at := range attrs {
		if at.Attr.Type&nl.NLA_TYPE_MASK == unix.IFLA_PROTINFO {
			u.Link.BridgePort = brportState(at.Value)
		}
	}
	return u, nil
}

func native32(b []byte) uint32 {
	if len(b) < 4 {
		return 0
	}
	return nl.NativeEndian().Uint32(b)
}
