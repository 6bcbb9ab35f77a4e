package actions

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/linkbeat/linkbeat/internal/carrier"
	"github.com/linkbeat/linkbeat/internal/config"
	"github.com/linkbeat/linkbeat/internal/routes"
	"github.com/linkbeat/linkbeat/internal/script"
)

type call struct {
	what    string
	ifindex int
}

type fakeRoutes struct{ calls *[]call }

func (f fakeRoutes) LinkDown(i int, _ string) (routes.Result, error) {
	*f.calls = append(*f.calls, call{"routes down", i})
	return routes.Result{Withdrawn: 1}, nil
}
func (f fakeRoutes) LinkUp(i int, _ string) (routes.Result, error) {
	*f.calls = append(*f.calls, call{"routes up", i})
	return routes.Result{Restored: 1}, nil
}

type fakeScripts struct{ calls *[]call }

func (f fakeScripts) Submit(j script.Job) {
	w := "script down"
	if j.Up {
		w = "script up"
	}
	*f.calls = append(*f.calls, call{w, 0})
}

func newActions(t *testing.T, doc string) (*Actions, *[]call) {
	t.Helper()
	c, err := config.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	var calls []call
	a := New(slog.New(slog.NewTextHandler(io.Discard, nil)), func() *config.Config { return c },
		fakeRoutes{&calls}, fakeScripts{&calls}, func() time.Duration { return 0 })
	return a, &calls
}

func ev(up bool) carrier.Event { return carrier.Event{Ifindex: 3, Ifname: "eth1", Up: up} }

func TestRoutesBeforeScript(t *testing.T) {
	a, calls := newActions(t, "defaults: {script: /bin/true}\n")
	a.Handle(Input{Event: ev(true), Initial: true})
	a.Handle(Input{Event: ev(false)})
	a.Handle(Input{Event: ev(true)})
	want := []call{{"routes down", 3}, {"script down", 0}, {"routes up", 3}, {"script up", 0}}
	if len(*calls) != len(want) {
		t.Fatalf("calls %v, want %v", *calls, want)
	}
	for i := range want {
		if (*calls)[i] != want[i] {
			t.Fatalf("calls %v, want %v", *calls, want)
		}
	}
}

func TestRoutesKeepSkipsRouteActor(t *testing.T) {
	a, calls := newActions(t, "interfaces: {eth1: {routes: keep}}\n")
	a.Handle(Input{Event: ev(true), Initial: true})
	a.Handle(Input{Event: ev(false)})
	if len(*calls) != 0 {
		t.Fatalf("routes: keep still called %v", *calls)
	}
}

func TestInitialDownWithdraws(t *testing.T) {
	a, calls := newActions(t, "")
	a.Handle(Input{Event: ev(false), Initial: true})
	if len(*calls) != 1 || (*calls)[0].what != "routes down" {
		t.Fatalf("calls %v", *calls)
	}
}
