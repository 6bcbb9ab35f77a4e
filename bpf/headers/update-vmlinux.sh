#!/bin/sh
# Regenerates bpf/headers/vmlinux.h from a kernel's BTF. CO-RE relocates every
# field access at load time, so the header only has to name the types; any
# kernel from 6.1 on works as the source.
#   bpf/headers/update-vmlinux.sh [BTF file]   (default /sys/kernel/btf/vmlinux)
set -eu
btf=${1:-/sys/kernel/btf/vmlinux}
command -v bpftool >/dev/null || { echo "bpftool missing: apt-get install bpftool" >&2; exit 1; }
out=$(dirname "$0")/vmlinux.h
bpftool btf dump file "$btf" format c > "$out.tmp"
mv "$out.tmp" "$out"
echo "wrote $out from $btf"
