package main

import (
	"errors"
	"io/fs"
	"os"

	"github.com/alecthomas/kingpin/v2"
)

// defaultConfigFile is where the package and `make install` put the config.
const defaultConfigFile = "/etc/linkbeat/linkbeat.yaml"

// registerConfigFile adds --config.file (and its older name --config) to
// cmd. Both run and doctor use it, so that doctor judges the file run reads.
// Not given, path becomes defaultConfigFile when that exists, else "" (the
// embedded defaults); --config.file= asks for the embedded defaults.
func registerConfigFile(cmd *kingpin.CmdClause, help string, path *string) {
	registerConfigFileAt(cmd, help, path, defaultConfigFile)
}

// registerConfigFileAt is registerConfigFile with the default elsewhere, for tests.
func registerConfigFileAt(cmd *kingpin.CmdClause, help string, path *string, def string) {
	var set bool
	cmd.Flag("config.file", help+" Default: "+def+" if it exists, else the embedded defaults.").
		PlaceHolder("FILE").IsSetByUser(&set).StringVar(path)
	cmd.Flag("config", "Old name of --config.file.").Hidden().IsSetByUser(&set).StringVar(path)
	cmd.Action(func(*kingpin.ParseContext) error {
		if !set {
			*path = existingOrNone(def)
		}
		return nil
	})
}

// existingOrNone returns path unless nothing is there. A file that exists
// but cannot be read is returned, so that loading it says why.
func existingOrNone(path string) string {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return ""
	}
	return path
}
