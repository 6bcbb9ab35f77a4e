package agent

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/linkbeat/linkbeat/internal/config"
	"github.com/linkbeat/linkbeat/internal/source"
)

func TestReloaderAppliesOrKeeps(t *testing.T) {
	path := filepath.Join(t.TempDir(), "linkbeat.yaml")
	write := func(doc string) {
		if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("interfaces: {eth0: {}}\n")
	load := func() (*config.Config, error) { return config.Load(path) }
	first, err := load()
	if err != nil {
		t.Fatal(err)
	}
	var (
		sets    [][]string
		reloads []source.Reload
		results []bool
	)
	r := &reloader{load: load, file: path, live: newLiveConfig(first),
		apply: func(_ context.Context, rl source.Reload) error {
			if rl.SetInterfaces {
				sets = append(sets, rl.Interfaces)
			}
			reloads = append(reloads, rl)
			return nil
		},
		observe: func(ok bool, _ time.Time) { results = append(results, ok) },
		log:     slog.New(slog.NewTextHandler(io.Discard, nil))}

	// Same interfaces, new delay: no change of the monitored set.
	write("interfaces: {eth0: {down_delay: 50ms}}\n")
	if !r.reload(context.Background()) || len(sets) != 0 || r.live.get().For("eth0").Rules.DownDelay != 50*time.Millisecond {
		t.Fatalf("reload 1: sets %v, down delay %v", sets, r.live.get().For("eth0").Rules.DownDelay)
	}
	// A new interface: the set changes.
	write("interfaces: {eth0: {}, eth1: {}}\n")
	if !r.reload(context.Background()) || len(sets) != 1 || !slices.Equal(sets[0], []string{"eth0", "eth1"}) {
		t.Fatalf("reload 2: sets %v", sets)
	}
	// Broken: refused, the config in force stays.
	inForce := r.live.get()
	write("interfaces: {eth0: {down_delay: soon}}\n")
	if r.reload(context.Background()) || r.live.get() != inForce {
		t.Fatal("a broken config replaced the running one")
	}
	if !slices.Equal(results, []bool{true, true, false}) || len(reloads) != 2 || !reloads[0].Notify || !reloads[1].Notify {
		t.Fatalf("results %v, reloads %v", results, reloads)
	}
}
