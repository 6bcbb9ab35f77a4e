package statefile

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestWriteRead(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	var v map[string]int
	if found, err := Read(dir, "x.json", &v); found || err != nil || v != nil {
		t.Fatalf("missing file: found %v, err %v, v %v", found, err, v)
	}
	for _, o := range []Options{{DirPerm: 0o700, FilePerm: 0o600, Durable: true}, {DirPerm: 0o700, FilePerm: 0o644}} {
		if err := Write(dir, "x.json", map[string]int{"a": int(o.FilePerm)}, o); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(filepath.Join(dir, "x.json"))
		if err != nil || fi.Mode().Perm() != o.FilePerm {
			t.Fatalf("mode %v, %v; want %v", fi.Mode().Perm(), err, o.FilePerm)
		}
		v = nil
		if found, err := Read(dir, "x.json", &v); !found || err != nil || v["a"] != int(o.FilePerm) {
			t.Fatalf("read back: found %v, err %v, v %v", found, err, v)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*.tmp*")); len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
	if err := os.WriteFile(filepath.Join(dir, "bad.json"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if found, err := Read(dir, "bad.json", &v); !found || err == nil {
		t.Fatalf("bad file: found %v, err %v", found, err)
	}
}

// A missing state directory is made with DirPerm on the first write; a
// write whose encoding fails leaves the old file and no temporary one.
func TestWriteFuncMakesDirAndCleansUp(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "state")
	o := Options{DirPerm: 0o700, FilePerm: 0o600}
	if err := Write(dir, "x.json", 1, o); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("state dir: %v, %v; want mode 0700", fi, err)
	}
	bad := errors.New("no")
	err := WriteFunc(dir, "x.json", func(w io.Writer) error {
		w.Write([]byte("2"))
		return bad
	}, o)
	if !errors.Is(err, bad) {
		t.Fatalf("err %v, want %v", err, bad)
	}
	var v int
	if found, err := Read(dir, "x.json", &v); !found || err != nil || v != 1 {
		t.Fatalf("after a failed write: %v %v %v, want the old 1", v, found, err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*.tmp*")); len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}
