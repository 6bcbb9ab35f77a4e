// Package rtnl holds what every rtnetlink dump of linkbeat shares: a dump
// the kernel marks inconsistent (NLM_F_DUMP_INTR, because the table
// changed while it was read) is done again, a bounded number of times.
package rtnl

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
)

// Attempts is how many times Retry runs a dump that keeps being
// interrupted: a table that changes through every one of them is churning
// faster than it can be read, and the caller gets a clear error instead
// of a partial view.
const Attempts = 5

// ErrInterrupted marks a dump the kernel flagged NLM_F_DUMP_INTR. It is
// vishvananda/netlink's own sentinel, so that the library's dumps and
// linkbeat's raw ones are told apart the same way.
var ErrInterrupted = netlink.ErrDumpInterrupted

// Retry runs dump until it is not interrupted, at most Attempts times.
// The partial result of an interrupted attempt is never returned: after
// the last one the error says how many attempts were made and wraps
// ErrInterrupted.
func Retry[T any](what string, dump func() (T, error)) (T, error) {
	var zero T
	for range Attempts {
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
