package vm

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// kernelSpec names a kernel series by the Debian meta package that pulls it.
// The numbered package behind the meta package changes with Debian updates, so
// it is resolved through apt at run time and never written down here.
type kernelSpec struct {
	Series string // "6.1": must prefix the kernel release
	Meta   string // Debian meta package depending on the numbered image
}

var kernelSpecs = []kernelSpec{
	{Series: "6.1", Meta: "linux-image-amd64"},
	{Series: "6.12", Meta: "linux-image-6.12-amd64"},
}

// guestModule is a module the guest loads, in this order, with its parameters.
type guestModule struct {
	Name     string
	Params   string
	Optional bool
}

// guestModules lists what the guest tests need. Dependencies are added from
// modules.dep. A module the kernel has built in is simply skipped.
var guestModules = []guestModule{
	// virtio transport first, then the console ports (request channel and
	// test output), then the NICs.
	{Name: "virtio_pci"},
	{Name: "virtio_console"},
	{Name: "virtio_net"},
	// bonding depends on tls; max_bonds=0 stops 6.1 from creating bond0 on
	// load, so both kernels start without a bond.
	{Name: "tls"},
	{Name: "bonding", Params: "max_bonds=0"},
	{Name: "veth"},
	{Name: "dummy", Params: "numdummies=0"}, // no dummy0 on load
	{Name: "tun"},
	// clsact on 6.1 needs sch_ingress and cls_bpf.
	{Name: "sch_ingress"},
	{Name: "cls_bpf"},
	{Name: "8021q", Optional: true},
	// STP bridges for the bond/bridge status test (pulls stp and llc).
	{Name: "bridge"},
}

// kernel is an extracted Debian kernel ready to boot.
type kernel struct {
	Series  string
	Package string // numbered image package, e.g. linux-image-6.1.0-56-amd64
	Release string // uname -r
	Vmlinuz string
	// Modules are decompressed .ko files in load order.
	Modules []loadedModule
}

type loadedModule struct {
	Name   string
	Path   string // decompressed .ko on the host
	Params string
}

// run executes a command and returns its stdout, with stderr in the error.
func run(name string, args ...string) (string, error) {
	return runIn("", name, args...)
}

func runIn(dir, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// resolveImagePackage asks apt which numbered image package and version the
// meta package currently depends on.
func resolveImagePackage(meta string) (pkg, version string, err error) {
	show := func() (string, error) { return run("apt-cache", "show", "--no-all-versions", meta) }
	out, err := show()
	if err != nil || !strings.Contains(out, "Depends:") {
		// A fresh machine may have no package lists yet.
		if _, uerr := run("apt-get", "update"); uerr != nil {
			return "", "", fmt.Errorf("apt-cache show %s failed (%v) and apt-get update failed: %v", meta, err, uerr)
		}
		if out, err = show(); err != nil {
			return "", "", err
		}
	}
	for _, line := range strings.Split(out, "\n") {
		rest, ok := strings.CutPrefix(line, "Depends:")
		if !ok {
			continue
		}
		for _, dep := range strings.Split(rest, ",") {
			dep = strings.TrimSpace(dep)
			name, _, _ := strings.Cut(dep, " ")
			if !strings.HasPrefix(name, "linux-image-") {
				continue
			}
			// "linux-image-6.1.0-56-amd64 (= 6.1.158-1)"
			if i := strings.Index(dep, "(="); i >= 0 {
				version = strings.TrimSpace(strings.TrimSuffix(dep[i+2:], ")"))
			}
			return name, version, nil
		}
	}
	return "", "", fmt.Errorf("%s: no linux-image-* dependency in apt-cache show output:\n%s", meta, out)
}

// debFileName mirrors apt-get download's naming (epoch colon escaped).
func debFileName(pkg, version string) string {
	return fmt.Sprintf("%s_%s_amd64.deb", pkg, strings.ReplaceAll(version, ":", "%3a"))
}

// fetchKernel resolves, downloads (once) and extracts (once) a kernel, and
// prepares its guest modules. Everything lands under cacheDir.
func fetchKernel(cacheDir string, spec kernelSpec, logf func(string, ...any)) (*kernel, error) {
	debDir := filepath.Join(cacheDir, "debs")
	if err := os.MkdirAll(debDir, 0o755); err != nil {
		return nil, err
	}
	pkg, version, err := resolveImagePackage(spec.Meta)
	var deb string
	if err != nil {
		// Offline with a warm cache: use the newest cached image of the
		// series rather than failing.
		matches, _ := filepath.Glob(filepath.Join(debDir, "linux-image-"+spec.Series+".*.deb"))
		if len(matches) == 0 {
			return nil, fmt.Errorf("resolve %s: %w", spec.Meta, err)
		}
		sort.Strings(matches)
		deb = matches[len(matches)-1]
		pkg, _, _ = strings.Cut(filepath.Base(deb), "_")
		logf("apt resolution failed (%v); using cached %s", err, filepath.Base(deb))
	} else {
		deb = filepath.Join(debDir, debFileName(pkg, version))
		if _, err := os.Stat(deb); err != nil {
			logf("downloading %s %s", pkg, version)
			if _, err := runIn(debDir, "apt-get", "download", pkg+"="+version); err != nil {
				return nil, err
			}
			if _, err := os.Stat(deb); err != nil {
				return nil, fmt.Errorf("apt-get download %s=%s did not produce %s", pkg, version, deb)
			}
		} else {
			logf("using cached %s", filepath.Base(deb))
		}
	}

	root := filepath.Join(cacheDir, "kernels", strings.TrimSuffix(filepath.Base(deb), ".deb"))
	stamp := filepath.Join(root, ".extracted")
	if _, err := os.Stat(stamp); err != nil {
		logf("extracting %s", filepath.Base(deb))
		os.RemoveAll(root)
		if err := os.MkdirAll(root, 0o755); err != nil {
			return nil, err
		}
		if _, err := run("dpkg-deb", "-x", deb, root); err != nil {
			return nil, err
		}
		if err := os.WriteFile(stamp, nil, 0o644); err != nil {
			return nil, err
		}
	}

	k := &kernel{Series: spec.Series, Package: pkg}
	vmlinuz, _ := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
	if len(vmlinuz) != 1 {
		return nil, fmt.Errorf("%s: expected one boot/vmlinuz-*, found %v", root, vmlinuz)
	}
	k.Vmlinuz = vmlinuz[0]
	k.Release = strings.TrimPrefix(filepath.Base(k.Vmlinuz), "vmlinuz-")
	if !strings.HasPrefix(k.Release, spec.Series+".") && !strings.HasPrefix(k.Release, spec.Series+"-") {
		return nil, fmt.Errorf("%s now resolves to kernel %s, not series %s: update kernelSpecs", spec.Meta, k.Release, spec.Series)
	}
	modRoot, err := modulesDir(root, k.Release)
	if err != nil {
		return nil, err
	}
	k.Modules, err = prepareModules(root, modRoot, k.Release, filepath.Join(root, "guest-modules"), logf)
	if err != nil {
		return nil, err
	}
	return k, nil
}

func modulesDir(root, release string) (string, error) {
	for _, d := range []string{"lib/modules", "usr/lib/modules"} {
		p := filepath.Join(root, d, release)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: no lib/modules/%s", root, release)
}

// modName normalises a module file or name the way the kernel does.
func modName(s string) string {
	base := filepath.Base(s)
	if i := strings.Index(base, ".ko"); i >= 0 {
		base = base[:i]
	}
	return strings.ReplaceAll(base, "-", "_")
}

// prepareModules resolves guestModules with their dependencies into load
// order and decompresses them into outDir (busybox insmod may not handle
// .ko.xz / .ko.zst, so the guest gets plain .ko files).
func prepareModules(root, modRoot, release, outDir string, logf func(string, ...any)) ([]loadedModule, error) {
	depFile := filepath.Join(modRoot, "modules.dep")
	if _, err := os.Stat(depFile); err != nil {
		// The .deb ships no modules.dep; postinst normally generates it.
		if _, err := run("depmod", "-b", root, release); err != nil {
			return nil, err
		}
	}
	deps, err := readModulesDep(depFile)
	if err != nil {
		return nil, err
	}
	builtin, err := readBuiltin(filepath.Join(modRoot, "modules.builtin"))
	if err != nil {
		return nil, err
	}

	var order []string
	seen := map[string]bool{}
	var visit func(name string, chain []string) error
	visit = func(name string, chain []string) error {
		if seen[name] {
			return nil
		}
		e, ok := deps[name]
		if !ok {
			return fmt.Errorf("module %s (needed by %v) is neither a module nor built in", name, chain)
		}
		seen[name] = true
		for _, d := range e.deps {
			if err := visit(d, append(chain, name)); err != nil {
				return err
			}
		}
		order = append(order, name)
		return nil
	}
	params := map[string]string{}
	for _, m := range guestModules {
		if _, ok := deps[m.Name]; !ok {
			if builtin[m.Name] {
				continue
			}
			if m.Optional {
				logf("optional module %s not available, skipping", m.Name)
				continue
			}
			return nil, fmt.Errorf("kernel %s: module %s is neither a module nor built in", release, m.Name)
		}
		params[m.Name] = m.Params
		if err := visit(m.Name, nil); err != nil {
			return nil, err
		}
	}

	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return nil, err
	}
	var mods []loadedModule
	for _, name := range order {
		src := filepath.Join(modRoot, deps[name].path)
		dst := filepath.Join(outDir, name+".ko")
		if _, err := os.Stat(dst); err != nil {
			if err := decompressModule(src, dst); err != nil {
				return nil, err
			}
		}
		mods = append(mods, loadedModule{Name: name, Path: dst, Params: params[name]})
	}
	return mods, nil
}

type depEntry struct {
	path string
	deps []string
}

func readModulesDep(path string) (map[string]depEntry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m := map[string]depEntry{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		file, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		var ds []string
		for _, d := range strings.Fields(rest) {
			ds = append(ds, modName(d))
		}
		m[modName(file)] = depEntry{path: file, deps: ds}
	}
	return m, sc.Err()
}

func readBuiltin(path string) (map[string]bool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	m := map[string]bool{}
	for _, l := range strings.Fields(string(b)) {
		m[modName(l)] = true
	}
	return m, nil
}

func decompressModule(src, dst string) error {
	var tool string
	switch {
	case strings.HasSuffix(src, ".ko"):
		b, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o644)
	case strings.HasSuffix(src, ".ko.xz"):
		tool = "xz"
	case strings.HasSuffix(src, ".ko.zst"):
		tool = "zstd"
	case strings.HasSuffix(src, ".ko.gz"):
		tool = "gzip"
	default:
		return fmt.Errorf("unknown module compression: %s", src)
	}
	out, err := run(tool, "-dc", src)
	if err != nil {
		return err
	}
	if len(out) == 0 {
		return errors.New(tool + " produced nothing for " + src)
	}
	tmp := dst + ".tmp"
	if err := os.WriteFile(tmp, []byte(out), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}
