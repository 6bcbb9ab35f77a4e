// Package probe checks, once at start, what this host lets linkbeat do:
// privileges, bpffs, tracefs, BTF. Each check says what is wrong and what
// to do about it.
package probe

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Check is one probed capability of the host.
type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

const (
	capNetAdmin = 12
	capSysAdmin = 21
	capPerfmon  = 38
	capBPF      = 39
)

var capNames = map[int]string{capNetAdmin: "CAP_NET_ADMIN", capSysAdmin: "CAP_SYS_ADMIN", capPerfmon: "CAP_PERFMON", capBPF: "CAP_BPF"}

// ParseCapEff reads the effective capability mask from /proc/self/status.
func ParseCapEff(r io.Reader) (uint64, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CapEff:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("no CapEff line")
}

// MissingCaps names the capabilities linkbeat lacks: CAP_NET_ADMIN for
// netlink and TC, and CAP_BPF with CAP_PERFMON (or CAP_SYS_ADMIN, which
// covers both on kernels before 5.8) for loading programs.
func MissingCaps(eff uint64) []string {
	has := func(c int) bool { return eff&(1<<c) != 0 }
	var missing []string
	if !has(capNetAdmin) {
		missing = append(missing, capNames[capNetAdmin])
	}
	if !has(capSysAdmin) {
		for _, c := range []int{capBPF, capPerfmon} {
			if !has(c) {
				missing = append(missing, capNames[c])
			}
		}
	}
	return missing
}

// Privileges checks the process's effective capabilities.
func Privileges() Check {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return Check{Name: "privileges", Detail: fmt.Sprintf("cannot read /proc/self/status: %v", err)}
	}
	defer f.Close()
	eff, err := ParseCapEff(f)
	if err != nil {
		return Check{Name: "privileges", Detail: fmt.Sprintf("cannot parse capabilities: %v", err)}
	}
	if missing := MissingCaps(eff); len(missing) > 0 {
		return Check{Name: "privileges", Detail: fmt.Sprintf(
			"missing %s: run as root, or grant them (systemd AmbientCapabilities=, or setcap cap_bpf,cap_perfmon,cap_net_admin+ep bin/linkbeat)",
			strings.Join(missing, ", "))}
	}
	return Check{Name: "privileges", OK: true, Detail: "CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN held"}
}

const (
	bpffsMagic   = 0xcafe4a11
	tracefsMagic = 0x74726163
	debugfsMagic = 0x64626720
)

// FSMounted reports whether path is a mount of the filesystem with magic.
func fsMounted(path string, magic int64) bool {
	var st unix.Statfs_t
	return unix.Statfs(path, &st) == nil && int64(st.Type) == magic
}

// Bpffs makes sure pinDir lies on a bpffs: its nearest existing ancestor
// must be one. Under /sys/fs/bpf, a missing mount is mounted.
func Bpffs(pinDir string) Check {
	c, dir := InspectBpffs(pinDir), nearestExisting(pinDir)
	if c.OK {
		return c
	}
	const root = "/sys/fs/bpf"
	if dir != root && !strings.HasPrefix(dir, root+"/") {
		c.Detail = fmt.Sprintf("%s is not on a bpffs: mount one (`mount -t bpf bpf DIR`) or choose a --bpffs-dir under %s", pinDir, root)
		return c
	}
	if err := unix.Mount("bpf", root, "bpf", 0, ""); err != nil {
		c.Detail = fmt.Sprintf("%s is not a bpffs and mounting one failed (%v): run `mount -t bpf bpf %s`", root, err, root)
		return c
	}
	c.OK, c.Detail = true, "mounted bpffs at "+root
	return c
}

// Tracefs makes sure tracefs is mounted: kprobes fall back to it on kernels
// without perf-based kprobe attachment.
func Tracefs() Check {
	c := Check{Name: "tracefs"}
	for _, p := range []string{"/sys/kernel/tracing", "/sys/kernel/debug/tracing"} {
		if fsMounted(p, tracefsMagic) {
			c.OK, c.Detail = true, p+" is mounted"
			return c
		}
	}
	if err := unix.Mount("tracefs", "/sys/kernel/tracing", "tracefs", 0, ""); err != nil {
		c.Detail = fmt.Sprintf("tracefs is not mounted and mounting it failed (%v): run `mount -t tracefs tracefs /sys/kernel/tracing`; only the kprobe fallback needs it", err)
		return c
	}
	c.OK, c.Detail = true, "mounted tracefs at /sys/kernel/tracing"
	return c
}

// KernelRelease returns uname -r.
func KernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}

// NetnsInode identifies the caller's network namespace, as BPF sees it in
// dev->nd_net.net->ns.inum.
func NetnsInode() (uint32, error) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/ns/net", &st); err != nil {
		return 0, fmt.Errorf("stat /proc/self/ns/net: %w", err)
	}
	return uint32(st.Ino), nil
}
