package metrics

import (
	"io"
	"testing"

	"github.com/prometheus/common/expfmt"
)

// BenchmarkScrape is one scrape's gather and text encoding, with the real
// link dump and the Go runtime and process collectors.
func BenchmarkScrape(b *testing.B) {
	m := New(Options{})
	for b.Loop() {
		mfs, err := m.Gatherer().Gather()
		if err != nil {
			b.Fatal(err)
		}
		enc := expfmt.NewEncoder(io.Discard, expfmt.NewFormat(expfmt.TypeTextPlain))
		for _, mf := range mfs {
			if err := enc.Encode(mf); err != nil {
				b.Fatal(err)
			}
		}
	}
}
