package vm

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var vmRun = flag.String("vm.run", "", "regexp passed to the guest test binary as -test.run (also LINKBEAT_VM_RUN)")

const howToRun = "run it with `make test-vm`, or `LINKBEAT_VM=1 go test -v ./test/vm/` as root (see test/vm/README.md)"

// TestVM boots each selected kernel and replays the guest tests as subtests:
// TestVM/linux-6.1/TestCarrierFentry passes, fails or skips as it did in the
// guest.
//
// Environment:
//
//	LINKBEAT_VM=1            run (otherwise skipped); missing root or qemu is then a failure
//	LINKBEAT_VM_KERNELS=6.1  comma-separated kernel series (default: all)
//	LINKBEAT_VM_RUN=REGEX    -test.run for the guest (or -vm.run, or the third
//	                         element of -run TestVM/linux-6.1/REGEX); guest
//	                         tests named *Cables* run in a second boot per
//	                         kernel (TestVM/linux-6.1-cables) wired as two
//	                         cables (vmConfig.Cables)
//	LINKBEAT_VM_SHELL=1      boot the first selected kernel to a shell on stdio
//	LINKBEAT_VM_COUNT=N      -test.count for the guest (flake hunting)
//	LINKBEAT_VM_TIMEOUT=10m  per-boot limit
//	LINKBEAT_BIN=path        linkbeat binary (default bin/linkbeat)
func TestVM(t *testing.T) {
	shell := os.Getenv("LINKBEAT_VM_SHELL") == "1"
	// The suite runs about 3-5 minutes a kernel; on a loaded host more.
	env := setupVM(t, os.Getenv("LINKBEAT_VM") == "1" || shell, 15*time.Minute)
	// The benchmarks (guest TestBench*) are TestVMBench's.
	one, cables := cablesSplit(guestRunRegexp(), "^TestCables")
	specs := env.specs
	if shell {
		specs, cables = specs[:1], nil
	}
	for _, spec := range specs {
		if one != nil {
			args := env.guestArgs(*one, "^TestBench|Cables")
			t.Run("linux-"+spec.Series, func(t *testing.T) {
				env.boot(t, spec, args, shell, false)
			})
		}
		if cables != nil {
			args := env.guestArgs(*cables, "^TestBench")
			t.Run("linux-"+spec.Series+"-cables", func(t *testing.T) {
				env.boot(t, spec, args, false, true)
			})
		}
	}
}

// cablesSplit splits the guest's -test.run between the two topologies:
// the guest tests named *Cables* need two separate cables (vmConfig.Cables)
// and run in a boot of their own; the others need the one hub. Each result
// is that boot's -test.run, nil when the boot has nothing to run. An empty
// run selects everything: all but *Cables* on one hub, and cablesAll on
// the cables. A run is split on its top-level "|" alternatives.
func cablesSplit(run, cablesAll string) (one, cables *string) {
	if run == "" {
		all := ""
		return &all, &cablesAll
	}
	var o, c []string
	for _, alt := range strings.Split(run, "|") {
		if strings.Contains(alt, "Cables") {
			c = append(c, alt)
		} else {
			o = append(o, alt)
		}
	}
	if len(o) > 0 {
		s := strings.Join(o, "|")
		one = &s
	}
	if len(c) > 0 {
		s := strings.Join(c, "|")
		cables = &s
	}
	return one, cables
}

// vmEnv is what the boots of one host test share: the cache, the guest
// test binary, the linkbeat binary for the guest, the kernels and the
// per-boot limit.
type vmEnv struct {
	cacheDir string
	guestBin string
	linkbeat string // "" when bin/linkbeat is missing
	specs    []kernelSpec
	timeout  time.Duration
}

// setupVM checks the host and builds the guest test binary. Without
// required it skips; with it, a host that cannot run the VM fails the test.
func setupVM(t *testing.T, required bool, timeout time.Duration) *vmEnv {
	t.Helper()
	if problems := hostProblems(); len(problems) > 0 {
		msg := "VM tests cannot run: " + strings.Join(problems, "; ")
		if required {
			t.Fatal(msg + " (make vm-deps installs the tools)")
		}
		t.Skip(msg + "; " + howToRun)
	}
	if !required {
		t.Skip("VM tests are off; " + howToRun)
	}

	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	env := &vmEnv{cacheDir: filepath.Join(root, "test", "vm", ".cache"), timeout: timeout}
	if env.specs, err = selectKernels(os.Getenv("LINKBEAT_VM_KERNELS")); err != nil {
		t.Fatal(err)
	}
	if s := os.Getenv("LINKBEAT_VM_TIMEOUT"); s != "" {
		if env.timeout, err = time.ParseDuration(s); err != nil {
			t.Fatalf("LINKBEAT_VM_TIMEOUT: %v", err)
		}
	}

	// Several people may run the VM tests in one checkout at once: each
	// run builds its own guest binary and copies it to guest.test (for
	// humans) only when done.
	if err := os.MkdirAll(env.cacheDir, 0o755); err != nil {
		t.Fatal(err)
	}
	tmpBin, err := os.CreateTemp(env.cacheDir, "guest-*.test")
	if err != nil {
		t.Fatal(err)
	}
	tmpBin.Close()
	env.guestBin = tmpBin.Name()
	if out, err := buildGuest(root, env.guestBin); err != nil {
		os.Remove(env.guestBin)
		t.Fatalf("building the guest test binary failed: %v\n%s", err, out)
	}
	t.Cleanup(func() { os.Rename(env.guestBin, filepath.Join(env.cacheDir, "guest.test")) })
	env.linkbeat = os.Getenv("LINKBEAT_BIN")
	if env.linkbeat == "" {
		env.linkbeat = filepath.Join(root, "bin", "linkbeat")
	}
	if _, err := os.Stat(env.linkbeat); err != nil {
		// The guest tests that need it fail with a pointer to this.
		t.Logf("WARNING: %s missing (run `make build`); the guest has no linkbeat", env.linkbeat)
		env.linkbeat = ""
	}
	return env
}

// guestArgs are the guest test binary's arguments: its -test.run and
// -test.skip (either may be empty) and the settings from the environment.
func (e *vmEnv) guestArgs(run, skip string, extra ...string) []string {
	args := []string{"-test.v=test2json"}
	if run != "" {
		args = append(args, "-test.run="+run)
	}
	if skip != "" {
		args = append(args, "-test.skip="+skip)
	}
	if n := os.Getenv("LINKBEAT_VM_COUNT"); n != "" {
		// Repeat the guest tests in one boot, to hunt flakes.
		args = append(args, "-test.count="+n)
	}
	if e.timeout > 2*time.Minute {
		// The guest's own timeout fires first and prints goroutine stacks.
		args = append(args, fmt.Sprintf("-test.timeout=%s", e.timeout-time.Minute))
	}
	return append(args, extra...)
}

// boot runs the guest tests on one kernel and replays them as subtests of
// t. It returns the run's result (nil for a shell); the run's log
// directory stays claimed until t ends, so its files can still be read.
func (e *vmEnv) boot(t *testing.T, spec kernelSpec, guestArgs []string, shell, cables bool) *vmResult {
	t.Helper()
	begin := time.Now()
	k, err := fetchKernel(e.cacheDir, spec, t.Logf)
	if err != nil {
		t.Fatalf("kernel %s: %v", spec.Series, err)
	}
	name := "linux-" + spec.Series
	if cables {
		name += "-cables"
	}
	logDir, unlock, err := claimLogDir(filepath.Join(e.cacheDir, "logs"), name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(unlock)
	initrd := filepath.Join(logDir, "initramfs.cpio")
	err = buildInitramfs(initrd, initramfsInput{Kernel: k, GuestTest: e.guestBin, Linkbeat: e.linkbeat, GuestArgs: guestArgs})
	if err != nil {
		t.Fatalf("initramfs: %v", err)
	}
	prep := time.Since(begin)
	if shell {
		t.Logf("booting %s to a shell; Ctrl-a x quits QEMU", k.Release)
		if _, err := runVM(vmConfig{Kernel: k, Initramfs: initrd, LogDir: logDir, Shell: true, Logf: t.Logf}); err != nil {
			t.Fatal(err)
		}
		return nil
	}
	cfg := vmConfig{Kernel: k, Initramfs: initrd, LogDir: logDir, Timeout: e.timeout, BootTimeout: 2 * time.Minute, Logf: t.Logf, Cables: cables}
	res, err := runVM(cfg)
	if why := bootFlake(res, err); why != "" {
		// A kernel that hangs or oopses before any test runs
		// (multi-threaded TCG has run a stale translation of
		// kernel text patched during boot) is the emulator's
		// flake, not a test result: one more boot, said out
		// loud. A second failure is reported below.
		t.Logf("%s: %s; console tail:\n%s\nbooting once more",
			k.Release, why, tailFile(filepath.Join(logDir, "console.log"), 40))
		res, err = runVM(cfg)
	}
	if err != nil {
		t.Fatalf("boot %s: %v\nconsole tail:\n%s", k.Release, err, tailFile(filepath.Join(logDir, "console.log"), 60))
	}
	t.Logf("kernel %s (%s): prepare %.1fs, boot to first guest output %.1fs, VM total %.1fs; logs in %s",
		k.Release, k.Package, prep.Seconds(), res.BootTime.Seconds(), res.Elapsed.Seconds(), logDir)
	if len(res.Requests) > 0 {
		t.Logf("request channel:\n%s", strings.Join(res.Requests, "\n"))
	}
	report(t, res)
	return res
}

// bootFlake says why a run ended before its first guest test started,
// when the cause was the guest kernel hanging or crashing while booting.
func bootFlake(res *vmResult, err error) string {
	if err != nil {
		return ""
	}
	if res.BootHung {
		return "the guest produced nothing within the boot timeout (kernel hung while booting)"
	}
	out, _ := os.ReadFile(res.GuestOut)
	if bytes.Contains(out, []byte("=== RUN")) {
		return "" // a test had started: whatever happened is a result
	}
	console, _ := os.ReadFile(res.ConsoleLog)
	for _, sign := range []string{"Oops: ", "Kernel panic"} {
		if bytes.Contains(console, []byte(sign)) {
			return "the guest kernel crashed while booting, before any test ran (" + strings.TrimSpace(sign) + ")"
		}
	}
	return ""
}

// report replays the guest results and fails on anything abnormal.
func report(t *testing.T, res *vmResult) {
	consoleTail := func(t *testing.T) {
		t.Logf("guest console (full log: %s), last lines:\n%s", res.ConsoleLog, tailFile(res.ConsoleLog, 80))
	}
	raw, err := os.ReadFile(res.GuestOut)
	if err != nil {
		t.Errorf("no guest test output: %v", err)
		consoleTail(t)
		return
	}
	rep, err := parseGuestOutput(raw)
	if err != nil {
		t.Errorf("parsing guest output %s: %v", res.GuestOut, err)
		consoleTail(t)
		return
	}
	var unfinishedLogged sync.Once
	for _, gt := range rep.Tests {
		replay(t, gt, func(t *testing.T) { unfinishedLogged.Do(func() { consoleTail(t) }) })
	}
	abnormal := ""
	switch {
	case res.BootHung:
		abnormal = fmt.Sprintf("the guest kernel hung while booting, twice: nothing from the guest within %.0fs", res.Elapsed.Seconds())
	case res.TimedOut:
		abnormal = fmt.Sprintf("the guest did not power off within the VM timeout (%.0fs)", res.Elapsed.Seconds())
	case rep.ExitCode < 0:
		abnormal = "the guest never reported an exit status (kernel panic, crash or early failure)"
	case rep.ExitCode != 0 && rep.PkgAction != "fail":
		abnormal = fmt.Sprintf("the guest test binary exited with status %d", rep.ExitCode)
	case rep.ExitCode != 0:
		// Failures are reported by the subtests; package-level output
		// (e.g. a panic outside any test) still needs showing.
		if !anyFailed(rep.Tests) {
			abnormal = fmt.Sprintf("the guest test binary failed (status %d) outside any test", rep.ExitCode)
		}
	case len(rep.Tests) == 0:
		abnormal = "the guest ran no tests (check LINKBEAT_VM_RUN / -vm.run)"
	}
	if abnormal != "" {
		if out := strings.TrimSpace(strings.Join(rep.PkgOutput, "")); out != "" {
			abnormal += "\nguest output outside tests:\n" + out
		}
		t.Error(abnormal)
		unfinishedLogged.Do(func() { consoleTail(t) })
	}
}

func anyFailed(ts []*guestTest) bool {
	for _, gt := range ts {
		if gt.Action == "fail" || gt.Action == "" || anyFailed(gt.Subs) {
			return true
		}
	}
	return false
}

// hostProblems lists what stops the VM tests from running on this host.
func hostProblems() []string {
	var p []string
	if os.Geteuid() != 0 {
		p = append(p, "not root (apt-get download/depmod and the guest image need root)")
	}
	for _, tool := range []string{"qemu-system-x86_64", "dpkg-deb", "depmod", "apt-get", "apt-cache", "xz", "zstd"} {
		if _, err := exec.LookPath(tool); err != nil {
			p = append(p, tool+" not found")
		}
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		p = append(p, "/bin/busybox (busybox-static) not found")
	}
	return p
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		// The daemon's module, not the test module (test/go.mod).
		if _, err := os.Stat(filepath.Join(d, "cmd", "linkbeat", "main.go")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no linkbeat checkout above %s", dir)
		}
	}
}

func selectKernels(env string) ([]kernelSpec, error) {
	if env == "" {
		return kernelSpecs, nil
	}
	var out []kernelSpec
	for _, s := range strings.Split(env, ",") {
		s = strings.TrimPrefix(strings.TrimSpace(s), "linux-")
		found := false
		for _, k := range kernelSpecs {
			if k.Series == s {
				out, found = append(out, k), true
			}
		}
		if !found {
			return nil, fmt.Errorf("LINKBEAT_VM_KERNELS: unknown kernel %q (have 6.1, 6.12)", s)
		}
	}
	return out, nil
}

// guestRunRegexp picks the guest's -test.run: LINKBEAT_VM_RUN, -vm.run, or
// the part of the host's -run after TestVM/<kernel>/.
func guestRunRegexp() string {
	if s := os.Getenv("LINKBEAT_VM_RUN"); s != "" {
		return s
	}
	if *vmRun != "" {
		return *vmRun
	}
	if f := flag.Lookup("test.run"); f != nil {
		if parts := strings.Split(f.Value.String(), "/"); len(parts) > 2 {
			return strings.Join(parts[2:], "/")
		}
	}
	return ""
}

// goTool finds the go command for building the guest and for test2json.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	if p := filepath.Join(os.Getenv("GOROOT"), "bin", "go"); os.Getenv("GOROOT") != "" && fileExists(p) {
		return p
	}
	return "/usr/local/go/bin/go"
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// buildGuest compiles the guest tests into one static binary.
func buildGuest(root, out string) (string, error) {
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return "", err
	}
	cmd := exec.Command(goTool(), "test", "-c", "-tags", "vmguest", "-o", out, "./vm/guest")
	cmd.Dir = filepath.Join(root, "test") // the test module
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	b, err := cmd.CombinedOutput()
	return string(b), err
}

// claimLogDir returns logs/<name> locked for this run. If another run holds
// it (someone else's `make test-vm` in the same checkout), this run gets a
// fresh logs/<name>-* directory instead of writing over that run's files.
func claimLogDir(logs, name string) (string, func(), error) {
	if err := os.MkdirAll(logs, 0o755); err != nil {
		return "", nil, err
	}
	lock, err := os.OpenFile(filepath.Join(logs, name+".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", nil, err
	}
	dir := filepath.Join(logs, name)
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		if dir, err = os.MkdirTemp(logs, name+"-*"); err != nil {
			return "", nil, err
		}
		return dir, func() {}, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		lock.Close()
		return "", nil, err
	}
	return dir, func() { lock.Close() }, nil
}
