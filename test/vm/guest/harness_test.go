//go:build vmguest

package guest

import (
	"testing"
	"time"
)

// TestHarnessSetLink checks the testbed itself: a QMP set_link issued through
// the request channel must drop and restore the guest NIC's carrier.
func TestHarnessSetLink(t *testing.T) {
	setAdmin(t, "eth0", true)
	setLinks(t, true, "net0")
	waitCarrier(t, "eth0", true, 30*time.Second)
	restoreLinksOnCleanup(t, "net0")

	start := time.Now()
	setLinks(t, false, "net0")
	waitCarrier(t, "eth0", false, 30*time.Second)
	t.Logf("eth0 carrier 1 -> 0 seen in sysfs %v after the cut request", time.Since(start).Round(time.Millisecond))

	setLinks(t, true, "net0")
	waitCarrier(t, "eth0", true, 30*time.Second)
}
