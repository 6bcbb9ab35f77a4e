package routes

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/linkbeat/linkbeat/internal/statefile"
)

// The record of what is withdrawn is a snapshot (routes.json), written
// whole to a temporary file and renamed into place, and a journal
// (routes.journal) of the link records written since.
//
// A withdrawal appends its link's record to the journal, with one write
// to a file held open, before its deletes: creating, closing and renaming
// a file cost 40-130 µs there, a third of the daemon's reaction. Every
// other change writes a snapshot and empties the journal; so does a clean
// exit, which removes it.
//
// An entry is a line, with a newline before and after it. An entry the
// daemon died writing is cut short: it never reached its deletes, and the
// newline that opens the next one ends it, so it cannot swallow a later
// one. Loading skips it. Each entry has a sequence number; the snapshot
// names the last one it holds, so entries it already holds (a snapshot
// written just before the daemon died, the journal not yet emptied) are
// not applied twice, and the journal is read before the snapshot: a
// snapshot written between the two reads holds what was read.
const journalFile = "routes.journal"

type journal struct {
	path string
	fd   int    // -1 when closed: records go into snapshots
	seq  uint64 // the last entry's
	used bool   // entries since the last empty
	w    *bufio.Writer
}

// journalEntry is one journal line.
type journalEntry struct {
	Seq  uint64     `json:"seq"`
	ID   string     `json:"id"`
	Link *linkState `json:"link"`
}

// openJournal opens dir's journal for appending, making dir if needed.
func openJournal(dir string, seq uint64) (*journal, error) {
	if err := os.MkdirAll(dir, stateOptions.DirPerm); err != nil {
		return nil, fmt.Errorf("route journal: %w", err)
	}
	path := filepath.Join(dir, journalFile)
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_APPEND|unix.O_CREAT|unix.O_CLOEXEC, uint32(stateOptions.FilePerm))
	if err != nil {
		return nil, fmt.Errorf("route journal: %w", &fs.PathError{Op: "open", Path: path, Err: err})
	}
	var st unix.Stat_t
	used := unix.Fstat(fd, &st) != nil || st.Size > 0
	return &journal{path: path, fd: fd, seq: seq, used: used, w: bufio.NewWriterSize(statefile.FDWriter(fd), 64<<10)}, nil
}

// append adds id's record. The caller saves a snapshot instead when it
// fails.
func (j *journal) append(id string, ls *linkState) error {
	j.w.Reset(statefile.FDWriter(j.fd))
	ew := &errWriter{w: j.w}
	b := strconv.AppendUint([]byte("\n{\"seq\":"), j.seq+1, 10)
	ew.write(append(appendString(append(b, `,"id":`...), id), `,"link":`...))
	encodeLink(ew, ls)
	ew.write([]byte("}\n"))
	if ew.err == nil {
		ew.err = j.w.Flush()
	}
	j.used = true // even a failed write may have left part of a line
	if ew.err != nil {
		return fmt.Errorf("route journal: %w", ew.err)
	}
	j.seq++
	return nil
}

// empty drops the entries, once a snapshot holds them.
func (j *journal) empty() error {
	if !j.used {
		return nil
	}
	if err := unix.Ftruncate(j.fd, 0); err != nil {
		return fmt.Errorf("route journal: truncate %s: %w", j.path, err)
	}
	j.used = false
	return nil
}

// close closes the journal and removes it: only a snapshot is left.
func (j *journal) close() error {
	err := unix.Close(j.fd)
	j.fd = -1
	if rerr := os.Remove(j.path); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
		err = errors.Join(err, rerr)
	}
	return err
}

// readJournal reads dir's journal: every whole entry, in order, and how
// many lines were skipped as cut short.
func readJournal(dir string) (entries []journalEntry, skipped int, err error) {
	b, err := os.ReadFile(filepath.Join(dir, journalFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("route journal: %w", err)
	}
	for line := range bytes.SplitSeq(b, []byte{'\n'}) {
		if len(line) == 0 {
			continue
		}
		var e journalEntry
		if json.Unmarshal(line, &e) != nil || e.Seq == 0 || e.ID == "" || e.Link == nil {
			skipped++
			continue
		}
		entries = append(entries, e)
	}
	return entries, skipped, nil
}
