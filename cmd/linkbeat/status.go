package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/linkbeat/linkbeat/internal/bond"
	"github.com/linkbeat/linkbeat/internal/fastpath"
	"github.com/linkbeat/linkbeat/internal/monotime"
	"github.com/linkbeat/linkbeat/internal/pathmon"
	"github.com/linkbeat/linkbeat/internal/registry"
	"github.com/linkbeat/linkbeat/internal/routes"
	"github.com/linkbeat/linkbeat/internal/status"
	"github.com/linkbeat/linkbeat/internal/traffic"
)

// registerOpsCommands adds `status` and `cleanup`, and returns what runs
// each, by full command name.
func registerOpsCommands(app *kingpin.Application, stdout io.Writer) map[string]func(context.Context, *slog.Logger) error {
	statusCmd := app.Command("status", "Show links, bonds, withdrawn routes and the live sources, from the pins, the state directory and netlink; works without the daemon.")
	statusJSON := statusCmd.Flag("json", "JSON output.").Bool()
	statusPinDir := statusCmd.Flag("bpffs-dir", "bpffs directory of linkbeat's pins (as given to run).").Default(defaultPinDir).String()
	statusState := statusCmd.Flag("state-dir", "linkbeat's state directory (as given to run).").Default(routes.DefaultStateDir).String()

	cleanupCmd := app.Command("cleanup", "Detach linkbeat's TC and tracepoint programs and remove its pin directory; nothing else in the bpffs is touched.")
	cleanupJSON := cleanupCmd.Flag("json", "JSON output.").Bool()
	cleanupPinDir := cleanupCmd.Flag("bpffs-dir", "bpffs directory of linkbeat's pins (as given to run).").Default(defaultPinDir).String()

	return map[string]func(context.Context, *slog.Logger) error{
		statusCmd.FullCommand(): func(context.Context, *slog.Logger) error {
			return showStatus(*statusPinDir, *statusState, stdout, *statusJSON)
		},
		cleanupCmd.FullCommand(): func(_ context.Context, log *slog.Logger) error {
			return cleanup(*cleanupPinDir, stdout, *cleanupJSON, log)
		},
	}
}

func showStatus(pinDir, stateDir string, w io.Writer, asJSON bool) error {
	in := status.Inputs{BpffsDir: pinDir}
	var err error
	if in.Links, err = registry.Dump(); err != nil {
		return err
	}
	if m, err := traffic.OpenPinnedMap(pinDir, traffic.MapCounters); err == nil {
		in.Counters, err = traffic.ReadAll(m)
		m.Close()
		if err != nil {
			return err
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if m, err := traffic.OpenPinnedMap(pinDir, traffic.MapLinkState); err == nil {
		in.LinkStates, err = traffic.ReadLinkStates(m)
		m.Close()
		if err != nil {
			return err
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if in.Paths, err = pathmon.ReadPinned(pinDir); err != nil {
		return err
	}
	if in.Bonds, err = bond.ReadState(stateDir); err != nil {
		return err
	}
	if in.FastPath, err = fastpath.ReadState(stateDir); err != nil {
		return err
	}
	if rm, sm, err := fastpath.OpenPinned(pinDir); err == nil {
		in.FastRedirects, err = fastpath.Redirects(rm)
		rm.Close()
		sm.Close()
		if err != nil {
			return err
		}
	}
	if in.Withdrawn, err = routes.ReadWithdrawn(stateDir); err != nil {
		return err
	}
	if in.Sources, err = status.ReadSources(stateDir); err != nil {
		return err
	}
	if in.Sources != nil {
		in.Running = linkbeatRunning(in.Sources.PID)
	}
	if in.Exporter, err = status.ReadExporter(stateDir); err != nil {
		return err
	}
	in.Now, in.Mono = time.Now(), monotime.Now()
	r := status.Build(in)
	if asJSON {
		return json.NewEncoder(w).Encode(r)
	}
	return status.WriteText(w, r, in.Now)
}

// linkbeatRunning says whether pid is a live linkbeat process.
func linkbeatRunning(pid int) bool {
	if pid <= 0 {
		return false
	}
	comm, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	return err == nil && strings.TrimSpace(string(comm)) == "linkbeat"
}
