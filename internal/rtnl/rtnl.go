// Package rtnl holds what every rtnetlink dump of linkbeat shares: a dump
// the kernel marks inconsistent (NLM_F_DUMP_INTR, because the table
// changed while it was read) is done again, a bounded number of times.
package rtnl

import (
	"errors"
	"fmt"
	"time"

	"github.com/vishvananda/netlink"
)

// Attempts is how many times Retry runs a dump that keeps being
// interrupted, with a growing pause between attempts (firstPause,
// doubling up to maxPause: a little over a second in all), so that a
// burst of changes, such as a batch of veths for new containers, is over
// before the last one. A table that changes through every attempt is
// churning faster than it can be read, and the caller gets a clear error
// instead of a partial view.
const (
	Attempts   = 10
	firstPause = 5 * time.Millisecond
	maxPause   = 250 * time.Millisecond
)

// ErrInterrupted marks a dump the kernel flagged NLM_F_DUMP_INTR. It is
// vishvananda/netlink's own sentinel, so that the library's dumps and
// linkbeat's raw ones are told apart the same way.
var ErrInterrupted = netlink.ErrDumpInterrupted

// Retry runs dump until it is not interrupted, at most Attempts times.
// The partial result of an interrupted attempt is never returned: after
// the last one the error says how many attempts were made and wraps
// ErrInterrupted.
func Retry[T any](what string, dump func() (T, error)) (T, error) {
	return retry(what, dump, time.Sleep)
}

func retry[T any](what string, dump func() (T, error), sleep func(time.Duration)) (T, error) {
	var zero T
	pause := firstPause
	for i := range Attempts {
		if i > 0 {
			sleep(pause)
			pause = min(2*pause, maxPause)
		}
		v, err := dump()
		if err == nil {
			return v, nil
		}
		if !errors.Is(err, ErrInterrupted) {
			return zero, err
		}
	}
	return zero, fmt.Errorf("%s: the kernel interrupted %d dumps in a row (the table keeps changing): %w", what, Attempts, ErrInterrupted)
}
