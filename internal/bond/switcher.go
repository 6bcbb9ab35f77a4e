package bond

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/linkbeat/linkbeat/internal/registry"
	"github.com/linkbeat/linkbeat/internal/rtnl"
)

// Kernel is where the manager changes and reads the kernel's bonds. The
// real one speaks rtnetlink; tests use a fake.
type Kernel interface {
	// SetActive makes slave the bond's active slave, sending only
	// IFLA_BOND_ACTIVE_SLAVE: a full bond change is refused (EBUSY) once
	// the bond has slaves.
	SetActive(bond, slave int) error
	// Active reads the bond's active slave from the kernel (0: none).
	Active(bond int) (int, error)
	// Slaves reads the bond's slaves as the kernel has them now: the
	// bond's own view of each, which netlink notices may bring late.
	Slaves(bond int) ([]registry.Link, error)
	// SlaveOrder is the bond's own slave order (enslave order), which it
	// walks to pick a new active slave.
	SlaveOrder(bondName string) ([]string, error)
	// Speed is a slave's speed (Mb/s, -1 unknown) and duplex (1 full,
	// 0 half, -1 unknown), for primary_reselect=better.
	Speed(ifname string) (speed, duplex int)
}

// NetlinkKernel is the rtnetlink Kernel, bound to the network namespace
// that was current when it was made.
type NetlinkKernel struct {
	conn  *rtnl.Conn
	sysfs string
}

// NewKernel opens the request socket.
func NewKernel() (*NetlinkKernel, error) {
	c, err := rtnl.Dial(rtnl.ConnOptions{})
	if err != nil {
		return nil, fmt.Errorf("open rtnetlink socket for bond changes: %w", err)
	}
	return &NetlinkKernel{conn: c, sysfs: "/sys/class/net"}, nil
}

// Close releases the socket.
func (k *NetlinkKernel) Close() { k.conn.Close() }

func (k *NetlinkKernel) SetActive(bond, slave int) error {
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(bond)
	info := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
	info.AddRtAttr(nl.IFLA_INFO_KIND, nl.NonZeroTerminated("bond"))
	data := info.AddRtAttr(nl.IFLA_INFO_DATA, nil)
	data.AddRtAttr(nl.IFLA_BOND_ACTIVE_SLAVE, nl.Uint32Attr(uint32(slave)))
	body := append(msg.Serialize(), info.Serialize()...)
	if err := k.conn.Request(unix.RTM_NEWLINK, 0, body, nil); err != nil {
		return fmt.Errorf("set active slave of bond %d to %d: %w", bond, slave, err)
	}
	return nil
}

func (k *NetlinkKernel) Active(bond int) (int, error) {
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(bond)
	var reply []byte
	err := k.conn.Request(unix.RTM_GETLINK, 0, msg.Serialize(), func(typ, _ uint16, data []byte) error {
		if typ == unix.RTM_NEWLINK && reply == nil {
			reply = slices.Clone(data) // data is the socket's buffer, reused by the next read
		}
		return nil
	})
	if err == nil && reply == nil {
		err = errors.New("no answer")
	}
	if err != nil {
		return 0, fmt.Errorf("read bond %d: %w", bond, err)
	}
	u, err := registry.ParseMessage(unix.RTM_NEWLINK, reply)
	if err != nil {
		return 0, err
	}
	if u.Link.Bond == nil {
		return 0, fmt.Errorf("interface %d is not a bond", bond)
	}
	return u.Link.Bond.ActiveSlave, nil
}

func (k *NetlinkKernel) Slaves(bond int) ([]registry.Link, error) {
	return rtnl.Retry(fmt.Sprintf("dump slaves of bond %d", bond), func() ([]registry.Link, error) {
		return k.slavesOnce(bond)
	})
}

// slavesOnce is one dump of a bond's slaves; it fails with
// rtnl.ErrInterrupted, once the dump is read to its end, when the kernel
// flagged it inconsistent.
func (k *NetlinkKernel) slavesOnce(bond int) ([]registry.Link, error) {
	// The kernel filters the dump by master (and we check it again).
	body := append(nl.NewIfInfomsg(unix.AF_UNSPEC).Serialize(),
		nl.NewRtAttr(unix.IFLA_MASTER, nl.Uint32Attr(uint32(bond))).Serialize()...)
	var out []registry.Link
	err := k.conn.Request(unix.RTM_GETLINK, unix.NLM_F_DUMP, body, func(typ, _ uint16, data []byte) error {
		if typ != unix.RTM_NEWLINK {
			return nil
		}
		// A copy: data is the socket's buffer, and the link may keep
		// slices of it.
		u, err := registry.ParseMessage(typ, slices.Clone(data))
		if err != nil {
			return err
		}
		if u.Link.MasterIndex == bond && u.Link.BondSlave != nil {
			out = append(out, u.Link)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("dump slaves of bond %d: %w", bond, err)
	}
	return out, nil
}

func (k *NetlinkKernel) SlaveOrder(bondName string) ([]string, error) {
	b, err := os.ReadFile(filepath.Join(k.sysfs, bondName, "bonding", "slaves"))
	if err != nil {
		return nil, fmt.Errorf("read slave order: %w", err)
	}
	return strings.Fields(string(b)), nil
}

func (k *NetlinkKernel) Speed(ifname string) (int, int) {
	read := func(f string) string {
		b, err := os.ReadFile(filepath.Join(k.sysfs, ifname, f))
		if err != nil {
			return ""
		}
		return strings.TrimSpace(string(b))
	}
	speed, err := strconv.Atoi(read("speed"))
	if err != nil {
		speed = -1
	}
	duplex := -1
	switch read("duplex") {
	case "full":
		duplex = 1
	case "half":
		duplex = 0
	}
	return speed, duplex
}
