#!/bin/sh
# Installs the host tools the VM testbed needs, skipping what is present.
# CI starts on a clean Debian machine, so `make test-vm` runs this first.
set -eu

need=""
check() { # check <command> <package>
	command -v "$1" >/dev/null 2>&1 || need="$need $2"
}
check qemu-system-x86_64 qemu-system-x86
check cpio cpio
check depmod kmod
check modinfo kmod
check zstd zstd
check xz xz-utils
check dpkg-deb dpkg
check apt-get apt
[ -x /bin/busybox ] || need="$need busybox-static"
# busybox may be the dynamic build; the guest needs the static one.
if [ -x /bin/busybox ] && ! dpkg -s busybox-static >/dev/null 2>&1; then
	need="$need busybox-static"
fi

[ -z "$need" ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "test/vm/deps.sh: missing packages:$need (run as root to install)" >&2
	exit 1
fi
echo "test/vm/deps.sh: installing$need"
export DEBIAN_FRONTEND=noninteractive
# shellcheck disable=SC2086 # word splitting of $need is intended
apt-get install -y --no-install-recommends $need ||
	{ apt-get update && apt-get install -y --no-install-recommends $need; }
