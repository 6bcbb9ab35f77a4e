package deploy

import (
	"bytes"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

func runBin(t *testing.T, bin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// The command line behaves as Prometheus' exporters' do (node_exporter,
// ebpf_exporter): --version, help on stdout, promslog's log flags.
func TestCLIConventions(t *testing.T) {
	bin := builtBinary(t)
	for _, args := range [][]string{{"--version"}, {"version"}} {
		out, errOut, err := runBin(t, bin, args...)
		if err != nil || !strings.HasPrefix(out, "linkbeat, version ") || !strings.Contains(out, "go version:") || errOut != "" {
			t.Errorf("linkbeat %s: %v, stdout %q, stderr %q", strings.Join(args, " "), err, out, errOut)
		}
	}
	for _, args := range [][]string{{"-h"}, {"--help"}, {"run", "--help"}, {"doctor", "-h"}} {
		out, errOut, err := runBin(t, bin, args...)
		if err != nil || !strings.Contains(out, "usage: linkbeat") || errOut != "" {
			t.Errorf("linkbeat %s: %v; want usage on stdout, nothing on stderr: stdout %.200q, stderr %.200q", strings.Join(args, " "), err, out, errOut)
		}
	}

	// No internal sentinel shows as a default: --help-long has every
	// command's flags.
	long, _, err := runBin(t, bin, "--help-long")
	if err != nil {
		t.Fatal(err)
	}
	if m := regexp.MustCompile(`--[a-z.-]+=-1\b`).FindAllString(long, -1); len(m) > 0 {
		t.Errorf("--help shows sentinel defaults: %v", m)
	}
	for _, want := range []string{"--log.level=info", "--log.format=logfmt", "--config.file=FILE", "--up-delay=MS"} {
		if !strings.Contains(long, want) {
			t.Errorf("--help-long has no %s", want)
		}
	}

	// promslog's level and format: `features` logs one info line, as
	// JSON with --log.format=json, and none at --log.level=error.
	requireRoot(t, "features loads BPF programs to probe the kernel")
	feat := []string{"features", "--json", "--carrier-source", "netlink"}
	_, errOut, err := runBin(t, bin, append([]string{"--log.format=json"}, feat...)...)
	if err != nil || !strings.HasPrefix(errOut, `{"time":`) || !strings.Contains(errOut, `"msg":"features"`) {
		t.Errorf("--log.format=json: %v, stderr %q; want a JSON line", err, errOut)
	}
	if _, errOut, err := runBin(t, bin, append([]string{"--log.level=error"}, feat...)...); err != nil || errOut != "" {
		t.Errorf("--log.level=error: %v, stderr %q; want no info line", err, errOut)
	}
	if _, errOut, err := runBin(t, bin, "--log.level=loud", "version"); err == nil || !strings.Contains(errOut, "loud") {
		t.Errorf("--log.level=loud: %v, stderr %q; want refused", err, errOut)
	}
}
