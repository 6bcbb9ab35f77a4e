//go:build linux

package vmctl

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/linkbeat/linkbeat/test/bench"
)

// ResultsPortName is the virtio-serial port for benchmark figures. The host
// keeps what the guest writes there as a file (results.jsonl next to the
// guest's test output) and turns it into the results JSON: figures never
// travel through the test log, where lines get split and interleaved.
const ResultsPortName = "linkbeat.results"

// Result is one line of the results port: a scenario measured in the
// guest, on the kernel it ran.
type Result struct {
	// Kernel is the guest's uname -r.
	Kernel   string         `json:"kernel"`
	Scenario bench.Scenario `json:"scenario"`
}

// WriteResult sends one scenario's figures to the host.
func WriteResult(r Result) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("vmctl: encode result %s: %w", r.Scenario.ID, err)
	}
	mu.Lock()
	defer mu.Unlock()
	f, err := openPort(ResultsPortName, os.O_WRONLY)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("vmctl: write result %s: %w", r.Scenario.ID, err)
	}
	return nil
}
