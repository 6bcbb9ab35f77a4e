package testkit

import (
	"fmt"
	"strconv"
	"strings"
)

// ParseMetrics maps each sample of a text exposition ("name{labels}") to
// its value as written, with numbers in their shortest form.
func ParseMetrics(body string) map[string]string {
	m := map[string]string{}
	for _, l := range strings.Split(body, "\n") {
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		if i < 0 {
			continue
		}
		v := l[i+1:]
		if f, err := strconv.ParseFloat(v, 64); err == nil {
			v = strconv.FormatFloat(f, 'f', -1, 64)
		}
		m[l[:i]] = v
	}
	return m
}

// Sample returns the value of one series in an exposition, by its exact
// name and labels as printed, e.g. `x_total{a="b"}`; ok is false when the
// series is absent.
func Sample(exposition, series string) (v float64, ok bool, err error) {
	for _, line := range strings.Split(exposition, "\n") {
		if rest, found := strings.CutPrefix(line, series+" "); found {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err != nil {
				return 0, true, fmt.Errorf("series %s: value %q: %w", series, rest, err)
			}
			return v, true, nil
		}
	}
	return 0, false, nil
}
