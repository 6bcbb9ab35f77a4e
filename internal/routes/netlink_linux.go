package routes

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/linkbeat/linkbeat/internal/rtnl"
)

// nlKernel talks rtnetlink in the network namespace that was current when
// NewKernel ran: its sockets are opened there and stay bound to it.
type nlKernel struct {
	conn   *rtnl.Conn
	sub    *rtnl.Listener // notices; groups joined by Subscribe
	err    error
	mu     sync.Mutex // guards subbed
	subbed bool
}

// NewKernel returns the netlink Kernel of the calling thread's network
// namespace. Errors opening sockets surface on first use.
func NewKernel() Kernel {
	k := &nlKernel{}
	// Room for a batch's acknowledgements: the kernel drops what does not
	// fit, and a lost ACK must not be waited for. Never wait for an answer
	// forever: a reply lost to an overrun would otherwise hang the
	// reaction path.
	if k.conn, k.err = rtnl.Dial(rtnl.ConnOptions{RcvBuf: 4 << 20, Timeout: replyTimeout}); k.err != nil {
		return k
	}
	// A big buffer makes ENOBUFS (and the re-dump it costs) rare.
	k.sub, k.err = rtnl.Listen(8 << 20)
	return k
}

// request sends one message and calls fn for each reply until the dump ends
// or the ACK arrives.
func (k *nlKernel) request(typ, flags uint16, body []byte, fn func(typ uint16, flags uint16, data []byte) error) error {
	if k.err != nil {
		return k.err
	}
	return k.conn.Request(typ, flags, body, fn)
}

// dump runs a dump through rtnl.Retry, which does it again while the
// kernel marks it inconsistent; reset drops an interrupted attempt's part.
func (k *nlKernel) dump(typ uint16, body []byte, fn func(typ, flags uint16, data []byte) error, reset func()) error {
	_, err := rtnl.Retry("rtnetlink", func() (struct{}, error) {
		reset()
		return struct{}{}, k.request(typ, unix.NLM_F_DUMP, body, fn)
	})
	return err
}

func (k *nlKernel) Routes() ([]*Route, error) {
	var out []*Route // both families in one list: no copy of a table
	for _, fam := range []uint8{unix.AF_INET, unix.AF_INET6} {
		body := make([]byte, unix.SizeofRtMsg)
		body[0] = fam
		start := len(out)
		err := k.dump(unix.RTM_GETROUTE, body, func(typ, _ uint16, data []byte) error {
			if r, ok := decodeRoute(data); ok {
				out = append(out, r)
			}
			return nil
		}, func() {
			clear(out[start:]) // an interrupted attempt's routes
			out = out[:start]
		})
		if err != nil {
			return nil, fmt.Errorf("dump routes: %w", err)
		}
	}
	return out, nil
}

func (k *nlKernel) Nexthops() ([]*Nexthop, error) {
	var out []*Nexthop
	err := k.dump(unix.RTM_GETNEXTHOP, make([]byte, unix.SizeofNhmsg), func(typ, _ uint16, data []byte) error {
		if n, ok := decodeNexthop(data); ok {
			out = append(out, n)
		}
		return nil
	}, func() { out = out[:0] })
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL) {
		return nil, nil // kernel without nexthop objects
	}
	if err != nil {
		return nil, fmt.Errorf("dump nexthops: %w", err)
	}
	return out, nil
}

func (k *nlKernel) AddRoute(r *Route, op Op) error {
	return k.request(unix.RTM_NEWROUTE, opFlags(op), encodeRoute(r, false), nil)
}

func (k *nlKernel) DeleteRoute(r *Route) error {
	return deleteError(r, k.request(unix.RTM_DELROUTE, 0, encodeRoute(r, true), nil))
}

func deleteError(r *Route, err error) error {
	if r.NHID != 0 && errors.Is(err, unix.EINVAL) {
		// "Nexthop id does not exist": the kernel flushed the object,
		// and every route using it went with it.
		return fmt.Errorf("%w (%w)", unix.ESRCH, err)
	}
	return err
}

// A batch of ApplyRoutes is at most batchBytes and batchMsgs: its acks
// (each a socket buffer of its own, about 1 KiB with an extended-ACK
// message) must fit the receive buffer, or the kernel drops them.
const (
	batchBytes   = 32 << 10
	batchMsgs    = 256
	replyTimeout = 10 * time.Second
)

func (k *nlKernel) ApplyRoutes(changes []RouteChange) []error {
	errs := make([]error, len(changes))
	// One batch is encoded at a time, its buffers reused: encoding every
	// change first would hold a whole table's messages at once.
	bodies := make([][]byte, 0, batchMsgs)
	types := make([]uint16, 0, batchMsgs)
	flags := make([]uint16, 0, batchMsgs)
	for start := 0; start < len(changes); {
		bodies, types, flags = bodies[:0], types[:0], flags[:0]
		end, size := start, 0
		for end < len(changes) && end-start < batchMsgs {
			c := changes[end]
			b := encodeRoute(c.Route, c.Delete)
			if end > start && size+unix.NLMSG_HDRLEN+len(b) > batchBytes {
				break
			}
			size += unix.NLMSG_HDRLEN + len(b)
			if c.Delete {
				types, flags = append(types, unix.RTM_DELROUTE), append(flags, 0)
			} else {
				types, flags = append(types, unix.RTM_NEWROUTE), append(flags, opFlags(c.Op))
			}
			bodies = append(bodies, b)
			end++
		}
		k.batch(types, flags, bodies, errs[start:end])
		start = end
	}
	for i, c := range changes {
		if c.Delete {
			errs[i] = deleteError(c.Route, errs[i])
		}
	}
	return errs
}

// batch sends several requests in one datagram and collects each one's
// ACK: the kernel handles them in order and acknowledges each.
func (k *nlKernel) batch(types, flags []uint16, bodies [][]byte, errs []error) {
	if k.err != nil {
		for i := range errs {
			errs[i] = k.err
		}
		return
	}
	k.conn.Batch(types, flags, bodies, errs)
}

func (k *nlKernel) AddNexthop(n *Nexthop, op Op) error {
	return k.request(unix.RTM_NEWNEXTHOP, opFlags(op), encodeNexthop(n), nil)
}

func (k *nlKernel) DeleteNexthop(id uint32) error {
	b := make([]byte, unix.SizeofNhmsg)
	b = appendAttr(b, nhaID, u32(id))
	return k.request(unix.RTM_DELNEXTHOP, 0, b, nil)
}

func (k *nlKernel) Link(ifindex int) (LinkInfo, error) {
	body := make([]byte, unix.SizeofIfInfomsg)
	binary.NativeEndian.PutUint32(body[4:], uint32(ifindex))
	var li LinkInfo
	found := false
	err := k.request(unix.RTM_GETLINK, 0, body, func(typ, _ uint16, data []byte) error {
		if typ != unix.RTM_NEWLINK || len(data) < unix.SizeofIfInfomsg {
			return nil
		}
		flags := binary.NativeEndian.Uint32(data[8:])
		li.Carrier = flags&unix.IFF_UP != 0 && flags&unix.IFF_LOWER_UP != 0
		for a := range parseAttrs(data[unix.SizeofIfInfomsg:]) {
			if a.Type&nlaTypeMask == unix.IFLA_IFNAME {
				li.Name = rtnl.CString(a.Data)
			}
		}
		found = true
		return nil
	})
	if errors.Is(err, unix.ENODEV) {
		return li, ErrNoLink
	}
	if err != nil {
		return li, fmt.Errorf("get link %d: %w", ifindex, err)
	}
	if !found {
		return li, ErrNoLink
	}
	return li, nil
}

func (k *nlKernel) Subscribe(ctx context.Context) (<-chan Update, error) {
	if k.err != nil {
		return nil, k.err
	}
	k.mu.Lock()
	if k.subbed {
		k.mu.Unlock()
		return nil, errors.New("already subscribed")
	}
	k.subbed = true
	k.mu.Unlock()
	for _, g := range []int{unix.RTNLGRP_IPV4_ROUTE, unix.RTNLGRP_IPV6_ROUTE, unix.RTNLGRP_NEXTHOP} {
		if err := k.sub.Join(g); err != nil && g != unix.RTNLGRP_NEXTHOP { // nexthop group is optional
			return nil, fmt.Errorf("subscribe: %w", err)
		}
	}
	ch := make(chan Update, 1024)
	go func() {
		<-ctx.Done()
		k.sub.Close()
	}()
	go func() {
		defer close(ch)
		for {
			msgs, err := k.sub.Receive()
			if errors.Is(err, unix.ENOBUFS) {
				select {
				case ch <- Update{Kind: Overrun}:
				case <-ctx.Done():
					return
				}
				continue
			}
			if errors.Is(err, syscall.EINVAL) {
				continue // a datagram that does not parse
			}
			if err != nil {
				return // closed by ctx, or a dead socket
			}
			for _, m := range msgs {
				if k.conn.PortID() != 0 && m.Header.Pid == k.conn.PortID() {
					// The echo of linkbeat's own change: the Manager has put
					// it in its cache already, and applying it late would
					// briefly undo a later change (a route moved behind a
					// twin, deleted again after a restore).
					continue
				}
				u, ok := decodeUpdate(m.Header.Type, m.Data)
				if !ok {
					continue
				}
				u.Flags = m.Header.Flags
				select {
				case ch <- u:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return ch, nil
}
