package source

import (
	"errors"
	"log/slog"

	"github.com/cilium/ebpf/rlimit"

	"github.com/linkbeat/linkbeat/internal/probe"
	"github.com/linkbeat/linkbeat/internal/registry"
)

// ProbeCarrier walks the carrier chain exactly as Open does (fentry, then
// kprobe, then netlink, or the source cfg forces) and closes what it
// attached: `linkbeat doctor` asks what `run` would get without starting
// it. Unlike Open it mounts nothing (no tracefs, no bpffs), pins nothing
// and opens neither the traffic programs nor the netlink socket. The
// error is Open's: missing privileges, or a forced source refused; the
// Features returned hold the checks made up to that point.
func ProbeCarrier(cfg Config, log *slog.Logger) (Features, error) {
	d := &Source{cfg: cfg, log: log}
	f := &d.features
	f.Kernel = probe.KernelRelease()
	priv := probe.Privileges()
	f.Checks = append(f.Checks, priv)
	if !priv.OK {
		return d.features, errors.New(priv.Detail)
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		log.Warn("cannot lift RLIMIT_MEMLOCK; map creation may fail on kernels before 5.11", "err", err)
	}
	kernelTypes, btfCheck := probe.BTF(cfg.KernelBTF)
	f.Checks = append(f.Checks, btfCheck)
	err := d.openCarrier(kernelTypes, btfCheck)
	if cerr := d.closeSources(); cerr != nil {
		log.Warn("closing the probed carrier source", "err", cerr)
	}
	return d.features, err
}

// Monitors reports whether a daemon opened with cfg monitors l, whose
// master is named master ("" for none): the rule Run applies (every
// interface but loopback when cfg lists none; else a listed interface, or
// a port of a listed bond or bridge).
func Monitors(cfg Config, l registry.Link, master string) bool {
	d := &Source{}
	d.setWanted(cfg.Interfaces)
	return d.monitored(l, master)
}
