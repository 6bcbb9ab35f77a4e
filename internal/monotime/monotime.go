// Package monotime is linkbeat's one reading of CLOCK_MONOTONIC, the clock of
// bpf_ktime_get_ns: BPF timestamps and the daemon's own times compare only
// on it.
package monotime

import (
	"time"

	"golang.org/x/sys/unix"
)

// Now is CLOCK_MONOTONIC since boot. clock_gettime cannot fail for this
// clock with a valid pointer, so the error is not returned.
func Now() time.Duration {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return time.Duration(ts.Nano())
}

// NowNS is Now in nanoseconds, as the BPF maps store it.
func NowNS() int64 { return int64(Now()) }
