package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/alecthomas/kingpin/v2"
)

func TestConfigFileFlag(t *testing.T) {
	dir := t.TempDir()
	present := filepath.Join(dir, "linkbeat.yaml")
	if err := os.WriteFile(present, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.yaml")
	for _, tc := range []struct {
		name string
		def  string
		args []string
		want string
	}{
		{"default exists", present, nil, present},
		{"default missing: embedded defaults", missing, nil, ""},
		{"--config.file wins", present, []string{"--config.file=/x.yaml"}, "/x.yaml"},
		{"--config is its alias", present, []string{"--config", "/y.yaml"}, "/y.yaml"},
		{"--config.file= asks for the embedded defaults", present, []string{"--config.file="}, ""},
		{"a missing file given is kept, to fail loading", missing, []string{"--config.file=" + missing}, missing},
	} {
		t.Run(tc.name, func(t *testing.T) {
			app := kingpin.New("t", "")
			cmd := app.Command("run", "")
			var got string
			registerConfigFileAt(cmd, "config", &got, tc.def)
			if _, err := app.Parse(append([]string{"run"}, tc.args...)); err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("config file %q, want %q", got, tc.want)
			}
		})
	}
}
