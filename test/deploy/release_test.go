package deploy

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestMakeRelease runs `make release` for this machine's architecture and
// checks the tarball's contents, that its binary runs, and the sums.
func TestMakeRelease(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "dist")
	arch := strings.TrimSpace(goEnv(t, "GOARCH"))
	if out, err := makeCmd(t, "release", "RELEASE_ARCHES="+arch, "RELEASE_DIR="+dir); err != nil {
		t.Fatalf("make release: %v\n%s", err, out)
	}
	tarballs, _ := filepath.Glob(filepath.Join(dir, "linkbeat-*.linux-"+arch+".tar.gz"))
	debs, _ := filepath.Glob(filepath.Join(dir, "linkbeat_*_"+arch+".deb"))
	if len(tarballs) != 1 || len(debs) != 1 {
		t.Fatalf("make release made tarballs %v and packages %v, want one of each", tarballs, debs)
	}
	top := strings.TrimSuffix(filepath.Base(tarballs[0]), ".tar.gz")
	dest := t.TempDir()
	names := untar(t, tarballs[0], dest)
	for _, f := range []string{"linkbeat", "linkbeat.1", "completions/linkbeat.bash", "completions/_linkbeat",
		"systemd/linkbeat.service", "systemd/linkbeat.sysusers", "linkbeat.yaml", "linkbeat.example.yaml", "LICENSE", "README.md"} {
		if !slices.Contains(names, top+"/"+f) {
			t.Errorf("%s has no %s/%s: %v", filepath.Base(tarballs[0]), top, f, names)
		}
	}
	version := strings.TrimPrefix(top, "linkbeat-")
	version = strings.TrimSuffix(version, ".linux-"+arch)
	out, err := exec.Command(filepath.Join(dest, top, "linkbeat"), "--version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "linkbeat, version "+version+" ") {
		t.Errorf("the released binary's --version: %v\n%s\nwant version %s", err, out, version)
	}

	sums, err := os.ReadFile(filepath.Join(dir, "sha256sums.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range append(tarballs, debs...) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		if line := hex.EncodeToString(sum[:]) + "  " + filepath.Base(f); !strings.Contains(string(sums), line+"\n") {
			t.Errorf("sha256sums.txt has no line %q:\n%s", line, sums)
		}
	}
}

func goEnv(t *testing.T, name string) string {
	t.Helper()
	out, err := exec.Command("go", "env", name).Output()
	if err != nil {
		t.Fatalf("go env %s: %v", name, err)
	}
	return string(out)
}

// untar extracts a .tar.gz into dest and returns its entries' names.
func untar(t *testing.T, path, dest string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, strings.TrimSuffix(h.Name, "/"))
		p := filepath.Join(dest, filepath.FromSlash(h.Name))
		if !strings.HasPrefix(p, dest+string(filepath.Separator)) {
			t.Fatalf("tar entry %s leaves the directory", h.Name)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(p, 0o755)
		case tar.TypeReg:
			var b []byte
			if b, err = io.ReadAll(tr); err == nil {
				err = os.WriteFile(p, b, os.FileMode(h.Mode).Perm())
			}
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}
