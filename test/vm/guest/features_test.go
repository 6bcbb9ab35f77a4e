//go:build vmguest

package guest

import (
	"encoding/json"
	"testing"
)

type features struct {
	CarrierSource string `json:"carrier_source"`
	TCMechanism   string `json:"tc_mechanism"`
	Kernel        string `json:"kernel"`
	Checks        []struct {
		Name   string `json:"name"`
		OK     bool   `json:"ok"`
		Detail string `json:"detail"`
	} `json:"checks"`
}

// TestFeatures checks that linkbeat picks the best paths these kernels
// offer: fentry for carrier on both, tcx from 6.6 on and clsact before.
func TestFeatures(t *testing.T) {
	out := runLinkbeat(t, "features", "--json")
	var f features
	if err := json.Unmarshal(out, &f); err != nil {
		t.Fatalf("features --json is not the expected JSON object: %v\n%s", err, out)
	}
	for _, c := range f.Checks {
		t.Logf("check %-20s ok=%-5v %s", c.Name, c.OK, c.Detail)
	}

	if f.CarrierSource != "fentry" {
		t.Errorf("carrier_source = %q, want fentry (kernel %s has fentry)", f.CarrierSource, kernelRelease())
	}
	wantTC := "clsact"
	if kernelAtLeast(t, 6, 6) { // tcx was added in 6.6
		wantTC = "tcx"
	}
	if f.TCMechanism != wantTC {
		t.Errorf("tc_mechanism = %q, want %s on kernel %s", f.TCMechanism, wantTC, kernelRelease())
	}
	if f.Kernel != kernelRelease() {
		t.Errorf("kernel = %q, want the running kernel %q", f.Kernel, kernelRelease())
	}
	found := false
	for _, c := range f.Checks {
		if c.Name == "fentry" {
			found = true
			if !c.OK {
				t.Errorf("check fentry not ok: %s", c.Detail)
			}
		}
	}
	if !found {
		t.Errorf("no check named fentry in %s", out)
	}
}
