package routes

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

func snapshotOnly(t *testing.T, dir string) *state {
	t.Helper()
	st := &state{}
	if b, err := os.ReadFile(filepath.Join(dir, stateFile)); err == nil {
		if err := json.Unmarshal(b, st); err != nil {
			t.Fatal(err)
		}
	}
	return st
}

func journalSize(t *testing.T, dir string) int64 {
	t.Helper()
	fi, err := os.Stat(filepath.Join(dir, journalFile))
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// eth0Withdrawn is a manager with a route on eth0 (2), withdrawn, and one
// on eth1 (3).
func eth0Withdrawn(t *testing.T) (*fakeKernel, *Manager, string) {
	t.Helper()
	a := route4("203.0.113.0/24", hop(2, "10.1.0.254", 1))
	b := route4("198.51.100.0/24", hop(3, "10.2.0.254", 1))
	f, m, dir := setup(t, []*Route{a, b}, nil)
	f.setCarrier(2, false)
	mustDown(t, m, 2, "eth0")
	return f, m, dir
}

// A withdrawal's record is a journal entry, not a new snapshot. A daemon
// that dies keeps it there; the next start folds it into the snapshot and
// empties the journal; a clean exit folds it and removes the journal.
func TestJournalHoldsWithdrawalUntilFolded(t *testing.T) {
	f, _, dir := eth0Withdrawn(t)
	if snapshotOnly(t, dir).Links[linkID("eth0", 2)] != nil {
		t.Fatal("the withdrawal wrote a snapshot; want a journal entry")
	}
	if journalSize(t, dir) == 0 {
		t.Fatal("the journal is empty after a withdrawal")
	}

	// m dies here (no Close); the next run starts from the same directory.
	m2 := start(t, f, dir)
	if got := snapshotOnly(t, dir).Links[linkID("eth0", 2)]; got == nil || got.count() != 1 {
		t.Fatalf("after a restart the snapshot holds %+v; want eth0's route", got)
	}
	if n := journalSize(t, dir); n != 0 {
		t.Fatalf("after a restart the journal holds %d bytes; want it emptied", n)
	}
	f.setCarrier(3, false)
	mustDown(t, m2, 3, "eth1")
	if err := m2.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, journalFile)); !os.IsNotExist(err) {
		t.Fatalf("journal after Close: %v; want it removed", err)
	}
	st := snapshotOnly(t, dir)
	if len(st.Links) != 2 || st.Links[linkID("eth1", 3)] == nil {
		t.Fatalf("snapshot after Close holds %v; want eth0 and eth1", st.Links)
	}
	// After Close a change still records, as a snapshot.
	f.setCarrier(2, true)
	mustUp(t, m2, 2, "eth0")
	if got, err := loadState(dir); err != nil || len(got.Links) != 1 {
		t.Fatalf("record after a restore past Close: %v, %v; want eth1 alone", got, err)
	}
}

// An entry the daemon died writing is skipped, and cannot swallow the
// entry written after it; entries a snapshot already holds are not
// applied again.
func TestJournalSkipsCutAndHeldEntries(t *testing.T) {
	f, m, dir := eth0Withdrawn(t)
	jpath := filepath.Join(dir, journalFile)
	whole, err := os.ReadFile(jpath)
	if err != nil {
		t.Fatal(err)
	}
	// A later entry for eth0, cut short, as by a SIGKILL during its write.
	cut := append([]byte(nil), whole[:len(whole)/2]...)
	cut[len("\n{\"seq\":")] = '9'
	fd, err := os.OpenFile(jpath, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fd.Write(cut); err != nil {
		t.Fatal(err)
	}
	fd.Close()
	f.setCarrier(3, false)
	mustDown(t, m, 3, "eth1") // written after the cut entry

	st, jl, err := loadRecord(dir)
	if err != nil {
		t.Fatal(err)
	}
	if jl.applied != 2 || jl.skipped != 1 || len(st.Links) != 2 {
		t.Fatalf("loaded %+v with %d links; want 2 entries applied, 1 skipped, eth0 and eth1", jl, len(st.Links))
	}

	// A snapshot that holds both (its seq is the last entry's) and a
	// journal that was not emptied: nothing is applied twice.
	held := &state{Version: stateVersion, Seq: st.Seq, Links: map[string]*linkState{linkID("eth1", 3): st.Links[linkID("eth1", 3)]}}
	if err := held.save(dir); err != nil {
		t.Fatal(err)
	}
	st2, jl2, err := loadRecord(dir)
	if err != nil {
		t.Fatal(err)
	}
	if jl2.applied != 0 || len(st2.Links) != 1 {
		t.Fatalf("with a snapshot holding every entry: %+v, links %v; want none applied", jl2, st2.Links)
	}
}

// Without a journal (it cannot be opened), each withdrawal writes the
// whole record before its deletes, as before the journal.
func TestNoJournalWritesSnapshot(t *testing.T) {
	a := route4("203.0.113.0/24", hop(2, "10.1.0.254", 1))
	f := newFake()
	f.links[2] = LinkInfo{Name: "eth0", Carrier: true}
	f.put(a)
	dir := t.TempDir()
	// A link to nowhere: reading finds no journal, opening fails.
	if err := os.Symlink(filepath.Join(dir, "gone", "x"), filepath.Join(dir, journalFile)); err != nil {
		t.Fatal(err)
	}
	m := start(t, f, dir)
	if m.j != nil {
		t.Fatal("a journal opened through a link to nowhere")
	}
	f.setCarrier(2, false)
	mustDown(t, m, 2, "eth0")
	if got := snapshotOnly(t, dir).Links[linkID("eth0", 2)]; got == nil {
		t.Fatal("without a journal the withdrawal wrote no snapshot")
	}
}
