// Package buildinfo carries the version stamped in at link time.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Version is set by the Makefile with -ldflags -X.
var Version = "dev"

// Revision returns the VCS revision Go recorded, or "unknown".
func Revision() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				return s.Value
			}
		}
	}
	return "unknown"
}

// Print is what --version and `linkbeat version` print, in the layout of
// Prometheus' exporters.
func Print(program string) string {
	return fmt.Sprintf("%s, version %s (revision: %s)\n  go version: %s\n  platform:   %s/%s",
		program, Version, Revision(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
