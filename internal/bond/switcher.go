package bond

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
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
	sock  *nl.NetlinkSocket
	seq   uint32
	sysfs string
}

// NewKernel opens the request socket.
func NewKernel() (*NetlinkKernel, error) {
	s, err := nl.GetNetlinkSocketAt(netns.None(), netns.None(), unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("open rtnetlink socket for bond changes: %w", err)
	}
	return &NetlinkKernel{sock: s, sysfs: "/sys/class/net"}, nil
}

// Close releases the socket.
func (k *NetlinkKernel) Close() { k.sock.Close() }

func (k *NetlinkKernel) SetActive(bond, slave int) error {
	req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(bond)
	req.AddData(msg)
	info := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
	info.AddRtAttr(nl.IFLA_INFO_KIND, nl.NonZeroTerminated("bond"))
	data := info.AddRtAttr(nl.IFLA_INFO_DATA, nil)
	data.AddRtAttr(nl.IFLA_BOND_ACTIVE_SLAVE, nl.Uint32Attr(uint32(slave)))
	req.AddData(info)
	if _, err := k.do(req, 0); err != nil {
		return fmt.Errorf("set active slave of bond %d to %d: %w", bond, slave, err)
	}
	return nil
}

func (k *NetlinkKernel) Active(bond int) (int, error) {
	req := nl.NewNetlinkRequest(unix.RTM_GETLINK, 0)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(bond)
	req.AddData(msg)
	reply, err := k.do(req, unix.RTM_NEWLINK)
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
	req := nl.NewNetlinkRequest(unix.RTM_GETLINK, unix.NLM_F_DUMP)
	req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
	// The kernel filters the dump by master (and we check it again).
	req.AddData(nl.NewRtAttr(unix.IFLA_MASTER, nl.Uint32Attr(uint32(bond))))
	k.seq++
	req.Seq = k.seq
	if err := k.sock.Send(req); err != nil {
		return nil, fmt.Errorf("dump slaves of bond %d: %w", bond, err)
	}
	var out []registry.Link
	interrupted := false
	for {
		msgs, from, err := k.sock.Receive()
		if err != nil {
			return nil, fmt.Errorf("dump slaves of bond %d: %w", bond, err)
		}
		if from.Pid != 0 {
			continue
		}
		for _, m := range msgs {
			if m.Header.Seq != req.Seq {
				continue
			}
			if m.Header.Flags&unix.NLM_F_DUMP_INTR != 0 {
				interrupted = true
			}
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				if interrupted {
					return nil, fmt.Errorf("dump slaves of bond %d: %w", bond, rtnl.ErrInterrupted)
				}
				return out, nil
			case unix.NLMSG_ERROR:
				if len(m.Data) >= 4 {
					if errno := int32(nl.NativeEndian().Uint32(m.Data[:4])); errno != 0 {
						return nil, fmt.Errorf("dump slaves of bond %d: %w", bond, syscall.Errno(-errno))
					}
				}
				return out, nil
			case unix.RTM_NEWLINK:
				u, err := registry.ParseMessage(m.Header.Type, m.Data)
				if err != nil {
					return nil, err
				}
				if u.Link.MasterIndex == bond && u.Link.BondSlave != nil {
					out = append(out, u.Link)
				}
			}
		}
	}
}

// do sends one request and waits for its answer: the message of type want,
// or, when want is 0, the ACK.
func (k *NetlinkKernel) do(req *nl.NetlinkRequest, want uint16) ([]byte, error) {
	k.seq++
	req.Seq = k.seq
	if err := k.sock.Send(req); err != nil {
		return nil, err
	}
	pid, err := k.sock.GetPid()
	if err != nil {
		return nil, err
	}
	var got []byte
	for {
		msgs, from, err := k.sock.Receive()
		if err != nil {
			return nil, err
		}
		if from.Pid != 0 {
			continue
		}
		for _, m := range msgs {
			if m.Header.Seq != req.Seq || m.Header.Pid != pid {
				continue // a late answer to an earlier, timed-out request
			}
			switch m.Header.Type {
			case unix.NLMSG_ERROR:
				if len(m.Data) < 4 {
					return nil, errors.New("short netlink error message")
				}
				if errno := int32(nl.NativeEndian().Uint32(m.Data[:4])); errno != 0 {
					return nil, syscall.Errno(-errno)
				}
				return got, nil
			case want:
				if want != 0 {
					return m.Data, nil
				}
			}
		}
	}
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
