package rtnl

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// Listener receives rtnetlink notices of some multicast groups. It reads
// through the runtime's poller: a goroutine blocked in Receive parks
// instead of holding its thread in a system call, so the goroutine it
// hands a notice to runs on that thread at once. A blocking read kept
// the thread in the kernel with the receiver queued behind it, which
// cost the carrier loss tens of microseconds on every notice.
type Listener struct {
	f      *os.File
	raw    syscall.RawConn
	closed atomic.Bool
	datagram
}

// noticeBuf holds one datagram of notices: a route's notice passes 64 KiB
// when its multipath attribute is full.
const noticeBuf = 1 << 20

// Listen opens a notice socket in the caller's network namespace and joins
// groups (RTNLGRP_* numbers); Join adds more. rcvbuf sets the receive
// buffer when positive, past the rmem_max limit where allowed.
func Listen(rcvbuf int, groups ...int) (*Listener, error) {
	fd, err := Socket()
	if err != nil {
		return nil, err
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("netlink socket: %w", err)
	}
	if rcvbuf > 0 {
		if err := setRcvBuf(fd, rcvbuf); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("set netlink receive buffer: %w", err)
		}
	}
	// Non-blocking, so the runtime's poller serves it.
	f := os.NewFile(uintptr(fd), "rtnetlink-listen")
	raw, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("netlink socket: %w", err)
	}
	l := &Listener{f: f, raw: raw, datagram: datagram{buf: make([]byte, noticeBuf)}}
	if err := l.Join(groups...); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// Join adds multicast groups; it stops at the first it cannot join.
func (l *Listener) Join(groups ...int) error {
	var err error
	cerr := l.raw.Control(func(fd uintptr) {
		for _, g := range groups {
			if err = unix.SetsockoptInt(int(fd), unix.SOL_NETLINK, unix.NETLINK_ADD_MEMBERSHIP, g); err != nil {
				err = fmt.Errorf("join netlink group %d: %w", g, err)
				return
			}
		}
	})
	return errors.Join(cerr, err)
}

// Receive blocks for the next datagram of notices. The messages' data
// slices point into a buffer the next Receive reuses. An overrun reads as
// an error wrapping unix.ENOBUFS; after Close, as os.ErrClosed.
func (l *Listener) Receive() ([]syscall.NetlinkMessage, error) {
	var (
		n    int
		rerr error
	)
	err := l.raw.Read(func(fd uintptr) bool {
		for {
			n, rerr = unix.Read(int(fd), l.buf)
			if rerr != unix.EINTR {
				return rerr != unix.EAGAIN
			}
		}
	})
	if l.closed.Load() {
		return nil, os.ErrClosed
	}
	if err == nil {
		err = rerr
	}
	if err != nil {
		return nil, fmt.Errorf("netlink receive: %w", err)
	}
	return l.parse(n, "notice")
}

// Close unblocks Receive.
func (l *Listener) Close() error {
	l.closed.Store(true)
	if err := l.f.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
		return err
	}
	return nil
}
