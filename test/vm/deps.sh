#!/bin/sh
# Installs the host tools the VM testbed needs (qemu, static busybox, kmod,
# ...), skipping what is present. CI starts on a clean Debian machine, so
# `make test-vm` runs this first.
exec "$(dirname "$0")/../../scripts/install-deps.sh" vm
