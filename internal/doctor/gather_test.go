package doctor

import "testing"

func TestParseSysctlBool(t *testing.T) {
	for in, want := range map[string]bool{"0\n": false, "1\n": true, " 2 ": true} {
		if got, err := ParseSysctlBool(in); err != nil || got != want {
			t.Errorf("ParseSysctlBool(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := ParseSysctlBool("yes"); err == nil {
		t.Error("a non-number parsed")
	}
}
