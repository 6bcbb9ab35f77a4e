package agent

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/linkbeat/linkbeat/internal/actions"
	"github.com/linkbeat/linkbeat/internal/carrier"
	"github.com/linkbeat/linkbeat/internal/config"
	"github.com/linkbeat/linkbeat/internal/registry"
	"github.com/linkbeat/linkbeat/internal/source"
)

// The quit-time scripts are the down scripts of the monitored links the
// actions treat as up: not those treated as down, not those that left the
// monitored set, and none when the config says not to.
func TestExitScriptsForLinksTreatedUp(t *testing.T) {
	parse := func(doc string) *config.Config {
		t.Helper()
		c, err := config.Parse([]byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	cfg := parse("defaults: {script: /bin/true}\n")
	act := actions.New(slog.New(slog.DiscardHandler), func() *config.Config { return cfg }, nil, nil, func() time.Duration { return 0 }, nil)
	ev := func(idx int, name string, up bool) carrier.Event {
		return carrier.Event{Ifindex: idx, Ifname: name, Up: up}
	}
	act.Handle(actions.Input{Kind: actions.Initial, Event: ev(2, "eth1", true)})
	act.Handle(actions.Input{Kind: actions.Initial, Event: ev(3, "eth2", false)})
	act.Handle(actions.Input{Kind: actions.Initial, Event: ev(4, "eth3", true)})
	act.Handle(actions.Input{Kind: actions.Released, Event: ev(4, "eth3", true)})
	act.Handle(actions.Input{Kind: actions.Initial, Event: ev(5, "eth4", true)})
	act.Handle(actions.Input{Kind: actions.Carrier, Event: ev(5, "eth4", false)})
	act.Handle(actions.Input{Kind: actions.Initial, Event: ev(6, "eth5", false)})
	act.Handle(actions.Input{Kind: actions.Carrier, Event: ev(6, "eth5", true)})
	// Outside the monitored set: never in the policy.
	act.Handle(actions.Input{Kind: actions.Unmonitored, Event: ev(7, "eth6", true)})

	jobs := exitJobs(cfg, act.Up())
	if len(jobs) != 2 {
		t.Fatalf("quit-time jobs %+v, want eth1's and eth5's", jobs)
	}
	for i, want := range []struct{ name, idx string }{{"eth1", "2"}, {"eth5", "6"}} {
		j := jobs[i]
		if j.Ifname != want.name || j.Up || j.Path != "/bin/true" || j.Env["IFINDEX"] != want.idx || j.Env["SOURCE"] != "exit" {
			t.Errorf("job %d: %+v, want %s's down script (IFINDEX %s, SOURCE exit)", i, j, want.name, want.idx)
		}
	}
	if jobs := exitJobs(parse("defaults: {script: /bin/true}\nscript_on_exit: false\n"), act.Up()); len(jobs) != 0 {
		t.Fatalf("script_on_exit: false still runs %+v", jobs)
	}
}

// systemd hears how many links the source monitors, once the start-up
// inputs queued before have been carried out.
func TestReadyCountsTheSourcesMonitoredLinks(t *testing.T) {
	got := -1
	p := &pipeline{a: &Agent{src: &source.Source{}, cfg: Config{Hooks: Hooks{Ready: func(n int, _ source.Features) { got = n }}}},
		log: slog.New(slog.DiscardHandler), in: make(chan actions.Input, 4)}
	p.ready(context.Background(), source.Startup{
		Monitored:   []registry.Link{{Index: 2, Name: "eth1"}, {Index: 3, Name: "eth2"}},
		Unmonitored: []registry.Link{{Index: 4, Name: "eth3"}},
	})
	if len(p.in) != 1 {
		t.Fatalf("queued %d inputs, want the barrier alone", len(p.in))
	}
	if got != -1 {
		t.Fatal("ready before the queued inputs were carried out")
	}
	(<-p.in).Barrier()
	if got != 2 {
		t.Fatalf("ready with %d links, want 2", got)
	}
}
