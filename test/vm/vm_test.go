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
//	                         element of -run TestVM/linux-6.1/REGEX)
//	LINKBEAT_VM_SHELL=1      boot the first selected kernel to a shell on stdio
//	LINKBEAT_VM_COUNT=N      -test.count for the guest (flake hunting)
//	LINKBEAT_VM_TIMEOUT=6m   per-boot limit
//	LINKBEAT_BIN=path        linkbeat binary (default bin/linkbeat)
func TestVM(t *testing.T) {
	shell := os.Getenv("LINKBEAT_VM_SHELL") == "1"
	required := os.Getenv("LINKBEAT_VM") == "1" || shell
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
	cacheDir := filepath.Join(root, "test", "vm", ".cache")
	specs, err := selectKernels(os.Getenv("LINKBEAT_VM_KERNELS"))
	if err != nil {
		t.Fatal(err)
	}

	timeout := 6 * time.Minute
	if s := os.Getenv("LINKBEAT_VM_TIMEOUT"); s != "" {
		if timeout, err = time.ParseDuration(s); err != nil {
			t.Fatalf("LINKBEAT_VM_TIMEOUT: %v", err)
		}
	}

	// Several people may run the VM tests in one checkout at once: each
	// run builds its own guest binary and copies it to guest.test (for
	// humans) only when done.
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		t.Fatal(err)
	}
	tmpBin, err := os.CreateTemp(cacheDir, "guest-*.test")
	if err != nil {
		t.Fatal(err)
	}
	tmpBin.Close()
	guestBin := tmpBin.Name()
	defer func() { os.Rename(guestBin, filepath.Join(cacheDir, "guest.test")) }()
	if out, err := buildGuest(root, guestBin); err != nil {
		os.Remove(guestBin)
		t.Fatalf("building the guest test binary failed: %v\n%s", err, out)
	}
	linkbeat := os.Getenv("LINKBEAT_BIN")
	if linkbeat == "" {
		linkbeat = filepath.Join(root, "bin", "linkbeat")
	}
	if _, err := os.Stat(linkbeat); err != nil {
		// The guest tests that need it fail with a pointer to this.
		t.Logf("WARNING: %s missing (run `make build`); the guest has no linkbeat", linkbeat)
		linkbeat = ""
	}

	guestArgs := []string{"-test.v=test2json"}
	if re := guestRunRegexp(); re != "" {
		guestArgs = append(guestArgs, "-test.run="+re)
	}
	if n := os.Getenv("LINKBEAT_VM_COUNT"); n != "" {
		// Repeat the guest tests in one boot, to hunt flakes.
		guestArgs = append(guestArgs, "-test.count="+n)
	}
	if timeout > 2*time.Minute {
		// The guest's own timeout fires first and prints goroutine stacks.
		guestArgs = append(guestArgs, fmt.Sprintf("-test.timeout=%s", timeout-time.Minute))
	}

	if shell {
		specs = specs[:1]
	}
	for _, spec := range specs {
		t.Run("linux-"+spec.Series, func(t *testing.T) {
			begin := time.Now()
			k, err := fetchKernel(cacheDir, spec, t.Logf)
			if err != nil {
				t.Fatalf("kernel %s: %v", spec.Series, err)
			}
			logDir, unlock, err := claimLogDir(filepath.Join(cacheDir, "logs"), "linux-"+spec.Series)
			if err != nil {
				t.Fatal(err)
			}
			defer unlock()
			initrd := filepath.Join(logDir, "initramfs.cpio")
			err = buildInitramfs(initrd, initramfsInput{Kernel: k, GuestTest: guestBin, Linkbeat: linkbeat, GuestArgs: guestArgs})
			if err != nil {
				t.Fatalf("initramfs: %v", err)
			}
			prep := time.Since(begin)
			if shell {
				t.Logf("booting %s to a shell; Ctrl-a x quits QEMU", k.Release)
				_, err := runVM(vmConfig{Kernel: k, Initramfs: initrd, LogDir: logDir, Shell: true, Logf: t.Logf})
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			cfg := vmConfig{Kernel: k, Initramfs: initrd, LogDir: logDir, Timeout: timeout, BootTimeout: 2 * time.Minute, Logf: t.Logf}
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
		})
	}
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
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.mod above %s", dir)
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
	cmd := exec.Command(goTool(), "test", "-c", "-tags", "vmguest", "-o", out, "./test/vm/guest")
	cmd.Dir = root
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
