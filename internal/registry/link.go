// Package registry keeps linkbeat's live view of the network interfaces,
// from rtnetlink: ifindex and name, kind, carrier, master, and bond
// configuration. Parsing is kept apart from the socket so it is tested on
// fixtures.
package registry

import (
	"fmt"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/linkbeat/linkbeat/internal/carrier"
)

// Link is one interface as rtnetlink last described it.
type Link struct {
	Index       int
	Name        string
	Kind        string // "device" for a plain NIC, else the rtnetlink kind
	Loopback    bool
	AdminUp     bool
	Carrier     bool
	UpCount     uint32
	DownCount   uint32
	MasterIndex int
	Bond        *Bond      // set when Kind is "bond"
	BondSlave   *BondSlave // set when the master is a bond
}

// Bond is a bond master's configuration.
type Bond struct {
	Mode        string
	Miimon      int
	UpDelay     int
	DownDelay   int
	ArpInterval int
	ActiveSlave int // ifindex, 0 when none
	Primary     int // ifindex, 0 when none
}

// BondSlave is a port's state in its bond's own view.
type BondSlave struct {
	State     string // "active" or "backup"
	MiiStatus string // "up", "going_down", "down", "going_back"
}

// CarrierState is the link's carrier as the carrier tracker wants it.
func (l Link) CarrierState() carrier.LinkState {
	return carrier.LinkState{Ifindex: l.Index, Ifname: l.Name, Carrier: l.Carrier, UpCount: l.UpCount, DownCount: l.DownCount}
}

// Update is one parsed rtnetlink link message.
type Update struct {
	Deleted bool
	Link    Link
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
	nlLink, err := netlink.LinkDeserialize(nil, data)
	if err != nil {
		return Update{}, fmt.Errorf("parse link message: %w", err)
	}
	attrs, err := nl.ParseRouteAttr(data[unix.SizeofIfInfomsg:])
	if err != nil {
		return Update{}, fmt.Errorf("parse link attributes: %w", err)
	}
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
			Mode: b.Mode.String(), Miimon: b.Miimon, UpDelay: b.UpDelay, DownDelay: b.DownDelay,
			ArpInterval: b.ArpInterval, ActiveSlave: max(b.ActiveSlave, 0), Primary: max(b.Primary, 0),
		}
	}
	if s, ok := a.Slave.(*netlink.BondSlave); ok {
		l.BondSlave = &BondSlave{State: s.State.String(), MiiStatus: s.MiiStatus.String()}
	}
	return Update{Deleted: msgType == unix.RTM_DELLINK, Link: l}, nil
}

func native32(b []byte) uint32 {
	if len(b) < 4 {
		return 0
	}
	return nl.NativeEndian().Uint32(b)
}
