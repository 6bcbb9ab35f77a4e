package main

import (
	"fmt"
	"net"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"
)

const probePort = 7000

// listen accepts TCP connections on probePort inside ns and closes them:
// a completed handshake is all a probe asks for. It stops when stop closes.
func listen(ns *namespace, stop <-chan struct{}) error {
	var l net.Listener
	err := ns.do(func() error {
		var err error
		l, err = net.Listen("tcp4", fmt.Sprintf("0.0.0.0:%d", probePort))
		return err
	})
	if err != nil {
		return fmt.Errorf("listen in %s: %w", ns.name, err)
	}
	go func() { <-stop; l.Close() }()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return nil
}

// attempt is one new flow: a TCP connect to dst started at start.
type attempt struct {
	start time.Time
	ok    bool
}

// prober opens a new TCP connection every interval from inside ns,
// round-robin over dsts, each from a fresh source port so that multipath
// hashing spreads them like real flows. A connection that has no answer
// after timeout failed: on a live veth path the handshake takes well
// under a millisecond.
type prober struct {
	ns       *namespace
	dsts     []netip.Addr
	interval time.Duration
	timeout  time.Duration
}

// run probes until stop closes, then waits out the pending attempts.
// It runs on one locked thread with non-blocking sockets and ppoll, so
// no Go scheduling sits between a launch and its timestamp.
func (p *prober) run(stop <-chan struct{}) ([]attempt, error) {
	var out []attempt
	err := p.ns.do(func() error {
		type pending struct {
			fd int
			i  int
		}
		var pend []pending
		finish := func(k int, ok bool) {
			unix.Close(pend[k].fd)
			out[pend[k].i].ok = ok
			pend = append(pend[:k], pend[k+1:]...)
		}
		next := time.Now()
		stopped := false
		for n := 0; !stopped || len(pend) > 0; {
			select {
			case <-stop:
				stopped = true
			default:
			}
			now := time.Now()
			if !stopped && !now.Before(next) {
				fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
				if err != nil {
					return fmt.Errorf("probe socket: %w", err)
				}
				dst := p.dsts[n%len(p.dsts)].As4()
				n++
				out = append(out, attempt{start: time.Now()})
				err = unix.Connect(fd, &unix.SockaddrInet4{Port: probePort, Addr: dst})
				pend = append(pend, pending{fd: fd, i: len(out) - 1})
				switch err {
				case nil:
					finish(len(pend)-1, true)
				case unix.EINPROGRESS:
				default:
					finish(len(pend)-1, false)
				}
				next = next.Add(p.interval)
				if next.Before(now) {
					next = now.Add(p.interval)
				}
			}
			fds := make([]unix.PollFd, len(pend))
			for k, q := range pend {
				fds[k] = unix.PollFd{Fd: int32(q.fd), Events: unix.POLLOUT}
			}
			wait := time.Until(next)
			if stopped {
				wait = p.interval
			}
			ts := unix.NsecToTimespec(max(wait, 0).Nanoseconds())
			if _, err := unix.Ppoll(fds, &ts, nil); err != nil && err != unix.EINTR {
				return fmt.Errorf("probe poll: %w", err)
			}
			now = time.Now()
			for k := len(pend) - 1; k >= 0; k-- {
				switch {
				case fds[k].Revents != 0:
					soErr, err := unix.GetsockoptInt(pend[k].fd, unix.SOL_SOCKET, unix.SO_ERROR)
					finish(k, err == nil && soErr == 0)
				case now.Sub(out[pend[k].i].start) > p.timeout:
					finish(k, false)
				}
			}
		}
		return nil
	})
	return out, err
}

// lastFailure is when, relative to t0, the last failing attempt started:
// from then on every new flow got through. Zero when none failed.
func lastFailure(as []attempt, t0 time.Time) time.Duration {
	var last time.Duration
	for _, a := range as {
		if !a.ok && a.start.After(t0) {
			last = max(last, a.start.Sub(t0))
		}
	}
	return last
}

// flowFigure is one trial's new-flow sample: when, in ms after t0, the
// last failing attempt started. A prober error, no attempt after the cut,
// or no flow through after the last failure leave the trial without one:
// "no attempt" must not read as "no new flow failed".
func flowFigure(pr probeRun, t0 time.Time) (float64, error) {
	if pr.err != nil {
		return 0, fmt.Errorf("prober: %w", pr.err)
	}
	last, after, okAfter := lastFailure(pr.attempts, t0), 0, 0
	for _, a := range pr.attempts {
		if a.start.Before(t0) {
			continue
		}
		after++
		if a.ok && a.start.Sub(t0) > last {
			okAfter++
		}
	}
	switch {
	case after == 0:
		return 0, fmt.Errorf("no new flow was attempted after the cut")
	case okAfter == 0:
		return 0, fmt.Errorf("no new flow got through after the last failure at %v (%d attempts after the cut)", last, after)
	}
	return ms(last), nil
}

// reachAll connects once to every destination and names the ones that
// did not answer.
func reachAll(ns *namespace, dsts []netip.Addr) ([]netip.Addr, error) {
	var failed []netip.Addr
	err := ns.do(func() error {
		for _, d := range dsts {
			c, err := net.DialTimeout("tcp4", netip.AddrPortFrom(d, probePort).String(), time.Second)
			if err != nil {
				failed = append(failed, d)
				continue
			}
			c.Close()
		}
		return nil
	})
	return failed, err
}
