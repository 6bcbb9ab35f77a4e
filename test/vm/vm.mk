# QEMU testbed: Debian 6.1 and 6.12 kernels under TCG. Included from the
# top-level Makefile, which provides `build` (bin/linkbeat). See
# test/vm/README.md.
#
#   make test-vm                                 all guest tests, both kernels
#   make test-vm LINKBEAT_VM_KERNELS=6.1 LINKBEAT_VM_RUN=TestBondVisibility
#   make vm-shell VM_KERNEL=6.12                 interactive guest shell

VM_DIR    := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))
VM_GO     ?= $(or $(GO),go)
VM_KERNEL ?= 6.1

.PHONY: test-vm vm-deps vm-shell vm-clean

# Host tools (qemu, busybox-static, kmod, xz, zstd, ...), installed if missing.
vm-deps:
	@sh $(VM_DIR)/deps.sh

# LINKBEAT_VM=1 turns a missing qemu or root into a failure, not a skip.
test-vm: build vm-deps
	LINKBEAT_VM=1 LINKBEAT_BIN=$(CURDIR)/bin/linkbeat \
		$(VM_GO) test -v -count=1 -timeout 20m ./$(VM_DIR)/...

vm-shell: build vm-deps
	$(VM_DIR)/shell.sh $(VM_KERNEL)

# Drops the downloaded kernels too; the next run fetches them again.
vm-clean:
	rm -rf $(VM_DIR)/.cache
