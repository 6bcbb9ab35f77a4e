package doctor

import (
	"testing"

	"github.com/linkbeat/linkbeat/internal/carrier"
	"github.com/linkbeat/linkbeat/internal/probe"
)

// The refusals as internal/source words them on this project's host.
var (
	fentryEPERM = probe.Check{Name: "fentry", Detail: "refused with EPERM (load fentry programs: ... operation not permitted): the kernel or a security module (lockdown, a sandbox) forbids BPF tracing programs"}
	fentryNoBTF = probe.Check{Name: "fentry", Detail: "no kernel BTF"}
	kprobeNone  = probe.Check{Name: "kprobe", Detail: "no kprobe support (...): the kernel is built without CONFIG_KPROBES"}
	netlinkOK   = probe.Check{Name: "netlink", OK: true, Detail: "RTNLGRP_LINK notices"}
)

func withPaths(s *Snapshot, src carrier.Source, checks ...probe.Check) *Snapshot {
	s.Paths.Features.CarrierSource = src
	s.Paths.Features.Checks = append([]probe.Check{{Name: "privileges", OK: true}, {Name: "btf", OK: true}}, checks...)
	return s
}

func TestCarrierPath(t *testing.T) {
	t.Run("fentry live", func(t *testing.T) {
		only(t, checkCarrierPath, clean(nic(2, "eth0")))
	})
	t.Run("fentry refused, netlink only: cost and fix", func(t *testing.T) {
		s := withPaths(clean(nic(2, "eth0"), veth(3, "v0")), carrier.SourceNetlink, fentryEPERM, kprobeNone, netlinkOK)
		f := only(t, checkCarrierPath, s, "carrier-path-netlink")[0]
		if f.Severity != Warning {
			t.Errorf("severity %s, want warning", f.Severity)
		}
		mustContain(t, "why", f.Why, "linkwatch", "up to 1 s", "held back this way: eth0.", "fentry: refused with EPERM", "kprobe: no kprobe support")
		mustContain(t, "fix", f.Fix, "lockdown", "CAP_BPF and CAP_PERFMON", "CONFIG_KPROBES=y", "linkbeat features")
	})
	t.Run("no plain NIC monitored", func(t *testing.T) {
		s := withPaths(clean(nic(2, "eth0"), veth(3, "v0")), carrier.SourceNetlink, fentryEPERM, kprobeNone, netlinkOK)
		s.Monitor.Daemon.Interfaces = []string{"v0"}
		f := only(t, checkCarrierPath, s, "carrier-path-netlink")[0]
		mustContain(t, "why", f.Why, "nothing is held back today")
	})
	t.Run("kprobe refused for want of tracefs, but no kprobe PMU either", func(t *testing.T) {
		tracefs := probe.Check{Name: "kprobe", Detail: "attach kprobe to netif_carrier_on: ...: neither debugfs nor tracefs are mounted"}
		s := withPaths(clean(), carrier.SourceNetlink, fentryEPERM, tracefs, netlinkOK)
		f := only(t, checkCarrierPath, s, "carrier-path-netlink")[0]
		mustContain(t, "fix", f.Fix, "kprobe PMU (or tracefs mounted")
		s.Paths.NoKprobePMU = true
		f = only(t, checkCarrierPath, s, "carrier-path-netlink")[0]
		mustContain(t, "fix", f.Fix, "the kprobe fallback needs a kernel built with CONFIG_KPROBES=y.")
		mustContain(t, "why", f.Why, "the kernel has no kprobes")
	})
	t.Run("no BTF", func(t *testing.T) {
		s := withPaths(clean(), carrier.SourceNetlink, fentryNoBTF, netlinkOK)
		f := only(t, checkCarrierPath, s, "carrier-path-netlink")[0]
		mustContain(t, "fix", f.Fix, "CONFIG_DEBUG_INFO_BTF=y", "--kernel-btf")
	})
	t.Run("netlink forced: info", func(t *testing.T) {
		s := withPaths(clean(nic(2, "eth0")), carrier.SourceNetlink, probe.Check{Name: "netlink", OK: true, Detail: "forced by --carrier-source netlink"})
		s.Monitor.Daemon.CarrierSource = "netlink"
		if f := only(t, checkCarrierPath, s, "carrier-path-netlink")[0]; f.Severity != Info {
			t.Errorf("severity %s, want info", f.Severity)
		}
	})
	t.Run("kprobe live: info", func(t *testing.T) {
		s := withPaths(clean(), carrier.SourceKprobe, fentryEPERM, probe.Check{Name: "kprobe", OK: true})
		f := only(t, checkCarrierPath, s, "carrier-path-kprobe")[0]
		if f.Severity != Info {
			t.Errorf("severity %s, want info", f.Severity)
		}
		mustContain(t, "why", f.Why, "fentry: refused with EPERM")
	})
	t.Run("not probed", func(t *testing.T) {
		s := clean()
		s.Paths = Paths{Err: "missing CAP_BPF, CAP_PERFMON: run as root"}
		if f := only(t, checkCarrierPath, s, "carrier-path-unprobed")[0]; f.Severity != Warning {
			t.Errorf("severity %s, want warning", f.Severity)
		}
	})
	t.Run("forced path refused", func(t *testing.T) {
		s := withPaths(clean(), carrier.SourceNone, fentryEPERM)
		s.Paths.Err = "--carrier-source fentry was asked for but refused: refused with EPERM"
		f := only(t, checkCarrierPath, s, "carrier-path-refused")[0]
		if f.Severity != Error {
			t.Errorf("severity %s, want error", f.Severity)
		}
		mustContain(t, "fix", f.Fix, "Drop --carrier-source", "lockdown")
	})
}

func TestBpffs(t *testing.T) {
	only(t, checkBpffs, clean())
	s := clean()
	s.Bpffs = Bpffs{PinDir: "/sys/fs/bpf/linkbeat"}
	f := only(t, checkBpffs, s, "bpffs-not-mounted")[0]
	if f.Severity != Warning {
		t.Errorf("under /sys/fs/bpf: severity %s, want warning", f.Severity)
	}
	mustContain(t, "fix", f.Fix, "mount -t bpf bpf /sys/fs/bpf", "fstab")
	s.Bpffs = Bpffs{PinDir: "/srv/pins/linkbeat"}
	f = only(t, checkBpffs, s, "bpffs-not-mounted")[0]
	if f.Severity != Error {
		t.Errorf("elsewhere: severity %s, want error", f.Severity)
	}
	mustContain(t, "why", f.Why, "refuses to start")
	mustContain(t, "fix", f.Fix, "mount -t bpf bpf /srv/pins")
	s.Bpffs = Bpffs{}
	only(t, checkBpffs, s)
}
