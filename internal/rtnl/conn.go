package rtnl

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Conn is one rtnetlink request socket, bound to the network namespace
// that was current when Dial ran. Requests on it take turns.
type Conn struct {
	mu  sync.Mutex // one request at a time on fd
	fd  int
	seq uint32
	// datagram (replies) and out are reused under mu: a withdrawal of a
	// whole table sends and acknowledges it in batches, and a new buffer,
	// list of replies and request per batch were most of its garbage.
	datagram
	out    []byte
	portid uint32
}

// ConnOptions tunes a Conn's socket. Zero values keep the kernel's
// defaults.
type ConnOptions struct {
	// RcvBuf is the receive buffer, big enough for a batch's ACKs: the
	// kernel drops what does not fit.
	RcvBuf int
	// Timeout bounds the wait for an answer, so that a reply lost to an
	// overrun does not hang the caller. Zero waits forever.
	Timeout time.Duration
}

// Dial opens a request socket with extended ACKs, which carry the
// kernel's reason for an error.
func Dial(opts ConnOptions) (*Conn, error) {
	fd, err := Socket()
	if err != nil {
		return nil, err
	}
	c := &Conn{fd: fd}
	if opts.RcvBuf > 0 {
		_ = setRcvBuf(fd, opts.RcvBuf) // the kernel's default still works, with more overruns
	}
	if sa, err := unix.Getsockname(fd); err == nil {
		if nl, ok := sa.(*unix.SockaddrNetlink); ok {
			c.portid = nl.Pid
		}
	}
	if opts.Timeout > 0 {
		tv := unix.NsecToTimeval(int64(opts.Timeout))
		unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	}
	return c, nil
}

// Socket opens and binds a bare rtnetlink socket with extended ACKs.
func Socket() (int, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return -1, fmt.Errorf("open netlink socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("bind netlink socket: %w", err)
	}
	unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_EXT_ACK, 1)
	unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, 1)
	return fd, nil
}

// setRcvBuf sizes fd's receive buffer: past rmem_max with CAP_NET_ADMIN
// (SO_RCVBUFFORCE), else up to it.
func setRcvBuf(fd, n int) error {
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n) == nil {
		return nil
	}
	return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, n)
}

// Close closes the socket.
func (c *Conn) Close() error { return unix.Close(c.fd) }

// PortID is the socket's netlink address: the kernel's notices of changes
// made through it carry it.
func (c *Conn) PortID() uint32 { return c.portid }

// Error is a kernel error with its extended-ACK message.
type Error struct {
	Errno unix.Errno
	Msg   string
}

func (e *Error) Error() string {
	if e.Msg != "" {
		return e.Errno.Error() + ": " + e.Msg
	}
	return e.Errno.Error()
}
func (e *Error) Unwrap() error { return e.Errno }

// Request sends one message (body is what follows the netlink header) and
// calls fn for each reply until the dump ends or the ACK arrives. A dump
// the kernel flagged inconsistent ends in ErrInterrupted: run it through
// Retry.
func (c *Conn) Request(typ, flags uint16, body []byte, fn func(typ, flags uint16, data []byte) error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	seq := c.seq
	msg := make([]byte, 0, unix.NLMSG_HDRLEN+len(body))
	msg = appendHeader(msg, typ, flags, seq, len(body))
	msg = append(msg, body...)
	if err := unix.Sendto(c.fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("netlink send: %w", err)
	}
	interrupted := false
	for {
		msgs, err := c.receive()
		if err != nil {
			return err
		}
		for _, m := range msgs {
			if m.Header.Seq != seq {
				continue // stale reply of an earlier request
			}
			if m.Header.Flags&unix.NLM_F_DUMP_INTR != 0 {
				interrupted = true
			}
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				if interrupted {
					return ErrInterrupted
				}
				return nil
			case unix.NLMSG_ERROR:
				return parseAck(m.Data)
			default:
				if fn != nil {
					if err := fn(m.Header.Type, m.Header.Flags, m.Data); err != nil {
						return err
					}
				}
			}
		}
	}
}

// Batch sends several requests in one datagram and collects each one's
// ACK in errs: the kernel handles them in order and acknowledges each.
// The caller keeps the batch's ACKs within the receive buffer.
func (c *Conn) Batch(types, flags []uint16, bodies [][]byte, errs []error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	first := c.seq + 1
	msg := c.out[:0]
	defer func() { c.out = msg[:0] }()
	for i, body := range bodies {
		c.seq++
		msg = appendHeader(msg, types[i], flags[i], c.seq, len(body))
		msg = append(msg, body...) // bodies are 4-byte aligned
	}
	acked := make([]bool, len(bodies))
	fail := func(err error) {
		for i := range errs {
			if !acked[i] {
				errs[i] = err
			}
		}
	}
	if err := unix.Sendto(c.fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		fail(fmt.Errorf("netlink send: %w", err))
		return
	}
	for left := len(bodies); left > 0; {
		msgs, err := c.receive()
		if err != nil {
			// ENOBUFS: acks were lost; the outcome of those not acked
			// is unknown, and reported as this error.
			fail(err)
			return
		}
		for _, m := range msgs {
			i := int(m.Header.Seq - first)
			if m.Header.Type != unix.NLMSG_ERROR || m.Header.Seq < first || i >= len(bodies) || acked[i] {
				continue // stale reply of an earlier request
			}
			errs[i], acked[i] = parseAck(m.Data), true
			left--
		}
	}
}

func appendHeader(msg []byte, typ, flags uint16, seq uint32, bodyLen int) []byte {
	msg = binary.NativeEndian.AppendUint32(msg, uint32(unix.NLMSG_HDRLEN+bodyLen))
	msg = binary.NativeEndian.AppendUint16(msg, typ)
	msg = binary.NativeEndian.AppendUint16(msg, flags|unix.NLM_F_REQUEST|unix.NLM_F_ACK)
	msg = binary.NativeEndian.AppendUint32(msg, seq)
	return binary.NativeEndian.AppendUint32(msg, 0)
}

// receive reads one datagram of replies, again when a signal interrupts
// the read.
func (c *Conn) receive() ([]syscall.NetlinkMessage, error) {
	if c.buf == nil {
		c.buf = make([]byte, 1<<16)
	}
	for {
		// Read, not Recvfrom: the sender's address is not used, and
		// Recvfrom allocates it for every datagram.
		n, err := unix.Read(c.fd, c.buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("netlink receive: %w", err)
		}
		return c.datagram.parse(n, "reply")
	}
}

// datagram is a read buffer and the list of its messages, both reused:
// one per read would be 64 KiB of garbage per route.
type datagram struct {
	buf  []byte
	msgs []syscall.NetlinkMessage
}

// parse lists the messages of the n bytes read into buf; their data
// slices point into buf.
func (d *datagram) parse(n int, what string) ([]syscall.NetlinkMessage, error) {
	msgs, err := parseMessages(d.msgs[:0], d.buf[:n])
	d.msgs = msgs[:0]
	if err != nil {
		return nil, fmt.Errorf("parse netlink %s: %w", what, err)
	}
	return msgs, nil
}

// parseMessages appends b's messages to msgs, as syscall.ParseNetlinkMessage
// returns them (their data slices of b), into a list the caller reuses.
func parseMessages(msgs []syscall.NetlinkMessage, b []byte) ([]syscall.NetlinkMessage, error) {
	for len(b) >= unix.NLMSG_HDRLEN {
		h := syscall.NlMsghdr{Len: binary.NativeEndian.Uint32(b), Type: binary.NativeEndian.Uint16(b[4:]),
			Flags: binary.NativeEndian.Uint16(b[6:]), Seq: binary.NativeEndian.Uint32(b[8:]), Pid: binary.NativeEndian.Uint32(b[12:])}
		l := int(h.Len)
		if l < unix.NLMSG_HDRLEN || l > len(b) {
			return msgs, syscall.EINVAL
		}
		msgs = append(msgs, syscall.NetlinkMessage{Header: h, Data: b[unix.NLMSG_HDRLEN:l]})
		b = b[min((l+unix.NLMSG_ALIGNTO-1)&^(unix.NLMSG_ALIGNTO-1), len(b)):]
	}
	return msgs, nil
}

// nlaTypeMask drops an attribute type's NLA_F_NESTED and NLA_F_NET_BYTEORDER flags.
const nlaTypeMask = 0x3fff

// parseAck reads an NLMSG_ERROR: nil for an ACK, else the errno with the
// extended ACK's message.
func parseAck(data []byte) error {
	if len(data) < 4 {
		return errors.New("short netlink error")
	}
	code := int32(binary.NativeEndian.Uint32(data))
	if code == 0 {
		return nil
	}
	e := &Error{Errno: unix.Errno(-code)}
	// With NETLINK_CAP_ACK the echoed request is only its header.
	if len(data) >= 4+unix.NLMSG_HDRLEN {
		for b := data[4+unix.NLMSG_HDRLEN:]; len(b) >= 4; {
			l := int(binary.NativeEndian.Uint16(b))
			if l < 4 || l > len(b) {
				break
			}
			if binary.NativeEndian.Uint16(b[2:])&nlaTypeMask == unix.NLMSGERR_ATTR_MSG {
				e.Msg = CString(b[4:l])
			}
			al := (l + 3) &^ 3
			if al > len(b) {
				break
			}
			b = b[al:]
		}
	}
	return e
}

// CString is a NUL-terminated attribute's string.
func CString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}
