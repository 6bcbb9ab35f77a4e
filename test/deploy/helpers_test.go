// Package deploy checks linkbeat's deployment files against the code they
// deploy: the Dockerfile against `make build`, the Kubernetes manifests
// against the config parser and each other, the Grafana dashboard and the
// alert rules against the metrics the exporter really serves, and
// `make install`. Some tests need root (BPF maps, make install's owner
// bits) or promtool; they fail with the reason when either is missing.
package deploy

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"unicode"

	"github.com/linkbeat/linkbeat/test/testkit"
)

// repoRoot is the module root, two levels up from this package.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("no go.mod at %s: run the tests from test/deploy: %v", root, err)
	}
	return root
}

func repoFile(t *testing.T, rel string) string {
	t.Helper()
	return filepath.Join(repoRoot(t), filepath.FromSlash(rel))
}

func readFile(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(repoFile(t, rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func requireRoot(t *testing.T, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("this test needs root (%s): run it as root, as `make test-deploy` in CI does", why)
	}
}

func promtool(t *testing.T) string {
	t.Helper()
	p, err := testkit.Promtool("test-deploy")
	return testkit.Must(t, p, err)
}

// makeCmd runs make in the repository root with a Go toolchain on PATH.
func makeCmd(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("make", append([]string{"--no-print-directory", "-C", repoRoot(t)}, args...)...)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return string(out), err
	}
	if err != nil {
		t.Fatalf("make %s: %v", strings.Join(args, " "), err)
	}
	return string(out), nil
}

// shellWords splits a simple POSIX command line: blanks separate words,
// single and double quotes group, a backslash escapes the next character.
// Enough for a make recipe and a Dockerfile RUN line.
func shellWords(s string) ([]string, error) {
	var (
		words []string
		cur   strings.Builder
		in    bool
		quote rune
	)
	rs := []rune(s)
	for i := 0; i < len(rs); i++ {
		r := rs[i]
		switch {
		case quote == '\'':
			if r == '\'' {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case quote == '"':
			switch {
			case r == '"':
				quote = 0
			case r == '\\' && i+1 < len(rs) && strings.ContainsRune(`"\$`+"`", rs[i+1]):
				i++
				cur.WriteRune(rs[i])
			default:
				cur.WriteRune(r)
			}
		case r == '\'' || r == '"':
			quote, in = r, true
		case r == '\\' && i+1 < len(rs):
			i++
			cur.WriteRune(rs[i])
			in = true
		case unicode.IsSpace(r):
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteRune(r)
			in = true
		}
	}
	if quote != 0 {
		return nil, errors.New("unterminated quote in " + s)
	}
	if in {
		words = append(words, cur.String())
	}
	return words, nil
}

func TestShellWords(t *testing.T) {
	got, err := shellWords(`CGO_ENABLED=0 go build -ldflags '-s -w -X a.b=c d' -o "bin/x y" ./cmd\ z`)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"CGO_ENABLED=0", "go", "build", "-ldflags", "-s -w -X a.b=c d", "-o", "bin/x y", "./cmd z"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("got %q, want %q", got, want)
	}
	if _, err := shellWords(`echo 'open`); err == nil {
		t.Fatal("an unterminated quote was accepted")
	}
}
