package bench

import (
	"fmt"
	"image/color"
	"math"
	"os"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// PNG charts of the reports: bars with min/max whiskers, latency
// distributions.

// panel is one chart: for each category (a mode, or a group size) one
// bar per series, each with its whisker.
type panel struct {
	title, unit string
	cats        []string
	series      []series
	horizontal  bool
}

type series struct {
	name         string
	med, lo, hi  []float64
	color        color.Color
	showInLegend bool
}

// modeColors keeps a mode's color across charts.
var modeColors = map[string]color.Color{
	ModePlain:          color.RGBA{150, 150, 150, 255},
	ModeFlat:           color.RGBA{90, 140, 200, 255},
	ModeKernel:         color.RGBA{230, 140, 40, 255},
	ModeBPF:            color.RGBA{50, 160, 80, 255},
	ModeKernelFiltered: color.RGBA{150, 100, 190, 255},
	"empty":            color.RGBA{190, 190, 190, 255},
	"program":          color.RGBA{50, 160, 80, 255},
}

// whiskers draws a min-max line with caps at each bar.
type whiskers struct {
	x, lo, hi []float64
	offset    vg.Length
	horiz     bool
}

func (w whiskers) Plot(c draw.Canvas, p *plot.Plot) {
	trX, trY := p.Transforms(&c)
	sty := draw.LineStyle{Color: color.Black, Width: vg.Points(0.8)}
	const capw = vg.Length(3)
	for i := range w.x {
		if w.lo[i] == w.hi[i] {
			continue // one measurement: nothing to show
		}
		if w.horiz {
			y := trY(w.x[i]) + w.offset
			x0, x1 := trX(w.lo[i]), trX(w.hi[i])
			c.StrokeLine2(sty, x0, y, x1, y)
			c.StrokeLine2(sty, x0, y-capw, x0, y+capw)
			c.StrokeLine2(sty, x1, y-capw, x1, y+capw)
			continue
		}
		x := trX(w.x[i]) + w.offset
		y0, y1 := trY(w.lo[i]), trY(w.hi[i])
		c.StrokeLine2(sty, x, y0, x, y1)
		c.StrokeLine2(sty, x-capw, y0, x+capw, y0)
		c.StrokeLine2(sty, x-capw, y1, x+capw, y1)
	}
}

// DataRange makes the axes hold the whiskers.
func (w whiskers) DataRange() (xmin, xmax, ymin, ymax float64) {
	xmin, xmax, ymin, ymax = math.Inf(1), math.Inf(-1), 0, math.Inf(-1)
	for i := range w.x {
		xmin, xmax = min(xmin, w.x[i]), max(xmax, w.x[i])
		ymax = max(ymax, w.hi[i])
	}
	if w.horiz {
		return 0, ymax, xmin, xmax
	}
	return
}

// numTicks are the default ticks labelled like the tables' figures.
type numTicks struct{}

func (numTicks) Ticks(lo, hi float64) []plot.Tick {
	ts := plot.DefaultTicks{}.Ticks(lo, hi)
	for i := range ts {
		if ts[i].Label != "" {
			ts[i].Label = num(ts[i].Value)
		}
	}
	return ts
}

// barPlot makes one panel's plot.
func barPlot(pn panel) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = pn.title
	width := vg.Points(math.Max(6, 60/float64(len(pn.series))))
	if pn.horizontal {
		width = vg.Points(math.Max(3, 14/float64(len(pn.series))))
		p.X.Label.Text = pn.unit
		p.X.Tick.Marker = numTicks{}
	} else {
		p.Y.Label.Text = pn.unit
		p.Y.Tick.Marker = numTicks{}
	}
	for i, s := range pn.series {
		bars, err := plotter.NewBarChart(plotter.Values(s.med), width)
		if err != nil {
			return nil, err
		}
		bars.Horizontal = pn.horizontal
		bars.Color = s.color
		bars.LineStyle.Width = 0
		off := (vg.Length(i) - vg.Length(len(pn.series)-1)/2) * width
		bars.Offset = off
		xs := make([]float64, len(s.med))
		for j := range xs {
			xs[j] = float64(j)
		}
		p.Add(bars, whiskers{x: xs, lo: s.lo, hi: s.hi, offset: off, horiz: pn.horizontal})
		if s.showInLegend {
			p.Legend.Add(s.name, bars)
		}
	}
	if pn.horizontal {
		p.NominalY(pn.cats...)
	} else {
		p.NominalX(pn.cats...)
	}
	p.Legend.Top = true
	return p, nil
}

// writePanels draws panels in a grid of cols columns to a PNG file.
func writePanels(path string, panels []panel, cols int, tileW, tileH vg.Length) error {
	if len(panels) == 0 {
		return nil
	}
	rows := (len(panels) + cols - 1) / cols
	cols = min(cols, len(panels))
	plots := make([][]*plot.Plot, rows)
	for i := range plots {
		plots[i] = make([]*plot.Plot, cols)
	}
	for i, pn := range panels {
		p, err := barPlot(pn)
		if err != nil {
			return fmt.Errorf("chart %s: %w", pn.title, err)
		}
		plots[i/cols][i%cols] = p
	}
	return writeGrid(path, plots, tileW, tileH)
}

// writeGrid renders plots (nil cells stay empty) to a PNG file.
func writeGrid(path string, plots [][]*plot.Plot, tileW, tileH vg.Length) error {
	rows, cols := len(plots), len(plots[0])
	img := vgimg.NewWith(vgimg.UseWH(tileW*vg.Length(cols), tileH*vg.Length(rows)), vgimg.UseDPI(96))
	dc := draw.New(img)
	dc.SetColor(color.White)
	dc.Fill(dc.Rectangle.Path())
	tiles := draw.Tiles{Rows: rows, Cols: cols, PadX: vg.Millimeter * 4, PadY: vg.Millimeter * 4,
		PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
	canvases := plot.Align(plots, tiles, dc)
	for i := range plots {
		for j, p := range plots[i] {
			if p != nil {
				p.Draw(canvases[i][j])
			}
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// cdfPlot draws latency distributions, one line per name, x in µs.
func cdfPlot(title string, names []string, quantiles [][]float64) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "latency µs (log)"
	p.Y.Label.Text = "percentile"
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Legend.Top = false
	p.Legend.Left = false
	for i, q := range quantiles {
		xys := make(plotter.XYs, 0, len(q))
		for pc, v := range q {
			xys = append(xys, plotter.XY{X: math.Max(v, 0.1), Y: float64(pc)})
		}
		l, err := plotter.NewLine(xys)
		if err != nil {
			return nil, err
		}
		l.Color = modeColors[names[i]]
		l.Width = vg.Points(1.5)
		p.Add(l)
		p.Legend.Add(names[i], l)
	}
	p.Add(plotter.NewGrid())
	return p, nil
}

// WriteCharts draws the suite's figures into dir: a panel per row (a bar
// per mode with its min-max whisker; the group sizes side by side for the
// security-group suite) and the latency distributions. It returns the
// files' names.
func (r *PathReport) WriteCharts(dir string) ([]string, error) {
	var panels []panel
	type key struct{ metric, field string }
	order, byKey := groupBy(r.Rows, func(row Row) key { return key{row.Metric, row.Field} })
	for _, k := range order {
		rows := byKey[k]
		pn := panel{title: rows[0].Label, unit: rows[0].Unit}
		for _, row := range rows {
			pn.cats = append(pn.cats, row.Group)
		}
		for _, m := range r.Modes {
			s := series{name: m.Name, color: modeColors[m.Name], showInLegend: len(panels) == 0}
			for _, row := range rows {
				f := row.Figures[m.Name]
				s.med, s.lo, s.hi = append(s.med, f.Median), append(s.lo, f.Min), append(s.hi, f.Max)
			}
			pn.series = append(pn.series, s)
		}
		panels = append(panels, pn)
	}
	name := r.Suite + ".png"
	if err := writePanels(dir+"/"+name, panels, 3, 5*vg.Inch, 3.4*vg.Inch); err != nil {
		return nil, err
	}
	out := []string{name}
	if len(r.Latency) == 0 {
		return out, nil
	}
	type lkey struct{ group, metric string }
	lorder, dists := groupBy(r.Latency, func(d Distribution) lkey { return lkey{d.Group, d.Metric} })
	var plots []*plot.Plot
	for _, k := range lorder {
		var names []string
		var qs [][]float64
		for _, d := range dists[k] {
			names, qs = append(names, d.Mode), append(qs, d.Quantiles)
		}
		title := map[string]string{"rr": "TCP request/response latency", "crr": "TCP connect/request/response/close"}[k.metric]
		if k.group != "" {
			title += ", " + k.group + " rules"
		}
		p, err := cdfPlot(title, names, qs)
		if err != nil {
			return nil, err
		}
		plots = append(plots, p)
	}
	cols := min(3, len(plots))
	grid := make([][]*plot.Plot, (len(plots)+cols-1)/cols)
	for i := range grid {
		grid[i] = make([]*plot.Plot, cols)
	}
	for i, p := range plots {
		grid[i/cols][i%cols] = p
	}
	lname := r.Suite + "-latency.png"
	if err := writeGrid(dir+"/"+lname, grid, 5*vg.Inch, 3.4*vg.Inch); err != nil {
		return nil, err
	}
	return append(out, lname), nil
}

// groupBy groups items by key, keeping the order keys first appear in.
func groupBy[K comparable, V any](items []V, key func(V) K) ([]K, map[K][]V) {
	var order []K
	groups := map[K][]V{}
	for _, it := range items {
		k := key(it)
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], it)
	}
	return order, groups
}
