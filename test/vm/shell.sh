#!/bin/sh
# Boots a guest to an interactive busybox shell on this terminal, with the
# same kernel, modules, NICs, request channel and binaries as the tests.
#   test/vm/shell.sh [6.1|6.12]
# Quit with `exit` (powers the guest off) or Ctrl-a x.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$here/.cache"
cd "$here"
# Run the compiled host test directly: `go test` does not pass stdin on.
go test -c -o "$here/.cache/vm.test" .
LINKBEAT_VM_SHELL=1 LINKBEAT_VM_KERNELS="${1:-6.1}" \
	exec "$here/.cache/vm.test" -test.run '^TestVM$' -test.v -test.timeout 0
