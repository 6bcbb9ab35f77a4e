package deploy

import (
	"debug/buildinfo"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// dockerInstr is one Dockerfile instruction, continuation lines joined.
type dockerInstr struct {
	cmd  string // upper case
	args string
	line int
}

type dockerStage struct {
	base, name string
	instrs     []dockerInstr
}

// parseDockerfile splits a Dockerfile into stages. It knows what this
// project's Dockerfile uses: comments, continuations, FROM ... AS.
func parseDockerfile(src string) ([]dockerStage, error) {
	var (
		stages []dockerStage
		buf    strings.Builder
		start  int
	)
	flush := func() error {
		text := strings.TrimSpace(buf.String())
		buf.Reset()
		if text == "" {
			return nil
		}
		cmd, args, _ := strings.Cut(text, " ")
		in := dockerInstr{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args), line: start}
		if in.cmd == "FROM" {
			f := strings.Fields(in.args)
			for len(f) > 0 && strings.HasPrefix(f[0], "--") {
				f = f[1:]
			}
			if len(f) == 0 {
				return fmt.Errorf("line %d: FROM without an image", start)
			}
			st := dockerStage{base: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				st.name = f[2]
			}
			stages = append(stages, st)
			return nil
		}
		if len(stages) == 0 {
			if in.cmd == "ARG" {
				return nil
			}
			return fmt.Errorf("line %d: %s before FROM", start, in.cmd)
		}
		stages[len(stages)-1].instrs = append(stages[len(stages)-1].instrs, in)
		return nil
	}
	for i, l := range strings.Split(src, "\n") {
		trimmed := strings.TrimSpace(l)
		if strings.HasPrefix(trimmed, "#") {
			continue // comments, also inside a continuation
		}
		if buf.Len() == 0 {
			if trimmed == "" {
				continue
			}
			start = i + 1
		}
		if body, ok := strings.CutSuffix(strings.TrimRight(l, " \t"), `\`); ok {
			buf.WriteString(body + " ")
			continue
		}
		buf.WriteString(l)
		if err := flush(); err != nil {
			return nil, err
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	if len(stages) == 0 {
		return nil, errors.New("no FROM")
	}
	return stages, nil
}

// goBuild is a `go build` command line, as a recipe or a RUN line has it.
type goBuild struct {
	env      map[string]string
	trimpath bool
	ldflags  string
	out      string
	pkgs     []string
	other    []string
}

// parseGoBuild reads `[VAR=value...] go build [flags] packages`.
func parseGoBuild(line string) (goBuild, error) {
	words, err := shellWords(line)
	if err != nil {
		return goBuild{}, err
	}
	b := goBuild{env: map[string]string{}}
	for len(words) > 0 && strings.Contains(words[0], "=") && !strings.HasPrefix(words[0], "-") {
		k, v, _ := strings.Cut(words[0], "=")
		b.env[k] = v
		words = words[1:]
	}
	if len(words) < 2 || path.Base(words[0]) != "go" || words[1] != "build" {
		return goBuild{}, fmt.Errorf("not a go build command: %q", line)
	}
	words = words[2:]
	for i := 0; i < len(words); i++ {
		w := words[i]
		if !strings.HasPrefix(w, "-") {
			b.pkgs = append(b.pkgs, w)
			continue
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(w, "-"), "=")
		takeVal := func() (string, error) {
			if hasVal {
				return val, nil
			}
			if i+1 >= len(words) {
				return "", fmt.Errorf("%s without a value", w)
			}
			i++
			return words[i], nil
		}
		switch name {
		case "trimpath":
			b.trimpath = !hasVal || val == "true"
		case "ldflags":
			if b.ldflags, err = takeVal(); err != nil {
				return goBuild{}, err
			}
		case "o":
			if b.out, err = takeVal(); err != nil {
				return goBuild{}, err
			}
		default:
			b.other = append(b.other, w)
		}
	}
	return b, nil
}

// versionValue matches the version stamped by -X, which differs per build.
var versionValue = regexp.MustCompile(`(buildinfo\.Version=)\S*`)

// checkStaticRecipe holds the build to what makes the binary static and
// reproducible, whoever wrote the command.
func checkStaticRecipe(b goBuild) error {
	var errs []error
	if b.env["CGO_ENABLED"] != "0" {
		errs = append(errs, fmt.Errorf("CGO_ENABLED=%q: the build must set CGO_ENABLED=0 itself, or a host with a C compiler links libc", b.env["CGO_ENABLED"]))
	}
	if !b.trimpath {
		errs = append(errs, errors.New("no -trimpath"))
	}
	if !strings.Contains(b.ldflags, "-X github.com/linkbeat/linkbeat/internal/buildinfo.Version=") {
		errs = append(errs, fmt.Errorf("ldflags %q do not stamp buildinfo.Version", b.ldflags))
	}
	if !slices.Equal(b.pkgs, []string{"./cmd/linkbeat"}) {
		errs = append(errs, fmt.Errorf("builds %q, not ./cmd/linkbeat", b.pkgs))
	}
	if b.out == "" {
		errs = append(errs, errors.New("no -o"))
	}
	return errors.Join(errs...)
}

// makeBuildRecipe is what `make build` runs, read with `make -n`.
func makeBuildRecipe(t *testing.T, vars ...string) (goBuild, error) {
	t.Helper()
	out, err := makeCmd(t, append([]string{"-n", "build"}, vars...)...)
	if err != nil {
		return goBuild{}, fmt.Errorf("make -n build %s: %w\n%s", strings.Join(vars, " "), err, out)
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if strings.Contains(l, " build ") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 {
		return goBuild{}, fmt.Errorf("make -n build printed %d go build lines, want 1:\n%s", len(lines), out)
	}
	return parseGoBuild(lines[0])
}

// dockerBinary is what the Dockerfile builds and where it puts it.
type dockerBinary struct {
	build      goBuild // the effective go build of the builder stage
	builtAt    string  // absolute path in the builder stage
	copiedFrom string  // COPY --from source in the final stage
	copiedTo   string
	entrypoint string
}

// readDockerfile finds the final stage's binary, the builder stage it comes
// from, and the go build that makes it there: a `make build` line is read
// through `make -n` with the same variables, so it is the Makefile's own
// recipe.
func readDockerfile(t *testing.T, src string, recipe func(vars ...string) (goBuild, error)) (dockerBinary, error) {
	t.Helper()
	stages, err := parseDockerfile(src)
	if err != nil {
		return dockerBinary{}, err
	}
	final := stages[len(stages)-1]
	if final.base != "scratch" && !strings.HasPrefix(final.base, "gcr.io/distroless/static") {
		return dockerBinary{}, fmt.Errorf("final stage FROM %s: want gcr.io/distroless/static* or scratch, which hold no libc a dynamic binary could lean on", final.base)
	}
	var d dockerBinary
	var from string
	for _, in := range final.instrs {
		switch in.cmd {
		case "COPY":
			f := strings.Fields(in.args)
			if len(f) == 3 && strings.HasPrefix(f[0], "--from=") {
				from, d.copiedFrom, d.copiedTo = strings.TrimPrefix(f[0], "--from="), f[1], f[2]
			}
		case "ENTRYPOINT":
			var exec []string
			if err := json.Unmarshal([]byte(in.args), &exec); err != nil || len(exec) == 0 {
				return d, fmt.Errorf("line %d: ENTRYPOINT %s: want the exec form", in.line, in.args)
			}
			d.entrypoint = exec[0]
		}
	}
	if from == "" {
		return d, errors.New("the final stage copies no binary from a builder stage (COPY --from=STAGE SRC DST)")
	}
	if d.entrypoint != d.copiedTo {
		return d, fmt.Errorf("ENTRYPOINT runs %s but the binary is copied to %s", d.entrypoint, d.copiedTo)
	}
	idx := slices.IndexFunc(stages, func(s dockerStage) bool { return s.name == from })
	if idx < 0 || idx == len(stages)-1 {
		return d, fmt.Errorf("COPY --from=%s: no such builder stage", from)
	}
	workdir := "/"
	found := false
	for _, in := range stages[idx].instrs {
		switch in.cmd {
		case "WORKDIR":
			workdir = path.Join(workdir, in.args)
			if path.IsAbs(in.args) {
				workdir = path.Clean(in.args)
			}
		case "ENV":
			for _, kv := range strings.Fields(in.args) {
				k, v, _ := strings.Cut(kv, "=")
				if k == "GOFLAGS" || (k == "CGO_ENABLED" && v != "0") {
					return d, fmt.Errorf("line %d: ENV %s in the builder changes the build behind make's back", in.line, kv)
				}
			}
		case "RUN":
			cmdline := in.args
			var exec []string
			if json.Unmarshal([]byte(in.args), &exec) == nil {
				cmdline = strings.Join(exec, " ")
			}
			for _, seg := range strings.Split(cmdline, "&&") {
				seg = strings.TrimSpace(seg)
				words, err := shellWords(seg)
				if err != nil {
					return d, fmt.Errorf("line %d: %w", in.line, err)
				}
				var b goBuild
				switch {
				case len(words) > 0 && words[0] == "make":
					var vars []string
					target := false
					for _, w := range words[1:] {
						switch {
						case w == "build":
							target = true
						case strings.Contains(w, "=") && !strings.HasPrefix(w, "-"):
							vars = append(vars, w)
						default:
							return d, fmt.Errorf("line %d: make %s: only `make build [VAR=value]` is understood", in.line, w)
						}
					}
					if !target {
						continue
					}
					if b, err = recipe(vars...); err != nil {
						return d, err
					}
				case slices.Contains(words, "go") && slices.Contains(words, "build"):
					if b, err = parseGoBuild(seg); err != nil {
						return d, fmt.Errorf("line %d: %w", in.line, err)
					}
				default:
					continue
				}
				if found {
					return d, fmt.Errorf("line %d: a second build of the binary", in.line)
				}
				found, d.build = true, b
				d.builtAt = b.out
				if !path.IsAbs(b.out) {
					d.builtAt = path.Join(workdir, b.out)
				}
			}
		}
	}
	if !found {
		return d, fmt.Errorf("builder stage %s runs neither `make build` nor `go build`", from)
	}
	return d, nil
}

// checkSameAsMake compares the Dockerfile's build with make's.
func checkSameAsMake(d dockerBinary, ref goBuild) error {
	var errs []error
	if err := checkStaticRecipe(d.build); err != nil {
		errs = append(errs, fmt.Errorf("the Dockerfile's build: %w", err))
	}
	if d.copiedFrom != d.builtAt {
		errs = append(errs, fmt.Errorf("the final stage copies %s but the builder writes %s", d.copiedFrom, d.builtAt))
	}
	norm := func(s string) string { return versionValue.ReplaceAllString(s, "${1}*") }
	if norm(d.build.ldflags) != norm(ref.ldflags) {
		errs = append(errs, fmt.Errorf("ldflags %q, make build's are %q", d.build.ldflags, ref.ldflags))
	}
	if d.build.out != ref.out {
		errs = append(errs, fmt.Errorf("output %s, make build's is %s", d.build.out, ref.out))
	}
	if !slices.Equal(d.build.other, ref.other) || !slices.Equal(d.build.pkgs, ref.pkgs) || d.build.trimpath != ref.trimpath {
		errs = append(errs, fmt.Errorf("flags %q %q, make build's are %q %q", d.build.other, d.build.pkgs, ref.other, ref.pkgs))
	}
	for k, v := range ref.env {
		if d.build.env[k] != v {
			errs = append(errs, fmt.Errorf("%s=%q, make build sets %q", k, d.build.env[k], v))
		}
	}
	return errors.Join(errs...)
}

// The image must hold the binary `make build` makes: same recipe, same
// output path, copied from there, and static.
func TestDockerfileBuildsWhatMakeBuilds(t *testing.T) {
	recipe := func(vars ...string) (goBuild, error) { return makeBuildRecipe(t, vars...) }
	ref, err := recipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := checkStaticRecipe(ref); err != nil {
		t.Fatalf("make build's recipe: %v", err)
	}
	// A Makefile that drops any of these must fail here.
	for _, bad := range []string{
		"go build -trimpath -ldflags '-s -w -X github.com/linkbeat/linkbeat/internal/buildinfo.Version=x' -o bin/linkbeat ./cmd/linkbeat",
		"CGO_ENABLED=1 go build -trimpath -ldflags '-s -w -X github.com/linkbeat/linkbeat/internal/buildinfo.Version=x' -o bin/linkbeat ./cmd/linkbeat",
		"CGO_ENABLED=0 go build -ldflags '-s -w -X github.com/linkbeat/linkbeat/internal/buildinfo.Version=x' -o bin/linkbeat ./cmd/linkbeat",
	} {
		b, err := parseGoBuild(bad)
		if err != nil {
			t.Fatal(err)
		}
		if checkStaticRecipe(b) == nil {
			t.Errorf("recipe %q passed the static check", bad)
		}
	}
	d, err := readDockerfile(t, string(readFile(t, "Dockerfile")), recipe)
	if err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	if err := checkSameAsMake(d, ref); err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	t.Logf("image: %s (built at %s by %q)", d.copiedTo, d.builtAt, ref.out)

	// What the check above must catch.
	src := string(readFile(t, "Dockerfile"))
	mutants := map[string]string{
		"another output path": strings.Replace(src, "COPY --from=build /src/bin/linkbeat", "COPY --from=build /src/out/linkbeat", 1),
		"cgo":                 strings.Replace(src, "RUN make build", "RUN CGO_ENABLED=1 go build -trimpath -ldflags '-s -w -X github.com/linkbeat/linkbeat/internal/buildinfo.Version=x' -o bin/linkbeat ./cmd/linkbeat", 1),
		"no trimpath":         strings.Replace(src, "RUN make build", "RUN CGO_ENABLED=0 go build -ldflags '-s -w -X github.com/linkbeat/linkbeat/internal/buildinfo.Version=x' -o bin/linkbeat ./cmd/linkbeat", 1),
		"other ldflags":       strings.Replace(src, "RUN make build", "RUN CGO_ENABLED=0 go build -trimpath -ldflags '-X github.com/linkbeat/linkbeat/internal/buildinfo.Version=x' -o bin/linkbeat ./cmd/linkbeat", 1),
		"make with BIN":       strings.Replace(src, "RUN make build", "RUN make build BIN=out/linkbeat", 1),
		"dynamic base":        strings.Replace(src, "FROM gcr.io/distroless/static-debian12", "FROM debian:bookworm-slim", 1),
		"cgo env":             strings.Replace(src, "RUN make build", "ENV CGO_ENABLED=1\nRUN make build", 1),
	}
	for name, m := range mutants {
		if m == src {
			t.Fatalf("mutant %q: the Dockerfile no longer has the line it replaces; update the test", name)
		}
		d, err := readDockerfile(t, m, recipe)
		if err == nil {
			err = checkSameAsMake(d, ref)
		}
		if err == nil {
			t.Errorf("a Dockerfile with %s passed the check", name)
		}
	}
}

// `make build`'s binary is static: no interpreter, no dynamic section, no
// shared libraries, built without cgo, stripped, and stamped.
func TestMakeBuildIsStatic(t *testing.T) {
	ref, err := makeBuildRecipe(t)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "linkbeat")
	const version = "deploy-test"
	// The same target and recipe, written elsewhere than the shared bin/.
	if out, err := makeCmd(t, "build", "BIN="+bin, "VERSION="+version); err != nil {
		t.Fatalf("make build: %v\n%s", err, out)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("program header %v: the binary is dynamically linked", p.Type)
		}
	}
	for _, name := range []string{".interp", ".dynamic", ".dynsym"} {
		if f.Section(name) != nil {
			t.Errorf("section %s present: the binary is dynamically linked", name)
		}
	}
	if libs, err := f.ImportedLibraries(); err == nil && len(libs) > 0 {
		t.Errorf("needs shared libraries %v", libs)
	}
	if slices.Contains(strings.Fields(ref.ldflags), "-s") && f.Section(".symtab") != nil {
		t.Errorf("ldflags %q strip the symbol table, but it is there", ref.ldflags)
	}
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	if settings["CGO_ENABLED"] != "0" || settings["-trimpath"] != "true" {
		t.Errorf("build settings CGO_ENABLED=%q -trimpath=%q, want 0 and true", settings["CGO_ENABLED"], settings["-trimpath"])
	}
	if info.Path != "github.com/linkbeat/linkbeat/cmd/linkbeat" {
		t.Errorf("main package %s", info.Path)
	}
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), version) {
		t.Errorf("%s version: %v: %q does not carry the -X stamped %q", bin, err, out, version)
	}
}
