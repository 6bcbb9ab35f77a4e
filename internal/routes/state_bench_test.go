package routes

import (
	"io"
	"os"
	"testing"
	"time"

	"github.com/linkbeat/linkbeat/internal/statefile"
)

// BenchmarkSaveOnReactionPath is what writing the record costs before a
// carrier loss's deletes, with and without the fsync the record no longer
// has (see state.save), in a state directory on the test's disk.
// Run: go test -run '^$' -bench SaveOnReactionPath ./internal/routes/
func BenchmarkSaveOnReactionPath(b *testing.B) {
	st := &state{Version: stateVersion, Links: map[string]*linkState{
		linkID("eth0", 2): {Ifname: "eth0", Ifindex: 2, Since: time.Now().UTC(), Routes: []*routeEntry{
			{Route: route4("203.0.113.0/24", hop(2, "10.1.0.254", 1))},
			{Route: route4("0.0.0.0/0", hop(2, "10.1.0.254", 1), hop(3, "10.2.0.254", 2)), Removed: []Hop{hop(2, "10.1.0.254", 1)}, Merge: true},
		}},
	}}
	for _, c := range []struct {
		name    string
		durable bool
	}{{"rename", false}, {"rename+fsync", true}} {
		b.Run(c.name, func(b *testing.B) {
			dir := b.TempDir()
			o := statefile.Options{DirPerm: 0o700, FilePerm: 0o600, Compact: true, Durable: c.durable}
			for b.Loop() {
				if err := statefile.Write(dir, stateFile, st, o); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRecordOnTmpfs is the journal entry LinkDown appends, and the
// whole snapshot the other changes write, in a state directory on tmpfs
// (/dev/shm) as deployed on /run; encode alone beside them.
// Run: go test -run '^$' -bench RecordOnTmpfs ./internal/routes/
// shmDir is a directory on /dev/shm, a tmpfs as /run is, removed after b.
func shmDir(b *testing.B) string {
	b.Helper()
	dir, err := os.MkdirTemp("/dev/shm", "lbbench")
	if err != nil {
		b.Skip("no /dev/shm")
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func BenchmarkRecordOnTmpfs(b *testing.B) {
	st := &state{Version: stateVersion, Links: map[string]*linkState{
		linkID("eth0", 2): {Ifname: "eth0", Ifindex: 2, Since: time.Now().UTC(), Routes: []*routeEntry{
			{Route: route4("203.0.113.0/24", hop(2, "10.1.0.254", 1))},
			{Route: route4("198.51.100.0/24", hop(2, "10.1.0.254", 1))},
			{Route: route4("0.0.0.0/0", hop(2, "10.1.0.254", 1), hop(3, "10.2.0.254", 2)), Removed: []Hop{hop(2, "10.1.0.254", 1)}, Merge: true},
		}},
	}}
	b.Run("save", func(b *testing.B) {
		dir := shmDir(b)
		for b.Loop() {
			if err := st.save(dir); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("journal", func(b *testing.B) {
		dir := shmDir(b)
		j, err := openJournal(dir, 0)
		if err != nil {
			b.Fatal(err)
		}
		defer j.close()
		ls := st.Links[linkID("eth0", 2)]
		for b.Loop() {
			if err := j.append(linkID("eth0", 2), ls); err != nil {
				b.Fatal(err)
			}
			if j.seq%1024 == 0 {
				j.empty()
			}
		}
	})
	b.Run("encode", func(b *testing.B) {
		for b.Loop() {
			if err := st.encode(io.Discard); err != nil {
				b.Fatal(err)
			}
		}
	})
}
