package testkit

import (
	"strings"
	"testing"
)

const exposition = `# HELP x_total An example.
# TYPE x_total counter
x_total{a="b"} 3
x_total{a="c",d="e"} 1e+00
up 1
`

func TestSample(t *testing.T) {
	if v, ok, err := Sample(exposition, `x_total{a="b"}`); err != nil || !ok || v != 3 {
		t.Errorf(`x_total{a="b"}: %v %v %v, want 3`, v, ok, err)
	}
	if _, ok, err := Sample(exposition, `x_total{a="z"}`); err != nil || ok {
		t.Errorf("an absent series: ok %v, err %v", ok, err)
	}
	if _, _, err := Sample("y 1x\n", "y"); err == nil {
		t.Error("a value that is not a number gave no error")
	}
}

func TestParseMetrics(t *testing.T) {
	m := ParseMetrics(exposition)
	if m[`x_total{a="c",d="e"}`] != "1" || m["up"] != "1" || len(m) != 3 {
		t.Errorf("ParseMetrics = %v", m)
	}
}

func TestSeries(t *testing.T) {
	fams, err := Families(strings.NewReader(exposition))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(Series(fams, "x_total", nil)); n != 2 {
		t.Errorf("no labels asked: %d series, want 2", n)
	}
	got := Series(fams, "x_total", map[string]string{"d": "e"})
	if len(got) != 1 || got[0].GetCounter().GetValue() != 1 {
		t.Errorf(`d="e": %v`, got)
	}
	if n := len(Series(fams, "absent", nil)); n != 0 {
		t.Errorf("an absent family: %d series", n)
	}
	if _, err := Families(strings.NewReader("x{ 1\n")); err == nil {
		t.Error("a broken exposition gave no error")
	}
}
