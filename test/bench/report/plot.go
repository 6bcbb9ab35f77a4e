package main

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/linkbeat/linkbeat/test/bench"
)

// plotPrefix starts every plot file name, so a new report can remove the
// last one's plots and nothing else.
const plotPrefix = "plot-"

// isTime says whether samples in unit are latencies or outages: they get
// a CDF next to the distribution.
func isTime(unit string) bool {
	switch unit {
	case "s", "ms", "us", "µs", "ns":
		return true
	}
	return false
}

// writePlots draws, for every scenario with samples, their distribution
// per contender (box and points), and for latency scenarios their CDF per
// contender, as SVG files in dir.
func writePlots(dir string, runs []*bench.Run) (map[string]plotRef, error) {
	old, err := filepath.Glob(filepath.Join(dir, plotPrefix+"*.svg"))
	if err != nil {
		return nil, err
	}
	for _, f := range old {
		if err := os.Remove(f); err != nil {
			return nil, fmt.Errorf("remove old plot: %w", err)
		}
	}
	refs := map[string]plotRef{}
	for _, r := range runs {
		for i := range r.Scenarios {
			s := &r.Scenarios[i]
			var with []bench.Contender
			for _, c := range s.Contenders {
				if len(c.Samples) > 0 {
					with = append(with, c)
				}
			}
			if len(with) == 0 {
				continue
			}
			key := plotKey(r, s)
			var ref plotRef
			ref.box = plotPrefix + key + "-distribution.svg"
			if err := boxPlot(filepath.Join(dir, ref.box), where(r)+": "+s.ID, s.Unit, with); err != nil {
				return nil, fmt.Errorf("%s: %w", key, err)
			}
			if isTime(s.Unit) {
				ref.cdf = plotPrefix + key + "-cdf.svg"
				if err := cdfPlot(filepath.Join(dir, ref.cdf), where(r)+": "+s.ID, s.Unit, with); err != nil {
					return nil, fmt.Errorf("%s: %w", key, err)
				}
			}
			refs[key] = ref
		}
	}
	return refs, nil
}

// scale decides between a linear and a log axis: contenders that differ
// by orders of magnitude (linkbeat against ifplugd) need the log axis to
// both be visible. On a log axis, values <= 0 are drawn at floor.
func scale(cs []bench.Contender) (logAxis bool, floor, hi float64, clamped bool) {
	lo := math.Inf(1)
	for _, c := range cs {
		for _, v := range c.Samples {
			if v > 0 {
				lo = math.Min(lo, v)
			} else {
				clamped = true
			}
			hi = math.Max(hi, v)
		}
	}
	if math.IsInf(lo, 1) || hi/lo < 50 {
		return false, 0, hi, false
	}
	return true, lo / 2, hi, clamped
}

func axisNote(floor float64, clamped bool) string {
	if clamped {
		return fmt.Sprintf(" (log; values <= 0 drawn at %s)", num(floor))
	}
	return " (log)"
}

func values(c bench.Contender, floor float64) plotter.Values {
	v := make(plotter.Values, len(c.Samples))
	for i, x := range c.Samples {
		v[i] = math.Max(x, floor)
	}
	return v
}

func newPlot(title, yLabel string, logAxis bool, floor float64, clamped bool) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.Y.Label.Text = yLabel
	if logAxis {
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
		p.Y.Label.Text += axisNote(floor, clamped)
	}
	return p
}

func boxPlot(path, title, unit string, cs []bench.Contender) error {
	logAxis, floor, _, clamped := scale(cs)
	p := newPlot(title, unit, logAxis, floor, clamped)
	var names []string
	for i, c := range cs {
		vs := values(c, floor)
		if len(vs) >= 5 {
			b, err := plotter.NewBoxPlot(vg.Points(30), float64(i), vs)
			if err != nil {
				return err
			}
			b.FillColor = withAlpha(plotutil.Color(i), 0x60)
			p.Add(b)
		}
		// Every sample as a point, spread sideways so they do not hide
		// each other: with few trials the points are the distribution.
		pts := make(plotter.XYs, len(vs))
		for k, v := range vs {
			pts[k] = plotter.XY{X: float64(i) + 0.25 + float64(k%9-4)*0.02, Y: v}
		}
		sc, err := plotter.NewScatter(pts)
		if err != nil {
			return err
		}
		sc.GlyphStyle.Color = plotutil.Color(i)
		sc.GlyphStyle.Radius = vg.Points(1.5)
		sc.GlyphStyle.Shape = draw.CircleGlyph{}
		p.Add(sc)
		names = append(names, fmt.Sprintf("%s (N=%d)", c.Name, len(vs)))
	}
	p.NominalX(names...)
	p.X.Min, p.X.Max = -0.6, float64(len(cs))-0.4
	return p.Save(vg.Length(160+110*len(cs))*vg.Millimeter/2.2, 110*vg.Millimeter, path)
}

func cdfPlot(path, title, unit string, cs []bench.Contender) error {
	logAxis, floor, hi, clamped := scale(cs)
	p := plot.New()
	p.Title.Text = title + " (CDF)"
	p.X.Label.Text = unit
	p.Y.Label.Text = "fraction of trials ≤ x"
	if logAxis {
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = plot.LogTicks{Prec: -1}
		p.X.Label.Text += axisNote(floor, clamped)
	}
	// Room on the right for the legend.
	p.X.Max = hi * 2
	if logAxis {
		p.X.Max = hi * 200
	}
	p.Y.Min, p.Y.Max = 0, 1
	p.Legend.Top = true
	p.Legend.Left = false
	for i, c := range cs {
		vs := values(c, floor)
		slices.Sort(vs)
		// A step function: the fraction jumps at each sample.
		pts := make(plotter.XYs, 0, 2*len(vs))
		for k, v := range vs {
			pts = append(pts, plotter.XY{X: v, Y: float64(k) / float64(len(vs))}, plotter.XY{X: v, Y: float64(k+1) / float64(len(vs))})
		}
		l, err := plotter.NewLine(pts)
		if err != nil {
			return err
		}
		l.Color = plotutil.Color(i)
		l.Width = vg.Points(1.5)
		l.Dashes = plotutil.Dashes(i)
		p.Add(l)
		p.Legend.Add(fmt.Sprintf("%s (N=%d)", c.Name, len(vs)), l)
	}
	return p.Save(160*vg.Millimeter, 100*vg.Millimeter, path)
}

func withAlpha(c color.Color, a uint8) color.Color {
	r, g, b, _ := c.RGBA()
	return color.NRGBA{R: uint8(r >> 8), G: uint8(g >> 8), B: uint8(b >> 8), A: a}
}
