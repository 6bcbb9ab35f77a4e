// Package vm is linkbeat's QEMU testbed. Its tests (vm_test.go and friends)
// boot Debian's 6.1 and 6.12 kernels with a busybox initramfs, run the guest
// tests in ./guest inside them, and report each guest test as a host subtest.
// See README.md.
package vm
