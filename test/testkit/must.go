package testkit

import "testing"

// Must returns v, or fails the test with err: for the helpers here, which
// return errors so the benchmark program can use them too.
func Must[T any](t testing.TB, v T, err error) T {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	return v
}
