#!/bin/sh
# Installs what building, generating and testing linkbeat need on a fresh
# Debian machine, skipping what is present. Go itself is expected at
# /usr/local/go or on PATH; Go tools come through the module proxy.
#   scripts/install-deps.sh          build and host tests
#   scripts/install-deps.sh generate + clang/llvm for `make generate`
#   scripts/install-deps.sh vm       + the QEMU testbed's host tools
#   scripts/install-deps.sh bench    + ifplugd and iperf3 for the benchmarks
#   scripts/install-deps.sh package  + dpkg and man for the package test
# Running linkbeat needs none of these; `make deb` and `make release` need
# only Go (nfpm comes through the module proxy).
set -eu

need=""
check() { # check <command> <package>
	command -v "$1" >/dev/null 2>&1 || need="$need $2"
}
check ip iproute2
check tc iproute2
check ping iputils-ping
check bpftool bpftool
# promtool and a real Prometheus for the metrics tests (test/host).
check promtool prometheus
check prometheus prometheus
# systemd-analyze verifies the unit; setpriv runs the daemon with its capabilities (test/host).
check systemd-analyze systemd
check setpriv util-linux
# go test -race needs cgo, and so a C compiler (make test-unit, test-host).
check gcc gcc
case "${1:-}" in
bench)
	# test/bench/host: the real ifplugd 0.28 to compare with, iperf3 for
	# the datapath overhead.
	check ifplugd ifplugd
	check iperf3 iperf3
	;;
package)
	# test/deploy: install the .deb into a clean root, read its man page.
	check dpkg dpkg
	check dpkg-deb dpkg
	check man man-db
	check systemd-sysusers systemd
	;;
generate)
	check clang clang
	check llvm-strip llvm
	;;
vm)
	check qemu-system-x86_64 qemu-system-x86
	check cpio cpio
	check depmod kmod
	check modinfo kmod
	check zstd zstd
	check xz xz-utils
	check dpkg-deb dpkg
	# The guest needs the static busybox, not the dynamic build.
	dpkg -s busybox-static >/dev/null 2>&1 || need="$need busybox-static"
	;;
esac

[ -z "$need" ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "install-deps: missing packages:$need (run as root to install them)" >&2
	exit 1
fi
echo "install-deps: installing$need"
export DEBIAN_FRONTEND=noninteractive
# shellcheck disable=SC2086 # word splitting of $need is intended
apt-get install -y --no-install-recommends $need ||
	{ apt-get update && apt-get install -y --no-install-recommends $need; }
