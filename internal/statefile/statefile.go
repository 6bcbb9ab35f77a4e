// Package statefile reads and replaces the small JSON files linkbeat keeps
// in its state directory (withdrawn routes, bonds' last failovers, the
// daemon's live sources), so that a reader never sees half a file.
package statefile

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// Options say how a file is written.
type Options struct {
	// DirPerm creates the directory when missing; FilePerm is the file's.
	DirPerm, FilePerm fs.FileMode
	// Durable fsyncs the file and the directory, so a crash after Write
	// returns cannot lose it.
	Durable bool
	// Compact writes JSON without indentation, for files that grow with
	// what they hold (one entry per withdrawn route).
	Compact bool
}

// Write replaces dir/name with v as JSON (indented unless Compact): a
// temporary file renamed over the old one.
func Write(dir, name string, v any, o Options) error {
	var b []byte
	var err error
	if o.Compact {
		b, err = json.Marshal(v)
	} else {
		b, err = json.MarshalIndent(v, "", "  ")
	}
	if err != nil {
		return fmt.Errorf("encode %s: %w", name, err)
	}
	return WriteFunc(dir, name, func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	}, o)
}

// WriteFunc replaces dir/name as Write does, with what encode writes: a
// large file can be written piece by piece instead of from one buffer
// holding all of it (and json.Marshal's copy of that).
func WriteFunc(dir, name string, encode func(io.Writer) error, o Options) error {
	// The directory is made when it is missing, not checked before every
	// write: the route record is written on the reaction path, where each
	// system call counts.
	f, err := os.CreateTemp(dir, name+".tmp*")
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, o.DirPerm); err != nil {
			return fmt.Errorf("create state dir: %w", err)
		}
		f, err = os.CreateTemp(dir, name+".tmp*")
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	tmp := f.Name()
	done := false
	defer func() {
		if !done {
			f.Close()
			os.Remove(tmp)
		}
	}()
	// Small: most records are a few routes, and a large buffer costs more
	// to allocate than the writes it saves.
	w := bufio.NewWriterSize(f, 8<<10)
	if err := encode(w); err != nil {
		return fmt.Errorf("encode %s: %w", name, err)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if o.Durable {
		if err := f.Sync(); err != nil {
			return fmt.Errorf("sync %s: %w", name, err)
		}
	}
	// CreateTemp made the file 0600.
	if o.FilePerm != 0o600 {
		if err := f.Chmod(o.FilePerm); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return fmt.Errorf("replace %s: %w", name, err)
	}
	done = true
	if !o.Durable {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync state dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync state dir: %w", err)
	}
	return nil
}

// Read decodes dir/name into v. A missing file is not an error: found is
// false and v is untouched.
func Read(dir, name string, v any) (found bool, err error) {
	path := filepath.Join(dir, name)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read %s: %w", path, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return true, fmt.Errorf("parse %s: %w", path, err)
	}
	return true, nil
}
