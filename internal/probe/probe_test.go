package probe

import (
	"strings"
	"testing"
)

func TestParseCapEff(t *testing.T) {
	status := "Name:\tlinkbeat\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\nCapBnd:\t000001ffffffffff\n"
	eff, err := ParseCapEff(strings.NewReader(status))
	if err != nil || eff != 0x1ffffffffff {
		t.Fatalf("got %x, %v", eff, err)
	}
	if _, err := ParseCapEff(strings.NewReader("Name:\tx\n")); err == nil {
		t.Fatal("missing CapEff accepted")
	}
}

func TestMissingCaps(t *testing.T) {
	all := uint64(1<<capNetAdmin | 1<<capBPF | 1<<capPerfmon)
	if m := MissingCaps(all); len(m) != 0 {
		t.Fatalf("all held, missing %v", m)
	}
	if m := MissingCaps(1<<capNetAdmin | 1<<capSysAdmin); len(m) != 0 {
		t.Fatalf("CAP_SYS_ADMIN covers BPF and PERFMON, missing %v", m)
	}
	m := MissingCaps(1 << capBPF)
	if strings.Join(m, ",") != "CAP_NET_ADMIN,CAP_PERFMON" {
		t.Fatalf("missing %v", m)
	}
	if len(MissingCaps(0)) != 3 {
		t.Fatal("no caps should miss three")
	}
}
