package probe

import (
	"fmt"

	"github.com/cilium/ebpf/btf"
)

// BTF loads the kernel's type information: from path when set (to test, or
// for kernels that ship BTF apart), else from /sys/kernel/btf/vmlinux.
// fentry and every CO-RE program need it.
func BTF(path string) (*btf.Spec, Check) {
	c := Check{Name: "btf"}
	var (
		spec *btf.Spec
		err  error
	)
	if path != "" {
		spec, err = btf.LoadSpec(path)
	} else {
		path = "/sys/kernel/btf/vmlinux"
		spec, err = btf.LoadKernelSpec()
	}
	if err != nil {
		c.Detail = fmt.Sprintf("no kernel BTF at %s (%v): the kernel needs CONFIG_DEBUG_INFO_BTF=y; without it carrier falls back to netlink and error counting is off", path, err)
		return nil, c
	}
	c.OK, c.Detail = true, "kernel BTF from "+path
	return spec, c
}
