// Command linkbeat watches link carrier with BPF and reacts within a
// millisecond. This file only wires flags to the internal packages.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/promslog"
	promslogflag "github.com/prometheus/common/promslog/flag"

	"github.com/linkbeat/linkbeat/internal/agent"
	"github.com/linkbeat/linkbeat/internal/buildinfo"
	"github.com/linkbeat/linkbeat/internal/config"
	"github.com/linkbeat/linkbeat/internal/registry"
	"github.com/linkbeat/linkbeat/internal/routes"
	"github.com/linkbeat/linkbeat/internal/source"
	"github.com/linkbeat/linkbeat/internal/traffic"
)

const defaultPinDir = "/sys/fs/bpf/linkbeat"

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "linkbeat: %v\n", err)
		os.Exit(1)
	}
}

// pipelineFlags are shared by every command that loads the programs.
type pipelineFlags struct {
	interfaces    string
	carrierSource string
	kernelBTF     string
	tc            string
	// Hidden, for the fault tests: shrink the kernel's buffers so that
	// they overflow.
	netlinkRcvBuf int
	ringSize      uint32
}

func (p *pipelineFlags) register(cmd *kingpin.CmdClause) {
	cmd.Flag("interfaces", "Comma-separated interfaces to monitor (default: all but loopback).").StringVar(&p.interfaces)
	cmd.Flag("carrier-source", "Carrier source: auto (fentry, then kprobe, then netlink), fentry, kprobe or netlink.").
		Default("auto").EnumVar(&p.carrierSource, "auto", "fentry", "kprobe", "netlink")
	cmd.Flag("kernel-btf", "Kernel BTF file to use instead of /sys/kernel/btf/vmlinux.").StringVar(&p.kernelBTF)
	cmd.Flag("tc", "TC mechanism: auto (tcx, then clsact), tcx or clsact.").Default("auto").EnumVar(&p.tc, "auto", "tcx", "clsact")
	cmd.Flag("debug.netlink-rcvbuf", "rtnetlink socket receive buffer in bytes (0: the kernel's default); for tests.").Hidden().IntVar(&p.netlinkRcvBuf)
	cmd.Flag("debug.ringbuf-size", "BPF carrier ring buffer size in bytes, a power of two of at least a page (0: 256 KiB); for tests.").Hidden().Uint32Var(&p.ringSize)
}

func (p *pipelineFlags) config() source.Config {
	cfg := source.Config{CarrierSource: p.carrierSource, KernelBTF: p.kernelBTF, NetlinkRcvBuf: p.netlinkRcvBuf, RingSize: p.ringSize}
	if p.tc != "auto" {
		cfg.TC = p.tc
	}
	for _, n := range strings.Split(p.interfaces, ",") {
		if n = strings.TrimSpace(n); n != "" {
			cfg.Interfaces = append(cfg.Interfaces, n)
		}
	}
	return cfg
}

// command is a subcommand's action, run once the flags are parsed.
type command = func(ctx context.Context, log *slog.Logger) error

func run(args []string, stdout, stderr io.Writer) error {
	app := newApp(stdout, stderr)
	logCfg := &promslog.Config{}
	promslogflag.AddFlags(app, logCfg)
	cmds := registerCommands(app, stdout)
	name, err := app.Parse(args)
	if err != nil {
		return err
	}
	log := newLogger(stderr, logCfg)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if f, ok := cmds[name]; ok {
		return f(ctx, log)
	}
	return nil
}

// newApp is the command line without its commands.
func newApp(stdout, stderr io.Writer) *kingpin.Application {
	app := kingpin.New("linkbeat", "eBPF-accelerated link monitor: sees carrier changes where the driver makes them.")
	// As Prometheus' exporters: -h, --help and --version print to stdout.
	app.UsageWriter(stdout)
	app.ErrorWriter(stderr)
	app.HelpFlag.Short('h')
	// Not app.Version: its text would be the man page's multi-line .TH.
	app.Flag("version", "Show the version and exit.").PreAction(func(*kingpin.ParseContext) error {
		fmt.Fprintln(stdout, buildinfo.Print("linkbeat"))
		os.Exit(0)
		return nil
	}).Bool()
	return app
}

// registerCommands adds every command, in the order help lists them, and
// returns their actions by full name.
func registerCommands(app *kingpin.Application, stdout io.Writer) map[string]command {
	cmds := map[string]command{}
	registerDaemonCommands(app, stdout, cmds)
	registerToolCommands(app, stdout, cmds)
	for name, f := range registerOpsCommands(app, stdout) { // status.go
		cmds[name] = f
	}
	doctorName, doctorRun := registerDoctor(app, stdout) // doctor.go
	cmds[doctorName] = func(_ context.Context, log *slog.Logger) error { return doctorRun(log) }
	return cmds
}

// registerDaemonCommands adds run, and the commands that share its checks
// and config tools: check and config check.
func registerDaemonCommands(app *kingpin.Application, stdout io.Writer, cmds map[string]command) {
	runCmd := app.Command("run", "Run the daemon.")
	var runFlags pipelineFlags
	runFlags.register(runCmd)
	runPinDir := runCmd.Flag("bpffs-dir", "bpffs directory for linkbeat's pinned maps.").Default(defaultPinDir).String()
	act := &actionFlags{}
	act.register(runCmd)
	cmds[runCmd.FullCommand()] = func(ctx context.Context, log *slog.Logger) error {
		cfg := runFlags.config()
		cfg.PinDir = *runPinDir
		return runActions(ctx, cfg, act, log)
	}

	checkCmd := app.Command("check", "Exit 2 if IFACE has carrier, 3 if not, 1 on error (like ifplugd -w).")
	checkIface := checkCmd.Arg("iface", "Interface name.").Required().String()
	cmds[checkCmd.FullCommand()] = func(context.Context, *slog.Logger) error { return check(*checkIface, stdout) }

	cfgCmd := app.Command("config", "Config file tools.")
	cfgCheckCmd := cfgCmd.Command("check", "Validate a config file without running.")
	cfgCheckFile := cfgCheckCmd.Arg("file", "Config file.").Required().String()
	cmds[cfgCheckCmd.FullCommand()] = func(context.Context, *slog.Logger) error {
		if _, err := config.Load(*cfgCheckFile); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: valid\n", *cfgCheckFile)
		return nil
	}
}

// registerToolCommands adds the commands that look without acting:
// monitor, features, links, stats and version.
func registerToolCommands(app *kingpin.Application, stdout io.Writer, cmds map[string]command) {
	monCmd := app.Command("monitor", "Stream carrier events of the monitored interfaces.")
	var monFlags pipelineFlags
	monFlags.register(monCmd)
	monJSON := monCmd.Flag("json", "One JSON object per line.").Bool()
	cmds[monCmd.FullCommand()] = func(ctx context.Context, log *slog.Logger) error {
		return runDaemon(ctx, monFlags.config(), log, monitorHandler(stdout, *monJSON))
	}

	featCmd := app.Command("features", "Probe the kernel and report which paths are live, and why others are not.")
	var featFlags pipelineFlags
	featFlags.register(featCmd)
	featJSON := featCmd.Flag("json", "JSON output.").Bool()
	featState := featCmd.Flag("state-dir", "State directory of a running daemon (as given to run), whose exporter's listeners are checked too.").
		Default(routes.DefaultStateDir).String()
	cmds[featCmd.FullCommand()] = func(_ context.Context, log *slog.Logger) error {
		return features(featFlags.config(), *featState, log, stdout, *featJSON)
	}

	linksCmd := app.Command("links", "List the interfaces as linkbeat's registry sees them.")
	linksJSON := linksCmd.Flag("json", "JSON output.").Bool()
	cmds[linksCmd.FullCommand()] = func(context.Context, *slog.Logger) error { return links(stdout, *linksJSON) }

	statsCmd := app.Command("stats", "Print the traffic counters of a running daemon, from its pinned map.")
	statsJSON := statsCmd.Flag("json", "JSON output.").Bool()
	statsPinDir := statsCmd.Flag("bpffs-dir", "bpffs directory of the daemon's pinned maps.").Default(defaultPinDir).String()
	cmds[statsCmd.FullCommand()] = func(context.Context, *slog.Logger) error { return stats(*statsPinDir, stdout, *statsJSON) }

	versionCmd := app.Command("version", "Print the version.")
	cmds[versionCmd.FullCommand()] = func(context.Context, *slog.Logger) error {
		fmt.Fprintln(stdout, buildinfo.Print("linkbeat"))
		return nil
	}
}

// monitorHandler prints each carrier change of a monitored link.
func monitorHandler(stdout io.Writer, asJSON bool) source.Handler {
	enc := json.NewEncoder(stdout)
	return source.Handler{Carrier: func(_ context.Context, ev source.Event) {
		if !ev.Monitored {
			return
		}
		if asJSON {
			_ = enc.Encode(ev.Event)
			return
		}
		fmt.Fprintf(stdout, "%s %s\n", time.Now().Format(time.RFC3339Nano), ev.Event)
	}}
}

// newLogger takes promslog's flags but not promslog.New, whose source=
// attribute would change every log line that operators and tests match.
func newLogger(w io.Writer, cfg *promslog.Config) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.Level.Level()}
	if cfg.Format.String() == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func runDaemon(ctx context.Context, cfg source.Config, log *slog.Logger, h source.Handler) error {
	d, err := source.Open(cfg, log)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Run(ctx, h)
}

func features(cfg source.Config, stateDir string, log *slog.Logger, w io.Writer, asJSON bool) error {
	if fp := agent.LoadFastPath(&cfg, log); fp != nil {
		defer fp.Close()
	}
	d, err := source.Open(cfg, log)
	if err != nil {
		return err
	}
	f := d.Features()
	if err := d.Close(); err != nil {
		log.Warn("closing probes", "err", err)
	}
	f.Checks = append(f.Checks, exporterChecks(stateDir, log)...) // web.go
	if asJSON {
		return json.NewEncoder(w).Encode(f)
	}
	fmt.Fprintf(w, "kernel:          %s\ncarrier source:  %s\ntc mechanism:    %s\ntx error counts: %v\nbond fast path:  %s\n\n", f.Kernel, f.CarrierSource, f.TCMechanism, f.Tracepoints, f.FastPath)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CHECK\tOK\tDETAIL")
	for _, c := range f.Checks {
		fmt.Fprintf(tw, "%s\t%v\t%s\n", c.Name, c.OK, c.Detail)
	}
	return tw.Flush()
}

func links(w io.Writer, asJSON bool) error {
	dump, err := registry.Dump()
	if err != nil {
		return err
	}
	t := registry.NewTable()
	t.Replace(dump)
	desc := t.Describe()
	if asJSON {
		return json.NewEncoder(w).Encode(desc)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "IFINDEX\tNAME\tKIND\tCARRIER\tMASTER\tBOND")
	for _, d := range desc {
		bond := ""
		if d.Bond != nil {
			bond = fmt.Sprintf("%s miimon=%d active=%s slaves=%s", d.Bond.Mode, d.Bond.Miimon, d.Bond.ActiveSlave, strings.Join(d.Bond.Slaves, ","))
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%v\t%s\t%s\n", d.Ifindex, d.Name, d.Kind, d.Carrier, d.Master, bond)
	}
	return tw.Flush()
}

type statsRow struct {
	Ifindex      int    `json:"ifindex"`
	Ifname       string `json:"ifname"`
	RxPackets    uint64 `json:"rx_packets"`
	RxBytes      uint64 `json:"rx_bytes"`
	TxPackets    uint64 `json:"tx_packets"`
	TxBytes      uint64 `json:"tx_bytes"`
	RxLastSeenNS uint64 `json:"rx_last_seen_ns"`
	TxLastSeenNS uint64 `json:"tx_last_seen_ns"`
	TxErrors     uint64 `json:"tx_errors"`
	TxTimeouts   uint64 `json:"tx_timeouts"`
}

func stats(pinDir string, w io.Writer, asJSON bool) error {
	m, err := traffic.OpenPinned(pinDir)
	if err != nil {
		return err
	}
	defer m.Close()
	all, err := traffic.ReadAll(m)
	if err != nil {
		return err
	}
	rows := []statsRow{}
	for idx, c := range all {
		name := ""
		if ifc, err := net.InterfaceByIndex(idx); err == nil {
			name = ifc.Name
		}
		rows = append(rows, statsRow{Ifindex: idx, Ifname: name, RxPackets: c.RxPackets, RxBytes: c.RxBytes, TxPackets: c.TxPackets,
			TxBytes: c.TxBytes, RxLastSeenNS: c.RxLastNS, TxLastSeenNS: c.TxLastNS, TxErrors: c.TxErrors, TxTimeouts: c.TxTimeouts})
	}
	slices.SortFunc(rows, func(a, b statsRow) int { return a.Ifindex - b.Ifindex })
	if asJSON {
		return json.NewEncoder(w).Encode(rows)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "IFNAME\tRX_PKTS\tRX_BYTES\tTX_PKTS\tTX_BYTES\tTX_ERR\tTX_TIMEOUT")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\n", r.Ifname, r.RxPackets, r.RxBytes, r.TxPackets, r.TxBytes, r.TxErrors, r.TxTimeouts)
	}
	return tw.Flush()
}
