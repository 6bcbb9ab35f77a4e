package agent

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/linkbeat/linkbeat/internal/actions"
)

// A liveness tick is answered only once the action goroutine has carried
// out the inputs queued before it; a full queue skips the tick without
// blocking the event loop.
func TestHeartbeatCrossesTheActionQueue(t *testing.T) {
	alive := 0
	p := &pipeline{a: &Agent{cfg: Config{Hooks: Hooks{Alive: func() { alive++ }}}},
		log: slog.New(slog.NewTextHandler(io.Discard, nil)), in: make(chan actions.Input, 1)}
	tick := p.heartbeat()
	tick(context.Background())
	if alive != 0 {
		t.Fatal("answered before the action goroutine took the tick")
	}
	tick(context.Background()) // queue full: skipped, must not block
	(<-p.in).Barrier()
	if alive != 1 || len(p.in) != 0 {
		t.Fatalf("answers %d, queued %d; want 1 and 0", alive, len(p.in))
	}
}

// Without an Alive hook there is no tick at all.
func TestNoHeartbeatWithoutHook(t *testing.T) {
	p := &pipeline{a: &Agent{}}
	if p.heartbeat() != nil || p.ready() != nil {
		t.Fatal("a tick or ready handler without a hook")
	}
}
