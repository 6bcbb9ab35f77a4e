package rtnl

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

// fakeDump answers like vishvananda/netlink under churn: the first
// interrupted calls return a partial result with ErrDumpInterrupted
// (wrapped, as callers add context), then the full one.
type fakeDump struct {
	interrupted int
	calls       int
}

func (f *fakeDump) dump() ([]int, error) {
	f.calls++
	if f.calls <= f.interrupted {
		return []int{1}, fmt.Errorf("dump links: %w", netlink.ErrDumpInterrupted)
	}
	return []int{1, 2, 3}, nil
}

func TestRetryAfterInterruptions(t *testing.T) {
	for _, n := range []int{0, 1, Attempts - 1} {
		f := &fakeDump{interrupted: n}
		got, err := retry("dump links", f.dump, func(time.Duration) {})
		if err != nil {
			t.Fatalf("%d interruptions: %v", n, err)
		}
		if len(got) != 3 || f.calls != n+1 {
			t.Errorf("%d interruptions: got %v after %d calls, want the full [1 2 3] after %d", n, got, f.calls, n+1)
		}
	}
}

func TestRetryGivesUpOnEndlessInterruptions(t *testing.T) {
	f := &fakeDump{interrupted: 1 << 30}
	var pauses []time.Duration
	got, err := retry("dump links", f.dump, func(d time.Duration) { pauses = append(pauses, d) })
	if f.calls != Attempts {
		t.Errorf("%d calls, want %d", f.calls, Attempts)
	}
	// Bounded: a pause between attempts, growing, never past maxPause.
	var total time.Duration
	for i, d := range pauses {
		total += d
		if d <= 0 || d > maxPause || (i > 0 && d < pauses[i-1]) {
			t.Errorf("pauses %v: want positive, growing, at most %s", pauses, maxPause)
			break
		}
	}
	if len(pauses) != Attempts-1 || total > 2*time.Second {
		t.Errorf("%d pauses of %s in all, want %d and at most 2s", len(pauses), total, Attempts-1)
	}
	if got != nil {
		t.Errorf("returned the partial result %v", got)
	}
	if !errors.Is(err, ErrInterrupted) || !strings.Contains(err.Error(), "dump links") || !strings.Contains(err.Error(), fmt.Sprint(Attempts)) {
		t.Errorf("error %q: want what was dumped, the number of attempts and ErrInterrupted", err)
	}
}

func TestRetryReturnsOtherErrorsAtOnce(t *testing.T) {
	calls := 0
	_, err := Retry("dump links", func() ([]int, error) {
		calls++
		return nil, fmt.Errorf("dump links: %w", syscall.EPERM)
	})
	if calls != 1 || !errors.Is(err, syscall.EPERM) {
		t.Errorf("%d calls, error %v: want one call and EPERM", calls, err)
	}
}
