package deploy

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// debRoot is a clean root for dpkg --root: an empty dpkg database and
// nothing else until base() adds what a Debian base system would have.
type debRoot struct {
	t    *testing.T
	dir  string
	base map[string]bool // files laid before the install, as "a base system"
}

func newDebRoot(t *testing.T) *debRoot {
	t.Helper()
	r := &debRoot{t: t, dir: t.TempDir(), base: map[string]bool{}}
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates", "usr/bin", "usr/lib/systemd/system", "etc"} {
		if err := os.MkdirAll(r.path(d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"var/lib/dpkg/status", "var/lib/dpkg/available"} {
		if err := os.WriteFile(r.path(f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Merged /usr, as Debian 12.
	if err := os.Symlink("usr/bin", r.path("bin")); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *debRoot) path(rel string) string { return filepath.Join(r.dir, filepath.FromSlash(rel)) }

// addBase copies a host file into the root: systemd-analyze verify --root
// needs the targets the unit's default dependencies name, and the
// commands its ExecStartPre= and ExecReload= run, which Debian's
// Essential packages (coreutils, procps) and systemd provide.
func (r *debRoot) addBase(host, rel string) {
	r.t.Helper()
	b, err := os.ReadFile(host)
	if err != nil {
		r.t.Fatalf("base system file: %v", err)
	}
	st, _ := os.Stat(host)
	if err := os.WriteFile(r.path(rel), b, st.Mode().Perm()); err != nil {
		r.t.Fatal(err)
	}
	r.base[rel] = true
}

func (r *debRoot) dpkg(args ...string) string {
	r.t.Helper()
	// Chrootless: the root has no shell; the maintainer scripts run here
	// with DPKG_ROOT set, as Debian's DPKG_ROOT support does.
	cmd := exec.Command("dpkg", append([]string{"--root=" + r.dir, "--force-script-chrootless", "--log=/dev/null"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.t.Fatalf("dpkg %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// files lists the root's regular files and symlinks, outside dpkg's database.
func (r *debRoot) files() []string {
	r.t.Helper()
	var out []string
	err := filepath.WalkDir(r.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(r.dir, p)
		if rel == "var/lib/dpkg" {
			return filepath.SkipDir
		}
		if !d.IsDir() {
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		r.t.Fatal(err)
	}
	return out
}

func buildDeb(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := makeCmd(t, "deb", "DEB_DIR="+dir); err != nil {
		t.Fatalf("make deb: %v\n%s", err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(dir, "linkbeat_*.deb"))
	if len(debs) != 1 {
		t.Fatalf("make deb made %v, want one linkbeat_*.deb", debs)
	}
	return debs[0]
}

// TestDebPackage builds the .deb with `make deb`, installs it with dpkg
// into a clean root, checks what it installed, verifies the installed unit
// with systemd-analyze, runs the installed binary, then removes and purges
// it and checks that nothing of it is left.
func TestDebPackage(t *testing.T) {
	requireRoot(t, "dpkg installs files owned by root")
	for _, tool := range []string{"dpkg", "dpkg-deb", "systemd-analyze", "systemd-sysusers", "man"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s missing: scripts/install-deps.sh package installs it (make test-deploy does)", tool)
		}
	}
	deb := buildDeb(t)
	r := newDebRoot(t)
	r.dpkg("-i", deb)
	if st := r.dpkg("-s", "linkbeat"); !strings.Contains(st, "Status: install ok installed") {
		t.Fatalf("dpkg -s linkbeat after install:\n%s", st)
	}

	want := map[string]fs.FileMode{
		"usr/bin/linkbeat": 0o755, "usr/lib/systemd/system/linkbeat.service": 0o644,
		"usr/lib/sysusers.d/linkbeat.conf": 0o644, "etc/linkbeat/linkbeat.yaml": 0o644,
		"etc/linkbeat/linkbeat.example.yaml": 0o644, "usr/share/man/man1/linkbeat.1": 0o644,
		"usr/share/bash-completion/completions/linkbeat": 0o644, "usr/share/zsh/vendor-completions/_linkbeat": 0o644,
		"usr/share/doc/linkbeat/copyright": 0o644,
	}
	for rel, mode := range want {
		checkMode(t, r.path(rel), mode)
	}
	if b, _ := os.ReadFile(r.path("etc/linkbeat/linkbeat.yaml")); !bytes.Equal(b, readFile(t, "deploy/linkbeat.yaml")) {
		t.Error("the packaged /etc/linkbeat/linkbeat.yaml is not deploy/linkbeat.yaml (the embedded defaults)")
	}
	conffiles := r.dpkg("-s", "linkbeat")
	for _, c := range []string{"/etc/linkbeat/linkbeat.yaml", "/etc/linkbeat/linkbeat.example.yaml"} {
		if !strings.Contains(conffiles, " "+c+" ") {
			t.Errorf("%s is not a conffile:\n%s", c, conffiles)
		}
	}
	// postinst ran systemd-sysusers in the root: the unit's User= exists.
	if b, _ := os.ReadFile(r.path("etc/passwd")); !bytes.Contains(b, []byte("\nlinkbeat:")) && !bytes.HasPrefix(b, []byte("linkbeat:")) {
		t.Errorf("postinst created no linkbeat user in the root's /etc/passwd:\n%s", b)
	}

	// The installed unit as systemd reads it, against the root; any
	// output is a failure (verify only warns on unknown keys).
	targets, _ := filepath.Glob("/usr/lib/systemd/system/*.target")
	for _, tg := range targets {
		r.addBase(tg, "usr/lib/systemd/system/"+filepath.Base(tg))
	}
	for _, c := range []string{"install", "chown", "kill"} {
		p, err := exec.LookPath(c)
		if err != nil {
			t.Fatal(err)
		}
		r.addBase(p, "usr/bin/"+c)
	}
	cmd := exec.Command("systemd-analyze", "verify", "--root="+r.dir, "linkbeat.service")
	var verr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &verr, &verr
	if err := cmd.Run(); err != nil || verr.Len() > 0 {
		t.Errorf("systemd-analyze verify --root the installed linkbeat.service: %v\n%s", err, verr.String())
	}
	if u, _ := os.ReadFile(r.path("usr/lib/systemd/system/linkbeat.service")); !bytes.Contains(u, []byte("\nExecStart=/usr/bin/linkbeat run --config.file=/etc/linkbeat/linkbeat.yaml\n")) {
		t.Errorf("the installed unit does not run /usr/bin/linkbeat with the packaged config:\n%s", u)
	}

	// The static binary runs inside the root, with nothing else there.
	out, err := exec.Command("chroot", r.dir, "/usr/bin/linkbeat", "--version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "linkbeat, version ") {
		t.Errorf("chroot ROOT /usr/bin/linkbeat --version: %v\n%s", err, out)
	}
	man, err := exec.Command("man", "-l", r.path("usr/share/man/man1/linkbeat.1")).Output()
	if err != nil || !strings.Contains(string(man), "linkbeat - eBPF-accelerated link monitor") || !strings.Contains(string(man), "--config.file") {
		t.Errorf("man -l the installed page: %v\n%s", err, man)
	}

	// Remove keeps the operator's conffiles; purge takes them too. Only
	// the base files and the system user (Debian keeps those) remain.
	if err := os.WriteFile(r.path("etc/linkbeat/linkbeat.yaml"), []byte("# edited\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r.dpkg("-r", "linkbeat")
	if _, err := os.Stat(r.path("usr/bin/linkbeat")); err == nil {
		t.Error("dpkg -r left /usr/bin/linkbeat")
	}
	if b, _ := os.ReadFile(r.path("etc/linkbeat/linkbeat.yaml")); string(b) != "# edited\n" {
		t.Errorf("dpkg -r did not keep the edited conffile: %q", b)
	}
	r.dpkg("--purge", "linkbeat")
	if st := exec.Command("dpkg", "--root="+r.dir, "-s", "linkbeat").Run(); st == nil {
		t.Error("dpkg -s linkbeat still succeeds after the purge")
	}
	userFiles := []string{"etc/.pwd.lock", "etc/group", "etc/gshadow", "etc/passwd", "etc/shadow"}
	var left []string
	for _, f := range r.files() {
		if !r.base[f] && f != "bin" && !slices.Contains(userFiles, f) {
			left = append(left, f)
		}
	}
	if len(left) > 0 {
		t.Errorf("after the purge, the root still holds: %v", left)
	}
	if _, err := os.Stat(r.path("etc/linkbeat")); err == nil {
		t.Error("after the purge, /etc/linkbeat is still there")
	}
}
