package script

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// capNames are the capabilities by number, as capabilities(7) names them.
var capNames = map[string]uintptr{
	"CAP_CHOWN": unix.CAP_CHOWN, "CAP_DAC_OVERRIDE": unix.CAP_DAC_OVERRIDE, "CAP_DAC_READ_SEARCH": unix.CAP_DAC_READ_SEARCH,
	"CAP_FOWNER": unix.CAP_FOWNER, "CAP_FSETID": unix.CAP_FSETID, "CAP_KILL": unix.CAP_KILL, "CAP_SETGID": unix.CAP_SETGID,
	"CAP_SETUID": unix.CAP_SETUID, "CAP_SETPCAP": unix.CAP_SETPCAP, "CAP_LINUX_IMMUTABLE": unix.CAP_LINUX_IMMUTABLE,
	"CAP_NET_BIND_SERVICE": unix.CAP_NET_BIND_SERVICE, "CAP_NET_BROADCAST": unix.CAP_NET_BROADCAST,
	"CAP_NET_ADMIN": unix.CAP_NET_ADMIN, "CAP_NET_RAW": unix.CAP_NET_RAW, "CAP_IPC_LOCK": unix.CAP_IPC_LOCK,
	"CAP_IPC_OWNER": unix.CAP_IPC_OWNER, "CAP_SYS_MODULE": unix.CAP_SYS_MODULE, "CAP_SYS_RAWIO": unix.CAP_SYS_RAWIO,
	"CAP_SYS_CHROOT": unix.CAP_SYS_CHROOT, "CAP_SYS_PTRACE": unix.CAP_SYS_PTRACE, "CAP_SYS_PACCT": unix.CAP_SYS_PACCT,
	"CAP_SYS_ADMIN": unix.CAP_SYS_ADMIN, "CAP_SYS_BOOT": unix.CAP_SYS_BOOT, "CAP_SYS_NICE": unix.CAP_SYS_NICE,
	"CAP_SYS_RESOURCE": unix.CAP_SYS_RESOURCE, "CAP_SYS_TIME": unix.CAP_SYS_TIME, "CAP_SYS_TTY_CONFIG": unix.CAP_SYS_TTY_CONFIG,
	"CAP_MKNOD": unix.CAP_MKNOD, "CAP_LEASE": unix.CAP_LEASE, "CAP_AUDIT_WRITE": unix.CAP_AUDIT_WRITE,
	"CAP_AUDIT_CONTROL": unix.CAP_AUDIT_CONTROL, "CAP_SETFCAP": unix.CAP_SETFCAP, "CAP_MAC_OVERRIDE": unix.CAP_MAC_OVERRIDE,
	"CAP_MAC_ADMIN": unix.CAP_MAC_ADMIN, "CAP_SYSLOG": unix.CAP_SYSLOG, "CAP_WAKE_ALARM": unix.CAP_WAKE_ALARM,
	"CAP_BLOCK_SUSPEND": unix.CAP_BLOCK_SUSPEND, "CAP_AUDIT_READ": unix.CAP_AUDIT_READ, "CAP_PERFMON": unix.CAP_PERFMON,
	"CAP_BPF": unix.CAP_BPF, "CAP_CHECKPOINT_RESTORE": unix.CAP_CHECKPOINT_RESTORE,
}

// DefaultCapabilities is what a script keeps unless configured otherwise:
// enough for `ip route` and `ip link`, nothing else.
func DefaultCapabilities() []string { return []string{"CAP_NET_ADMIN"} }

// ParseCapability reads "CAP_NET_ADMIN", "cap_net_admin" or "net_admin".
func ParseCapability(name string) (uintptr, error) {
	n := strings.ToUpper(strings.TrimSpace(name))
	if !strings.HasPrefix(n, "CAP_") {
		n = "CAP_" + n
	}
	if c, ok := capNames[n]; ok {
		return c, nil
	}
	known := make([]string, 0, len(capNames))
	for k := range capNames {
		known = append(known, k)
	}
	slices.Sort(known)
	return 0, fmt.Errorf("%q is not a capability: want one of %s", name, strings.Join(known, ", "))
}

// capMask turns names into a bit mask; nil means the default set.
func capMask(names []string) (uint64, error) {
	if names == nil {
		names = DefaultCapabilities()
	}
	var m uint64
	for _, n := range names {
		c, err := ParseCapability(n)
		if err != nil {
			return 0, err
		}
		m |= 1 << c
	}
	return m, nil
}

// limitThread leaves the calling thread only the capabilities in keep, for
// a process it forks next to inherit. The caller must have locked the
// goroutine to its thread and must let the goroutine end still locked, so
// that the Go runtime retires the thread instead of reusing it.
//
// What it does, and why each step:
//   - no_new_privs: an exec can no longer add capabilities (setuid-root
//     binaries, file capabilities); together with the lowered permitted
//     set this also holds for a root script when the bounding set cannot
//     be lowered (no CAP_SETPCAP).
//   - the bounding set lowered to keep (needs CAP_SETPCAP: root has it; a
//     non-root daemon's EPERM is ignored, no_new_privs covers it).
//   - permitted, effective and inheritable lowered to keep: a root exec
//     recomputes permitted as bounding | inheritable, and no_new_privs caps
//     it at the old permitted set.
//   - ambient set to keep: how a non-root process passes capabilities
//     across exec at all.
func limitThread(keep uint64) error {
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("set no_new_privs: %w", err)
	}
	for c := uintptr(0); c < 64; c++ {
		if keep&(1<<c) != 0 {
			continue
		}
		in, err := unix.PrctlRetInt(unix.PR_CAPBSET_READ, c, 0, 0, 0)
		if err != nil {
			break // EINVAL: past the kernel's last capability
		}
		if in == 1 {
			if err := unix.Prctl(unix.PR_CAPBSET_DROP, c, 0, 0, 0); err != nil && !errors.Is(err, unix.EPERM) {
				return fmt.Errorf("drop capability %d from the bounding set: %w", c, err)
			}
		}
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("read capabilities: %w", err)
	}
	permitted := uint64(data[0].Permitted) | uint64(data[1].Permitted)<<32
	k := keep & permitted
	for i := range data {
		half := uint32(k >> (32 * i))
		data[i].Effective, data[i].Permitted, data[i].Inheritable = half, half, half
	}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("lower capabilities: %w", err)
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return fmt.Errorf("clear ambient capabilities: %w", err)
	}
	for c := uintptr(0); c < 64; c++ {
		if k&(1<<c) != 0 {
			if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_RAISE, c, 0, 0); err != nil {
				return fmt.Errorf("raise ambient capability %d: %w", c, err)
			}
		}
	}
	return nil
}
