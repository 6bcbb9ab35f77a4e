package rtnl

import (
	"encoding/binary"
	"errors"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseAckKeepsExtendedMessage(t *testing.T) {
	code := -int32(unix.EINVAL)
	data := binary.NativeEndian.AppendUint32(nil, uint32(code))
	data = append(data, make([]byte, unix.NLMSG_HDRLEN)...) // the echoed header (NETLINK_CAP_ACK)
	msg := []byte("Nexthop id does not exist\x00")
	data = binary.NativeEndian.AppendUint16(data, uint16(4+len(msg)))
	data = binary.NativeEndian.AppendUint16(data, unix.NLMSGERR_ATTR_MSG)
	data = append(data, msg...)
	err := parseAck(data)
	if !errors.Is(err, unix.EINVAL) || err.Error() != "invalid argument: Nexthop id does not exist" {
		t.Fatalf("parseAck = %v, want EINVAL with the kernel's message", err)
	}
	if err := parseAck(make([]byte, 4)); err != nil {
		t.Fatalf("parseAck of an ACK = %v, want nil", err)
	}
}

// TestConnRequest reads the loopback device (ifindex 1 in every network
// namespace) and a device that does not exist, through a real socket.
func TestConnRequest(t *testing.T) {
	c, err := Dial(ConnOptions{})
	if err != nil {
		t.Fatalf("open an rtnetlink socket: %v", err)
	}
	defer c.Close()
	body := make([]byte, unix.SizeofIfInfomsg)
	binary.NativeEndian.PutUint32(body[4:], 1)
	got := 0
	err = c.Request(unix.RTM_GETLINK, 0, body, func(typ, _ uint16, _ []byte) error {
		if typ == unix.RTM_NEWLINK {
			got++
		}
		return nil
	})
	if err != nil || got != 1 {
		t.Fatalf("get ifindex 1: %d links, err %v; want 1, nil", got, err)
	}
	binary.NativeEndian.PutUint32(body[4:], 0x7ffffff0)
	err = c.Request(unix.RTM_GETLINK, 0, body, nil)
	var e *Error
	if !errors.Is(err, unix.ENODEV) || !errors.As(err, &e) {
		t.Fatalf("get a missing ifindex: %v, want an *Error with ENODEV", err)
	}
}
