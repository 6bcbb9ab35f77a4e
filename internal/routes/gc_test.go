package routes

import (
	"runtime/debug"
	"testing"
)

func gcPercent() int {
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	return p
}

// TestTightGCWindow: a big change runs at tightGCPercent and puts the
// previous target back; a small one, and a target already lower or off,
// are left alone.
func TestTightGCWindow(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	for _, c := range []struct {
		name         string
		before, n    int
		during, want int
	}{
		{"big change", 100, bigChange, tightGCPercent, 100},
		{"small change", 100, bigChange - 1, 100, 100},
		{"GOGC=200", 200, bigChange, tightGCPercent, 200},
		{"GOGC=10 already lower", 10, bigChange, 10, 10},
		{"GOGC=off", -1, bigChange, -1, -1},
	} {
		debug.SetGCPercent(c.before)
		undo := tightGC(c.n)
		if got := gcPercent(); got != c.during {
			t.Errorf("%s: GOGC %d during the change, want %d", c.name, got, c.during)
		}
		undo()
		if got := gcPercent(); got != c.want {
			t.Errorf("%s: GOGC %d after the change, want %d", c.name, got, c.want)
		}
	}
}
