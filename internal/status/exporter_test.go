package status

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func exporterFixture(pid int) *Exporter {
	next := now.Add(8 * time.Second)
	return &Exporter{PID: pid, Listeners: []Listener{
		{Address: "127.0.0.1:9089", Since: now.Add(-time.Minute), Failures: 5, NextTry: &next,
			Error: "listen tcp 127.0.0.1:9089: bind: cannot assign requested address", Hint: "is loopback up?"},
		{Address: "10.0.0.1:9089", Listening: true, Since: now.Add(-time.Minute)},
	}}
}

func TestStatusShowsTheRunningDaemonsExporter(t *testing.T) {
	in := fixture()
	in.Running, in.Exporter = true, exporterFixture(in.Sources.PID)
	r := Build(in)
	if len(r.Daemon.Exporter) != 2 || r.Daemon.Exporter[0].Listening || !r.Daemon.Exporter[1].Listening {
		t.Fatalf("exporter in the report: %+v", r.Daemon.Exporter)
	}
	var buf bytes.Buffer
	if err := WriteText(&buf, r, now); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"metrics:   NOT listening on 127.0.0.1:9089 since 2026-11-21T11:59:00Z: listen tcp 127.0.0.1:9089: bind: cannot assign requested address (is loopback up?); 5 failed attempts, next at 2026-11-21T12:00:08Z\n",
		"metrics:   listening on 10.0.0.1:9089\n",
	} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("status text lacks %q:\n%s", want, buf.String())
		}
	}
}

// A record from another run, or from a daemon no longer running, says
// nothing of now.
func TestStatusIgnoresAStaleExporterRecord(t *testing.T) {
	for name, in := range map[string]Inputs{
		"other pid": func() Inputs {
			in := fixture()
			in.Running, in.Exporter = true, exporterFixture(in.Sources.PID+1)
			return in
		}(),
		"not running": func() Inputs { in := fixture(); in.Exporter = exporterFixture(in.Sources.PID); return in }(),
	} {
		r := Build(in)
		var buf bytes.Buffer
		if err := WriteText(&buf, r, now); err != nil {
			t.Fatal(err)
		}
		if r.Daemon.Exporter != nil || strings.Contains(buf.String(), "metrics:") {
			t.Errorf("%s: stale exporter shown: %+v\n%s", name, r.Daemon.Exporter, buf.String())
		}
	}
}

func TestExporterRoundTripAndDown(t *testing.T) {
	dir := t.TempDir()
	if e, err := ReadExporter(dir); e != nil || err != nil {
		t.Fatalf("empty dir: %v %v", e, err)
	}
	if err := WriteExporter(dir, *exporterFixture(7)); err != nil {
		t.Fatal(err)
	}
	got, err := ReadExporter(dir)
	if err != nil || got.PID != 7 || len(got.Listeners) != 2 || got.Listeners[0].NextTry == nil {
		t.Fatalf("read back %+v, %v", got, err)
	}
	down := got.Down()
	if len(down) != 1 || down[0].Address != "127.0.0.1:9089" {
		t.Fatalf("Down() = %+v", down)
	}
	if (*Exporter)(nil).Down() != nil {
		t.Fatal("a nil record has listeners down")
	}
}
