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

// Listen subscribes to groups (RTNLGRP_* numbers) in the caller's network
// namespace. rcvbuf sets SO_RCVBUF when positive.
func Listen(rcvbuf int, groups ...int) (*Listener, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("open netlink socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind netlink socket: %w", err)
	}
	for _, g := range groups {
		if err := unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_ADD_MEMBERSHIP, g); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("join netlink group %d: %w", g, err)
		}
	}
	if rcvbuf > 0 {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, rcvbuf); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("set netlink receive buffer: %w", err)
		}
	}
	f := os.NewFile(uintptr(fd), "rtnetlink-listen")
	raw, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("netlink socket: %w", err)
	}
	return &Listener{f: f, raw: raw, datagram: datagram{buf: make([]byte, 1<<16)}}, nil
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
