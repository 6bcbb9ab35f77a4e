package doctor

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/linkbeat/linkbeat/internal/carrier"
	"github.com/linkbeat/linkbeat/internal/probe"
)

// refusals are the carrier paths the probe tried and the kernel refused.
func (p Paths) refusals() []probe.Check {
	var out []probe.Check
	for _, c := range p.Features.Checks {
		if !c.OK && (c.Name == carrier.SourceFentry.String() || c.Name == carrier.SourceKprobe.String()) {
			out = append(out, c)
		}
	}
	return out
}

// pathFix says how to get a refused path, from the reason it was refused.
func (p Paths) pathFix(c probe.Check) string {
	if c.Name == carrier.SourceKprobe.String() {
		if strings.Contains(c.Detail, "CONFIG_KPROBES") || p.NoKprobePMU {
			return "the kprobe fallback needs a kernel built with CONFIG_KPROBES=y."
		}
		return "the kprobe fallback needs CONFIG_KPROBES=y and the kprobe PMU (or tracefs mounted at /sys/kernel/tracing)."
	}
	switch {
	case strings.Contains(c.Detail, "EPERM"):
		return "fentry was refused with EPERM: BPF tracing programs are forbidden here. Lift what forbids them: kernel lockdown in " +
			"confidentiality mode (boot with lockdown=integrity or none; Secure Boot can impose it), a sandbox (a container's seccomp " +
			"profile or LSM policy: run linkbeat in the host's namespaces with CAP_BPF and CAP_PERFMON, or privileged), or a kernel " +
			"built to refuse BPF tracing, as some microVM kernels are (use a distribution kernel: Debian's 6.1 and 6.12 allow it)."
	case strings.Contains(c.Detail, "no kernel BTF"):
		return "fentry needs the kernel's BTF: a kernel built with CONFIG_DEBUG_INFO_BTF=y (Debian's is), or --kernel-btf FILE " +
			"with this kernel's BTF. Without BTF, tx error counting is off too."
	}
	return "fentry needs Linux 5.5 or later with BTF (CONFIG_DEBUG_INFO_BTF=y), BPF trampolines (x86-64, arm64) and CAP_BPF with CAP_PERFMON."
}

// plainNICs are the monitored interfaces whose carrier notices linkwatch
// may hold back: devices of their own (not veth, VLAN, macvlan...), not
// bond ports.
func (s *Snapshot) plainNICs() []string {
	var out []string
	for _, l := range s.Links {
		if l.Kind == "device" && !l.Loopback && l.BondSlave == nil && s.monitored(l) {
			out = append(out, l.Name)
		}
	}
	return out
}

const netlinkCost = "linkbeat then learns of carrier changes from rtnetlink notices only. The kernel's linkwatch sends a plain NIC's notice " +
	"up to 1 s late when another link event ran in the last second, so route withdrawal, action scripts and bond failover can start " +
	"up to 1 s after the driver saw the loss; fentry (or kprobe) sees it at the driver's netif_carrier_off call. veth, VLAN and " +
	"macvlan devices, and bond ports and masters, are not held back."

func checkCarrierPath(s *Snapshot) []Finding {
	p := s.Paths
	if !p.Probed {
		return []Finding{{
			ID: "carrier-path-unprobed", Severity: Warning, Subject: "carrier path", Guide: guideLinkbeat,
			Summary: "could not probe the kernel paths: " + p.Err,
			Why:     "Doctor cannot tell whether linkbeat run would see carrier changes through fentry or kprobe, or through netlink only.",
			Fix:     "Run `linkbeat doctor` as root (or with CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN), as linkbeat run itself must.",
		}}
	}
	if p.Err != "" {
		return []Finding{{
			ID: "carrier-path-refused", Severity: Error, Subject: "carrier path", Guide: guideLinkbeat,
			Summary: "linkbeat run with these flags would not start: " + p.Err,
			Why:     "A carrier source given with --carrier-source is used or refused, never replaced by a fallback.",
			Fix:     "Drop --carrier-source (auto takes the best path the kernel allows), or make the kernel allow it: " + p.pathFixes(),
		}}
	}
	refused := p.refusals()
	var reasons []string
	for _, c := range refused {
		r := c.Name + ": " + c.Detail
		if c.Name == carrier.SourceKprobe.String() && p.NoKprobePMU {
			r += " (and there is no kprobe PMU in /sys/bus/event_source/devices: the kernel has no kprobes)"
		}
		reasons = append(reasons, r)
	}
	switch p.Features.CarrierSource {
	case carrier.SourceKprobe:
		return []Finding{{
			ID: "carrier-path-kprobe", Severity: Info, Subject: "carrier path", Guide: guideLinkbeat,
			Summary: "carrier changes come from kprobes on netif_carrier_on/off: fentry was refused",
			Why:     "kprobes see a change at the driver's call just as fentry does, at a slightly higher cost per call. Refused: " + strings.Join(reasons, "; ") + ".",
			Fix:     "Nothing is needed. For fentry: " + p.pathFixes(),
		}}
	case carrier.SourceNetlink:
	default:
		return nil
	}
	exposed := "No monitored interface is a plain NIC now, so nothing is held back today; one that appears later would be."
	if nics := s.plainNICs(); len(nics) > 0 {
		exposed = "Monitored plain NICs held back this way: " + strings.Join(nics, ", ") + "."
	}
	if s.Monitor.Daemon.CarrierSource == carrier.SourceNetlink.String() {
		return []Finding{{
			ID: "carrier-path-netlink", Severity: Info, Subject: "carrier path", Guide: guideLinkbeat,
			Summary: "carrier changes come from netlink only, as --carrier-source netlink asks",
			Why:     netlinkCost + " " + exposed,
			Fix:     "Drop --carrier-source netlink to let linkbeat use fentry or kprobe where the kernel allows them (`linkbeat features` shows which).",
		}}
	}
	why := netlinkCost + " " + exposed
	if len(reasons) > 0 {
		why += " Refused: " + strings.Join(reasons, "; ") + "."
	}
	return []Finding{{
		ID: "carrier-path-netlink", Severity: Warning, Subject: "carrier path", Guide: guideLinkbeat,
		Summary: "carrier changes come from netlink only: fentry and kprobe are not live",
		Why:     why,
		Fix:     "Get fentry live: " + p.pathFixes() + " Then `linkbeat features` shows carrier source fentry.",
	}}
}

func (p Paths) pathFixes() string {
	refused := p.refusals()
	if len(refused) == 0 {
		return p.pathFix(probe.Check{Name: carrier.SourceFentry.String()})
	}
	var out []string
	for _, c := range refused {
		out = append(out, p.pathFix(c))
	}
	return strings.Join(out, " Or: ")
}

const bpffsRoot = "/sys/fs/bpf"

func checkBpffs(s *Snapshot) []Finding {
	b := s.Bpffs
	if b.Mounted || b.PinDir == "" {
		return nil
	}
	dir := filepath.Clean(b.PinDir)
	if dir != bpffsRoot && !strings.HasPrefix(dir, bpffsRoot+"/") {
		return []Finding{{
			ID: "bpffs-not-mounted", Severity: Error, Subject: b.PinDir, Guide: guideLinkbeat,
			Summary: fmt.Sprintf("--bpffs-dir %s is not on a bpffs", b.PinDir),
			Why:     "linkbeat run refuses to start: it pins its maps there and mounts a bpffs only at " + bpffsRoot + ".",
			Fix:     fmt.Sprintf("`mount -t bpf bpf %s` (and an fstab line), or a --bpffs-dir under %s.", filepath.Dir(dir), bpffsRoot),
		}}
	}
	return []Finding{{
		ID: "bpffs-not-mounted", Severity: Warning, Subject: bpffsRoot, Guide: guideLinkbeat,
		Summary: "no bpffs is mounted at " + bpffsRoot,
		Why: "linkbeat run mounts one at start where it may (CAP_SYS_ADMIN in the host's mount namespace) and refuses to start where it may not. " +
			"A mount made inside a service's or container's private mount namespace is seen by nobody else and goes with it: " +
			"`linkbeat stats` and bpftool cannot read the pinned counters, and a restarted daemon's counters start from zero.",
		Fix: "`mount -t bpf bpf " + bpffsRoot + "`, made permanent with the fstab line `bpf " + bpffsRoot + " bpf defaults 0 0` " +
			"(systemd mounts it by itself at boot); in a container, bind the host's " + bpffsRoot + " in.",
	}}
}
