package testkit

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Ready is what linkbeat logs on stderr once it has attached and
// subscribed: its readiness contract.
const Ready = "msg=ready"

// Binary is the linkbeat binary under test: $LINKBEAT_BIN, or
// ../../bin/linkbeat from the test's package directory. makeTarget names
// the make target that builds it, for the error.
func Binary(makeTarget string) (string, error) {
	bin := os.Getenv("LINKBEAT_BIN")
	if bin == "" {
		bin = "../../bin/linkbeat"
	}
	abs, err := filepath.Abs(bin)
	if err != nil {
		return "", fmt.Errorf("linkbeat binary: %w", err)
	}
	if _, err := os.Stat(abs); err != nil {
		return "", fmt.Errorf("linkbeat binary missing (%w): run `make build`, or `make %s`", err, makeTarget)
	}
	return abs, nil
}

// WaitLog polls text (a process's output so far) every poll until it
// contains s. It fails when done closes first (the process exited), when
// ctx ends, or after timeout; the error carries the output.
func WaitLog(ctx context.Context, name string, text func() string, done <-chan struct{}, s string, timeout, poll time.Duration) error {
	deadline := time.Now().Add(timeout)
	for !strings.Contains(text(), s) {
		select {
		case <-done:
			return fmt.Errorf("%s exited before %q:\n%s", name, s, text())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(poll):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: no %q after %v:\n%s", name, s, timeout, text())
		}
	}
	return nil
}

// Stop sends sig to p unless done (closed when p has been waited for) is
// already closed, and waits for done; after grace it kills p and waits
// again. It reports whether p had to be killed.
func Stop(p *os.Process, done <-chan struct{}, sig os.Signal, grace time.Duration) (killed bool) {
	select {
	case <-done:
		return false
	default:
	}
	p.Signal(sig)
	select {
	case <-done:
		return false
	case <-time.After(grace):
		p.Kill()
		<-done
		return true
	}
}
