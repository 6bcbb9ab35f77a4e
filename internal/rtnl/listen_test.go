package rtnl

import (
	"encoding/binary"
	"errors"
	"os"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// inNetns runs f on a thread of its own in a fresh network namespace; the
// sockets f opens stay in it.
func inNetns(t *testing.T, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		// The thread is left locked: it ends with the goroutine instead
		// of going back to the runtime in the test's namespace.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			t.Errorf("new network namespace (needs root): %v", err)
			return
		}
		f()
	}()
	<-done
}

// setLoopback sets lo administratively up or down: one link notice.
func setLoopback(t *testing.T, c *Conn, up bool) {
	t.Helper()
	body := make([]byte, unix.SizeofIfInfomsg)
	binary.NativeEndian.PutUint32(body[4:], 1)
	if up {
		binary.NativeEndian.PutUint32(body[8:], unix.IFF_UP)
	}
	binary.NativeEndian.PutUint32(body[12:], unix.IFF_UP)
	if err := c.Request(unix.RTM_NEWLINK, unix.NLM_F_ACK, body, nil); err != nil {
		t.Fatalf("set lo up=%v: %v", up, err)
	}
}

// A Listener gets the notices of its group, reports an overrun as
// ENOBUFS, and a Receive blocked when Close runs returns os.ErrClosed.
func TestListener(t *testing.T) {
	var l, small *Listener
	var c *Conn
	inNetns(t, func() {
		var err error
		if l, err = Listen(0, unix.RTNLGRP_LINK); err != nil {
			t.Error(err)
			return
		}
		if small, err = Listen(1, unix.RTNLGRP_LINK); err != nil {
			t.Error(err)
			return
		}
		if c, err = Dial(ConnOptions{}); err != nil {
			t.Error(err)
		}
	})
	if t.Failed() {
		t.FailNow()
	}
	defer c.Close()
	defer small.Close()
	setLoopback(t, c, true)
	msgs, err := l.Receive()
	if err != nil || len(msgs) == 0 || msgs[0].Header.Type != unix.RTM_NEWLINK {
		t.Fatalf("Receive after lo up: %d messages, %v; want RTM_NEWLINK", len(msgs), err)
	}

	for i := 0; i < 64; i++ {
		setLoopback(t, c, i%2 == 1)
	}
	var overrun bool
	for !overrun {
		_, err := small.Receive()
		if err != nil && !errors.Is(err, unix.ENOBUFS) {
			t.Fatalf("small buffer: %v, want ENOBUFS", err)
		}
		overrun = err != nil
	}

	got := make(chan error, 1)
	go func() {
		for {
			// Drain the flaps above; then Receive blocks until Close.
			if _, err := l.Receive(); err != nil {
				got <- err
				return
			}
		}
	}()
	time.Sleep(50 * time.Millisecond)
	l.Close()
	select {
	case err := <-got:
		if !errors.Is(err, os.ErrClosed) {
			t.Fatalf("Receive after Close: %v, want os.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not unblock Receive")
	}
}
