package main

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestHistogramQuantile(t *testing.T) {
	// Buckets 1, 2, 4 (cumulative 2, 6, 8) and 2 more in +Inf: 10 in all.
	h := histogram{count: 10, bounds: []float64{1, 2, 4}, buckets: []uint64{2, 6, 8}}
	for _, c := range []struct{ q, want float64 }{
		{0.1, 0.5},  // rank 1 of the 2 in (0, 1]
		{0.5, 1.75}, // rank 5: 3 of the 4 in (1, 2]
		{0.8, 4},    // rank 8: the top of (2, 4]
		{0.99, 4},   // in +Inf: the highest finite bound
	} {
		if got := h.quantile(c.q); got != c.want {
			t.Errorf("quantile(%v) = %v, want %v", c.q, got, c.want)
		}
	}
	if got := (histogram{}).quantile(0.5); got != 0 {
		t.Errorf("empty histogram quantile = %v", got)
	}
	old := histogram{count: 4, bounds: h.bounds, buckets: []uint64{1, 3, 4}}
	d := h.since(old)
	if d.count != 6 || d.buckets[0] != 1 || d.buckets[1] != 3 || d.buckets[2] != 4 {
		t.Errorf("since: %+v", d)
	}
	if s := d.plus(old); s.count != h.count || s.buckets[2] != h.buckets[2] {
		t.Errorf("plus: %+v", s)
	}
}

func TestLastFailure(t *testing.T) {
	t0 := time.Unix(100, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	as := []attempt{
		{start: at(-1), ok: false}, // before the cut: not this trial's
		{start: at(1), ok: true},
		{start: at(2), ok: false},
		{start: at(5), ok: false},
		{start: at(6), ok: true},
	}
	if got := lastFailure(as, t0); got != 5*time.Millisecond {
		t.Errorf("lastFailure = %v, want 5ms", got)
	}
	if got := lastFailure(as[4:], t0); got != 0 {
		t.Errorf("no failure: %v, want 0", got)
	}
}

func TestFlowFigure(t *testing.T) {
	t0 := time.Unix(100, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	good := []attempt{{start: at(-1), ok: true}, {start: at(2), ok: false}, {start: at(4), ok: true}}
	if v, err := flowFigure(probeRun{attempts: good}, t0); err != nil || v != 2 {
		t.Errorf("a trial with a failure at 2 ms then a flow through: %v, %v; want 2", v, err)
	}
	allOK := []attempt{{start: at(1), ok: true}, {start: at(2), ok: true}}
	if v, err := flowFigure(probeRun{attempts: allOK}, t0); err != nil || v != 0 {
		t.Errorf("a trial where every flow got through: %v, %v; want 0", v, err)
	}
	for _, c := range []struct {
		name string
		pr   probeRun
		want string
	}{
		{"prober error", probeRun{attempts: good, err: errors.New("probe poll: EBADF")}, "prober: probe poll: EBADF"},
		{"no attempts", probeRun{}, "no new flow was attempted after the cut"},
		{"only before the cut", probeRun{attempts: good[:1]}, "no new flow was attempted after the cut"},
		{"never through again", probeRun{attempts: []attempt{{start: at(1), ok: true}, {start: at(3), ok: false}}}, "no new flow got through after the last failure at 3ms"},
	} {
		v, err := flowFigure(c.pr, t0)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, %v; want an error %q", c.name, v, err, c.want)
		}
	}
}

func TestStatusField(t *testing.T) {
	s := "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\nvoluntary_ctxt_switches:\t7\nnonvoluntary_ctxt_switches:\t3\n"
	if statusField(s, "VmRSS:") != 1024 || statusField(s, "VmHWM:") != 2048 {
		t.Error("memory fields")
	}
	if statusField(s, "voluntary_ctxt_switches:") != 7 || statusField(s, "nonvoluntary_ctxt_switches:") != 3 {
		t.Error("context switch fields")
	}
}
