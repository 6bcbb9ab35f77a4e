package vm

import (
	"bufio"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Names of the virtio-serial ports; the guest finds them through
// /sys/class/virtio-ports/*/name.
const (
	reqPortName = "linkbeat.req" // guest→host requests (setlink), host→guest replies
	outPortName = "linkbeat.out" // guest test output and exit status
	exitMarker  = "LINKBEAT-VM-EXIT="
)

// initScript is the guest's /init. It is written for busybox sh.
const initScript = `#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /tmp /run /bin /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
mkdir -p /dev/pts /dev/shm /sys/fs/bpf /sys/kernel/tracing /var /root
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
ln -sf /run /var/run
mount -t bpf bpf /sys/fs/bpf
mount -t tracefs tracefs /sys/kernel/tracing
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
ip link set lo up

echo "linkbeat-vm: loading modules"
while read -r mod params; do
	[ -n "$mod" ] || continue
	# shellcheck disable=SC2086 # params are split on purpose
	insmod /lib/modules/$mod.ko $params || echo "linkbeat-vm: insmod $mod failed"
done < /etc/modules.list

# Find the virtio-serial ports by name (no udev, so no /dev/virtio-ports).
port() {
	for p in /sys/class/virtio-ports/*; do
		[ "$(cat "$p/name" 2>/dev/null)" = "$1" ] && { echo "/dev/${p##*/}"; return; }
	done
}
OUT=$(port ` + outPortName + `)
REQ=$(port ` + reqPortName + `)
echo "linkbeat-vm: kernel $(uname -r), output port ${OUT:-missing}, request port ${REQ:-missing}"
ip -o link 2>/dev/null

if grep -q 'linkbeat.shell=1' /proc/cmdline; then
	echo "linkbeat-vm: debug shell. Tests: /guest.test -test.v -test.run REGEX"
	echo "linkbeat-vm: cut a link:  echo 'setlink net0 down' > $REQ; head -n1 $REQ"
	echo "linkbeat-vm: leave with 'exit' (powers off) or Ctrl-a x"
	cd /root
	setsid cttyhack sh
	poweroff -f
fi

[ -n "$OUT" ] || OUT=/dev/console
cd /tmp
# One argument per line in /etc/guest-args; no globbing, split on newlines only.
set -f
IFS='
'
# shellcheck disable=SC2046
set -- $(cat /etc/guest-args)
unset IFS
set +f
echo "linkbeat-vm: running /guest.test $*"
/guest.test "$@" >"$OUT" 2>&1
rc=$?
echo "` + exitMarker + `$rc" >"$OUT"
echo "linkbeat-vm: guest tests exited with status $rc"
sync
poweroff -f
`

// cpioWriter writes a newc ("070701") archive, the format the kernel
// unpacks as initramfs. Written here so building needs neither root (for
// the device node) nor the cpio tool.
type cpioWriter struct {
	w   *bufio.Writer
	ino int
	n   int64
}

func (c *cpioWriter) write(p []byte) error {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return err
}

func (c *cpioWriter) pad() error {
	if r := c.n % 4; r != 0 {
		return c.write(make([]byte, 4-r))
	}
	return nil
}

func (c *cpioWriter) entry(name string, mode uint32, rdevMajor, rdevMinor uint32, data []byte) error {
	c.ino++
	nlink := 1
	if mode&0o170000 == 0o040000 {
		nlink = 2
	}
	hdr := fmt.Sprintf("070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		c.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rdevMajor, rdevMinor, len(name)+1, 0)
	if err := c.write([]byte(hdr + name + "\x00")); err != nil {
		return err
	}
	if err := c.pad(); err != nil {
		return err
	}
	if err := c.write(data); err != nil {
		return err
	}
	return c.pad()
}

func (c *cpioWriter) dir(name string) error { return c.entry(name, 0o040755, 0, 0, nil) }
func (c *cpioWriter) file(name string, perm uint32, data []byte) error {
	return c.entry(name, 0o100000|perm, 0, 0, data)
}
func (c *cpioWriter) symlink(name, target string) error {
	return c.entry(name, 0o120777, 0, 0, []byte(target))
}
func (c *cpioWriter) copyFile(name, src string, perm uint32) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return c.file(name, perm, b)
}
func (c *cpioWriter) close() error {
	if err := c.entry("TRAILER!!!", 0, 0, 0, nil); err != nil {
		return err
	}
	return c.w.Flush()
}

// initramfsInput is everything that goes into one guest image.
type initramfsInput struct {
	Kernel    *kernel
	GuestTest string   // static guest test binary
	Linkbeat  string   // bin/linkbeat, "" if not built
	GuestArgs []string // arguments for the guest test binary
}

// buildInitramfs writes an uncompressed newc archive (the kernel unpacks it
// faster under TCG than a compressed one).
func buildInitramfs(out string, in initramfsInput) error {
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	c := &cpioWriter{w: bufio.NewWriterSize(f, 1<<20)}
	for _, d := range []string{"bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "lib", "lib/modules", "dev", "proc", "sys", "tmp", "run", "root"} {
		if err := c.dir(d); err != nil {
			return err
		}
	}
	// The kernel opens /dev/console for init before devtmpfs is mounted.
	if err := c.entry("dev/console", 0o020600, 5, 1, nil); err != nil {
		return err
	}
	if err := c.copyFile("bin/busybox", "/bin/busybox", 0o755); err != nil {
		return fmt.Errorf("busybox-static: %w", err)
	}
	if err := c.symlink("bin/sh", "busybox"); err != nil {
		return err
	}
	if err := c.file("init", 0o755, []byte(initScript)); err != nil {
		return err
	}
	var list strings.Builder
	for _, m := range in.Kernel.Modules {
		if err := c.copyFile("lib/modules/"+m.Name+".ko", m.Path, 0o644); err != nil {
			return err
		}
		fmt.Fprintf(&list, "%s %s\n", m.Name, m.Params)
	}
	if err := c.file("etc/modules.list", 0o644, []byte(list.String())); err != nil {
		return err
	}
	if err := c.file("etc/guest-args", 0o644, []byte(strings.Join(in.GuestArgs, "\n")+"\n")); err != nil {
		return err
	}
	if err := c.copyFile("guest.test", in.GuestTest, 0o755); err != nil {
		return err
	}
	if in.Linkbeat != "" {
		if err := c.copyFile("usr/bin/linkbeat", in.Linkbeat, 0o755); err != nil {
			return err
		}
		if err := addSharedLibs(c, in.Linkbeat); err != nil {
			return err
		}
	}
	if err := c.close(); err != nil {
		return err
	}
	return f.Close()
}

// addSharedLibs copies the dynamic loader and libraries if bin/linkbeat was
// linked dynamically (cgo), since the guest has no libc of its own.
func addSharedLibs(c *cpioWriter, bin string) error {
	ef, err := elf.Open(bin)
	if err != nil {
		return fmt.Errorf("%s: %w", bin, err)
	}
	defer ef.Close()
	var interp string
	for _, p := range ef.Progs {
		if p.Type == elf.PT_INTERP {
			b, _ := io.ReadAll(p.Open())
			interp = strings.TrimRight(string(b), "\x00")
		}
	}
	if interp == "" {
		return nil // static
	}
	out, err := run("ldd", bin)
	if err != nil {
		return err
	}
	made := map[string]bool{}
	add := func(path string) error {
		real, err := filepath.EvalSymlinks(path)
		if err != nil {
			return err
		}
		dir := strings.TrimPrefix(filepath.Dir(path), "/")
		parts := strings.Split(dir, "/")
		for i := range parts {
			d := strings.Join(parts[:i+1], "/")
			if !made[d] && d != "lib" && d != "usr" {
				made[d] = true
				if err := c.dir(d); err != nil {
					return err
				}
			}
		}
		return c.copyFile(strings.TrimPrefix(path, "/"), real, 0o755)
	}
	// lib64 is not among the base directories.
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		var p string
		switch {
		case len(f) >= 3 && f[1] == "=>" && strings.HasPrefix(f[2], "/"):
			p = f[2]
		case len(f) >= 1 && strings.HasPrefix(f[0], "/"):
			p = f[0]
		default:
			continue
		}
		if err := add(p); err != nil {
			return err
		}
	}
	return nil
}
