package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/alecthomas/kingpin/v2"

	"github.com/linkbeat/linkbeat/internal/config"
	"github.com/linkbeat/linkbeat/internal/doctor"
)

// doctorFlags are `linkbeat doctor`'s flags: run's pipeline flags,
// --config.file and --bpffs-dir, so that doctor judges what run, given the same
// flags, would do.
type doctorFlags struct {
	pipeline   pipelineFlags
	configFile string
	pinDir     string
	etcDir     string
	asJSON     bool
	guide      bool
}

// registerDoctor adds the doctor command; main calls the returned
// function when the parsed command is name.
func registerDoctor(app *kingpin.Application, stdout io.Writer) (name string, run func(*slog.Logger) error) {
	cmd := app.Command("doctor", "Inspect the host's redundancy setup (bonds, multipath routes, monitored interfaces, kernel paths, bpffs) "+
		"and print findings with a severity and a fix. Exit status: 0 nothing above info, 1 warnings, 2 errors.")
	f := &doctorFlags{}
	f.pipeline.register(cmd)
	registerConfigFile(cmd, "run's config file: which interfaces and bonds it would handle, and how.", &f.configFile)
	cmd.Flag("bpffs-dir", "run's bpffs directory for its pinned maps.").Default(defaultPinDir).StringVar(&f.pinDir)
	cmd.Flag("json", "JSON output.").BoolVar(&f.asJSON)
	cmd.Flag("guide", "Print the guide to redundancy methods, with the decision tree the findings follow, and exit.").BoolVar(&f.guide)
	cmd.Flag("etc-dir", "Where to read ifupdown's and modprobe's files from (for tests).").Default("/etc").Hidden().StringVar(&f.etcDir)
	return cmd.FullCommand(), func(log *slog.Logger) error {
		code, err := f.run(stdout, log)
		if err != nil {
			return err
		}
		if code != 0 {
			os.Exit(code)
		}
		return nil
	}
}

// run writes the report (or the guide) and returns the exit status.
func (f *doctorFlags) run(w io.Writer, log *slog.Logger) (int, error) {
	if f.guide {
		if _, err := io.WriteString(w, doctor.Guide); err != nil {
			return 0, fmt.Errorf("write guide: %w", err)
		}
		return 0, nil
	}
	mon := doctor.Monitoring{Daemon: f.pipeline.config()}
	if f.configFile != "" {
		cfg, err := config.Load(f.configFile)
		if err != nil {
			mon.ConfigErr = err.Error()
		} else {
			mon.Config = cfg
		}
	}
	mon.Daemon.Interfaces = doctor.RunInterfaces(mon.Daemon.Interfaces, mon.Config)
	snap := doctor.Gather(doctor.Options{Monitor: mon, PinDir: f.pinDir, EtcDir: f.etcDir, Log: log})
	rep := doctor.NewReport(doctor.Check(snap))
	log.Debug("doctor done", "findings", len(rep.Findings), "exit_status", rep.ExitStatus)
	if f.asJSON {
		return rep.ExitStatus, rep.WriteJSON(w)
	}
	return rep.ExitStatus, rep.WriteText(w, 100)
}
