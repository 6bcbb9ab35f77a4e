package registry

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/linkbeat/linkbeat/internal/rtnl"
)

// ErrOverflow means the kernel dropped link notices because the socket's
// receive buffer was full (ENOBUFS): only a full dump gives the truth now.
var ErrOverflow = errors.New("rtnetlink receive buffer overflowed (ENOBUFS)")

// Watcher receives RTNLGRP_LINK notices.
type Watcher struct {
	l *rtnl.Listener
}

// Watch subscribes to link notices in the caller's network namespace.
// rcvbuf sets SO_RCVBUF when positive (tests shrink it to force ENOBUFS).
func Watch(rcvbuf int) (*Watcher, error) {
	l, err := rtnl.Listen(rcvbuf, unix.RTNLGRP_LINK)
	if err != nil {
		return nil, fmt.Errorf("subscribe to rtnetlink link notices: %w", err)
	}
	return &Watcher{l: l}, nil
}

// Receive blocks for the next batch of notices. After Close it returns an
// error wrapping os.ErrClosed.
func (w *Watcher) Receive() ([]Update, error) {
	msgs, err := w.l.Receive()
	if err != nil {
		if errors.Is(err, unix.ENOBUFS) {
			return nil, ErrOverflow
		}
		return nil, fmt.Errorf("receive link notices: %w", err)
	}
	var out []Update
	for _, m := range msgs {
		if m.Header.Type != unix.RTM_NEWLINK && m.Header.Type != unix.RTM_DELLINK {
			continue
		}
		u, err := ParseMessage(m.Header.Type, m.Data)
		if err != nil {
			return out, err
		}
		out = append(out, u)
	}
	return out, nil
}

// Close unblocks Receive.
func (w *Watcher) Close() { w.l.Close() }

// Dump lists every link of the caller's network namespace. A dump the
// kernel interrupts because the table changed meanwhile is done again
// (rtnl.Retry): its partial result is never returned.
func Dump() ([]Link, error) {
	return rtnl.Retry("dump links", dumpOnce)
}

// dumpOnce is one dump; it fails with rtnl.ErrInterrupted when the kernel
// flagged it inconsistent.
func dumpOnce() ([]Link, error) {
	req := nl.NewNetlinkRequest(unix.RTM_GETLINK, unix.NLM_F_DUMP)
	req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
	msgs, err := req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWLINK)
	if err != nil {
		return nil, fmt.Errorf("dump links: %w", err)
	}
	return parseDump(msgs)
}

func parseDump(msgs [][]byte) ([]Link, error) {
	out := make([]Link, 0, len(msgs))
	for _, m := range msgs {
		u, err := ParseMessage(unix.RTM_NEWLINK, m)
		if err != nil {
			return nil, err
		}
		out = append(out, u.Link)
	}
	return out, nil
}
