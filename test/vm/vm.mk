# QEMU testbed: Debian 6.1 and 6.12 kernels under TCG. Included from the
# top-level Makefile, which provides `build` (bin/linkbeat). See
# test/vm/README.md.
#
#   make test-vm                                 all guest tests, both kernels
#   make test-vm LINKBEAT_VM_KERNELS=6.1 LINKBEAT_VM_RUN=TestBondVisibility
#   make vm-shell VM_KERNEL=6.12                 interactive guest shell
#   make bench-vm                                issue 7's VM benchmarks, both kernels
#   make bench-vm-quick BENCH_OUT=bench/quick    the same with a few trials

VM_DIR    := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))
VM_GO     ?= $(or $(GO),go)
VM_KERNEL ?= 6.1
# Where bench-vm and bench-vm-quick write one results file per kernel.
BENCH_OUT ?= bench/results

.PHONY: test-vm bench-vm bench-vm-quick vm-deps vm-shell vm-clean

# Host tools (qemu, busybox-static, kmod, xz, zstd, ...), installed if missing.
vm-deps:
	@sh $(VM_DIR)/deps.sh

# LINKBEAT_VM=1 turns a missing qemu or root into a failure, not a skip.
test-vm: build vm-deps
	LINKBEAT_VM=1 LINKBEAT_BIN=$(CURDIR)/bin/linkbeat \
		$(VM_GO) -C $(VM_DIR)/.. test -v -count=1 -timeout 45m ./vm/...

# The guest benchmarks (guest/bench_test.go) under TestVMBench; test-vm
# skips them. Full: 30 cuts per contender and 10 bursts per kernel.
bench-vm: build vm-deps
	LINKBEAT_VM=1 LINKBEAT_VM_BENCH=full LINKBEAT_BENCH_OUT=$(abspath $(BENCH_OUT)) LINKBEAT_BIN=$(CURDIR)/bin/linkbeat \
		$(VM_GO) -C $(VM_DIR)/.. test -v -count=1 -timeout 180m -run '^TestVMBench$$' ./vm/

# A few trials, so that the benchmark code keeps working (make bench-quick).
bench-vm-quick: build vm-deps
	LINKBEAT_VM=1 LINKBEAT_VM_BENCH=quick LINKBEAT_BENCH_OUT=$(abspath $(BENCH_OUT)) LINKBEAT_BIN=$(CURDIR)/bin/linkbeat \
		$(VM_GO) -C $(VM_DIR)/.. test -v -count=1 -timeout 35m -run '^TestVMBench$$' ./vm/

vm-shell: build vm-deps
	$(VM_DIR)/shell.sh $(VM_KERNEL)

# Drops the downloaded kernels too; the next run fetches them again.
vm-clean:
	rm -rf $(VM_DIR)/.cache
