package testkit

import (
	"fmt"
	"os/exec"
)

// Promtool is the path of promtool; makeTarget names the make target that
// installs it, for the error.
func Promtool(makeTarget string) (string, error) {
	p, err := exec.LookPath("promtool")
	if err != nil {
		return "", fmt.Errorf("promtool missing: it comes with Debian's prometheus package; run scripts/install-deps.sh (make %s does)", makeTarget)
	}
	return p, nil
}
