package deploy

import (
	"bytes"
	"debug/elf"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/linkbeat/linkbeat/internal/config"
)

// checkMode fails unless path is a regular file with exactly mode.
func checkMode(t *testing.T, path string, mode fs.FileMode) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Error(err)
		return
	}
	if !st.Mode().IsRegular() || st.Mode().Perm() != mode {
		t.Errorf("%s: mode %v, want a regular file with %v", path, st.Mode(), mode)
	}
}

var execStart = regexp.MustCompile(`(?m)^ExecStart=(\S+)`)

func TestMakeInstall(t *testing.T) {
	unit := repoFile(t, "deploy/systemd/linkbeat.service")
	if _, err := os.Stat(unit); err != nil {
		t.Fatalf("make install installs %s, which is missing: %v", unit, err)
	}
	for _, prefix := range []string{"", "/usr"} {
		name := "PREFIX=" + prefix
		if prefix == "" {
			name, prefix = "default PREFIX", "/usr/local"
		}
		t.Run(name, func(t *testing.T) {
			dest := t.TempDir()
			// BIN: build in the temp dir, not over the bin/linkbeat that
			// other tests may be running.
			args := []string{"install", "DESTDIR=" + dest, "BIN=" + filepath.Join(t.TempDir(), "linkbeat")}
			if name != "default PREFIX" {
				args = append(args, "PREFIX="+prefix)
			}
			if out, err := makeCmd(t, args...); err != nil {
				t.Fatalf("make %s: %v\n%s", strings.Join(args, " "), err, out)
			}

			bin := filepath.Join(dest, prefix, "bin/linkbeat")
			checkMode(t, bin, 0o755)
			if f, err := elf.Open(bin); err != nil {
				t.Errorf("installed binary: %v", err)
			} else {
				f.Close()
			}
			if out, err := exec.Command(bin, "version").CombinedOutput(); err != nil {
				t.Errorf("installed %s version: %v\n%s", bin, err, out)
			}

			// The unit as written, but starting the binary where it went.
			installedUnit := filepath.Join(dest, prefix, "lib/systemd/system/linkbeat.service")
			checkMode(t, installedUnit, 0o644)
			got, err := os.ReadFile(installedUnit)
			if err != nil {
				t.Fatal(err)
			}
			src, _ := os.ReadFile(unit)
			m := execStart.FindSubmatch(got)
			if m == nil || string(m[1]) != prefix+"/bin/linkbeat" {
				t.Errorf("installed unit's ExecStart runs %q, want %s/bin/linkbeat", m, prefix)
			}
			srcStart := execStart.FindSubmatch(src)
			if srcStart == nil {
				t.Fatalf("%s has no ExecStart", unit)
			}
			if want := bytes.Replace(src, srcStart[0], []byte("ExecStart="+prefix+"/bin/linkbeat"), 1); !bytes.Equal(got, want) {
				t.Errorf("installed unit differs from %s beyond ExecStart's binary path:\n%s", unit, got)
			}
			checkMode(t, filepath.Join(dest, prefix, "lib/sysusers.d/linkbeat.conf"), 0o644)
			// `man linkbeat` and completions, generated from the CLI.
			page := filepath.Join(dest, prefix, "share/man/man1/linkbeat.1")
			checkMode(t, page, 0o644)
			if b, _ := os.ReadFile(page); !bytes.HasPrefix(b, []byte(".TH LINKBEAT 1 ")) || !bytes.Contains(b, []byte("config.file")) {
				t.Errorf("%s is not linkbeat's man page:\n%.300s", page, b)
			}
			for _, c := range []string{"share/bash-completion/completions/linkbeat", "share/zsh/site-functions/_linkbeat"} {
				p := filepath.Join(dest, prefix, c)
				checkMode(t, p, 0o644)
				if b, _ := os.ReadFile(p); !bytes.Contains(b, []byte("--completion-bash")) {
					t.Errorf("%s is not a kingpin completion script:\n%s", p, b)
				}
			}

			// The config is the embedded defaults, so the unit starts as
			// installed; the example sits beside it. Both valid; the config
			// is kept once it is edited.
			example := filepath.Join(dest, "etc/linkbeat/linkbeat.example.yaml")
			checkMode(t, example, 0o644)
			exampleBody, err := os.ReadFile(example)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(exampleBody, readFile(t, "docs/linkbeat.example.yaml")) {
				t.Error("the installed example is not docs/linkbeat.example.yaml")
			}
			cfg := filepath.Join(dest, "etc/linkbeat/linkbeat.yaml")
			checkMode(t, cfg, 0o644)
			body, err := os.ReadFile(cfg)
			if err != nil {
				t.Fatal(err)
			}
			c, err := config.Parse(body)
			if err != nil {
				t.Fatalf("installed config: %v", err)
			}
			if len(c.Interfaces) != 0 || len(c.Bonds) != 0 || !reflect.ValueOf(c.Defaults).IsZero() {
				t.Errorf("the installed config is not the embedded defaults: %+v", c)
			}
			if _, err := config.Parse(exampleBody); err != nil {
				t.Errorf("installed example: %v", err)
			}
			edited := append(body, []byte("# edited by the operator\n")...)
			if err := os.WriteFile(cfg, edited, 0o640); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(cfg, 0o640); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(bin, 0o700); err != nil {
				t.Fatal(err)
			}
			out, err := makeCmd(t, args...)
			if err != nil {
				t.Fatalf("second make install: %v\n%s", err, out)
			}
			if after, _ := os.ReadFile(cfg); !bytes.Equal(after, edited) {
				t.Error("a second make install overwrote the edited config")
			}
			checkMode(t, cfg, 0o640) // the operator's mode stays too
			checkMode(t, bin, 0o755) // while the binary is installed afresh
			if !strings.Contains(out, "kept the existing") {
				t.Errorf("the second install did not say it kept the config:\n%s", out)
			}
		})
	}
}
