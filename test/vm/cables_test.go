package vm

import "testing"

func TestCablesSplit(t *testing.T) {
	str := func(p *string) string {
		if p == nil {
			return "<none>"
		}
		return *p
	}
	for _, c := range []struct{ run, one, cables string }{
		{"", "", "^TestCables"},
		{"TestBondFastPath", "TestBondFastPath", "<none>"},
		{"TestCablesLACPFastPath", "<none>", "TestCablesLACPFastPath"},
		{"^TestBondFastPath$|^TestCablesLACP", "^TestBondFastPath$", "^TestCablesLACP"},
	} {
		one, cables := cablesSplit(c.run, "^TestCables")
		if str(one) != c.one || str(cables) != c.cables {
			t.Errorf("cablesSplit(%q) = %q, %q; want %q, %q", c.run, str(one), str(cables), c.one, c.cables)
		}
	}
}

func TestBenchSplit(t *testing.T) {
	str := func(p *string) string {
		if p == nil {
			return "<none>"
		}
		return *p
	}
	for _, c := range []struct{ run, one, cables string }{
		{"", "^TestBench", "^TestBenchCables"},
		{"TestBenchBondFastPath", "TestBenchBondFastPath", "<none>"},
		{"TestBenchCablesLACPFastPath", "<none>", "TestBenchCablesLACPFastPath"},
	} {
		one, cables := benchSplit(c.run)
		if str(one) != c.one || str(cables) != c.cables {
			t.Errorf("benchSplit(%q) = %q, %q; want %q, %q", c.run, str(one), str(cables), c.one, c.cables)
		}
	}
}
