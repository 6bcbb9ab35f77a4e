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
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
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
//
// The route record's snapshot is written after every restore, and on the
// reaction path when the record has no journal, so this makes the
// fewest system calls it can: open, write, close and rename, with no
// stat of the directory (made only when missing), no chmod of a 0600
// file, and none of os.File's poller set-up or os.Rename's stat.
func WriteFunc(dir, name string, encode func(io.Writer) error, o Options) error {
	tmp := filepath.Join(dir, name+".tmp"+strconv.FormatUint(rand.Uint64(), 36))
	fd, err := openExcl(tmp)
	if errors.Is(err, unix.ENOENT) {
		if err := os.MkdirAll(dir, o.DirPerm); err != nil {
			return fmt.Errorf("create state dir: %w", err)
		}
		fd, err = openExcl(tmp)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	done := false
	defer func() {
		if !done {
			unix.Close(fd)
			unix.Unlink(tmp)
		}
	}()
	// Small: most records are a few routes, and a large buffer costs more
	// to allocate than the writes it saves.
	w := bufio.NewWriterSize(FDWriter(fd), 8<<10)
	if err := encode(w); err != nil {
		return fmt.Errorf("encode %s: %w", name, err)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if o.Durable {
		if err := ignoringEINTR(func() error { return unix.Fsync(fd) }); err != nil {
			return fmt.Errorf("sync %s: %w", name, err)
		}
	}
	if o.FilePerm != 0o600 {
		if err := unix.Fchmod(fd, uint32(o.FilePerm)); err != nil {
			return fmt.Errorf("write %s: chmod: %w", name, err)
		}
	}
	done = true
	if err := unix.Close(fd); err != nil {
		unix.Unlink(tmp)
		return fmt.Errorf("write %s: close: %w", name, err)
	}
	if err := unix.Rename(tmp, filepath.Join(dir, name)); err != nil {
		unix.Unlink(tmp)
		return fmt.Errorf("replace %s: %w", name, err)
	}
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

// openExcl creates path, 0600 (as os.CreateTemp does).
func openExcl(path string) (int, error) {
	var fd int
	err := ignoringEINTR(func() error {
		var err error
		fd, err = unix.Open(path, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o600)
		return err
	})
	if err != nil {
		return -1, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	return fd, nil
}

// FDWriter writes to a file descriptor, all of p or an error, without
// os.File's poller set-up: the route journal writes through it on the
// reaction path.
type FDWriter int

func (fd FDWriter) Write(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		m, err := unix.Write(int(fd), p[n:])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return n, err
		}
		n += m
	}
	return n, nil
}

func ignoringEINTR(f func() error) error {
	for {
		if err := f(); !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}
