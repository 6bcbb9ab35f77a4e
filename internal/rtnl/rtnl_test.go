package rtnl

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"

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
		got, err := Retry("dump links", f.dump)
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
	got, err := Retry("dump links", f.dump)
	if f.calls != Attempts {
		t.Errorf("%d calls, want %d", f.calls, Attempts)
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
