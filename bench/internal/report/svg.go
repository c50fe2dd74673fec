package report

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"strconv"
)

// Chart geometry, in SVG user units (pixels).
const (
	svgWidth    = 1000
	labelRight  = 250 // labels end here, right-aligned
	barLeft     = 260 // x of zero on every panel's scale
	barRight    = 880 // x of the panel's axis maximum
	rowHeight   = 20
	barHeight   = 13
	panelTitleH = 28
	axisH       = 44
	panelGap    = 18
	headerH     = 70
)

// Bar colours: stages and the rest (peers and the floor).
const (
	colourStage = "#1f77b4"
	colourPeer  = "#e6711b"
	colourInk   = "#222222"
	colourGrid  = "#d0d0d0"
)

// WriteSVG draws the chart: one panel per workload, one horizontal bar
// per row (median sec/op on the panel's own linear scale) with the 95%
// confidence interval as a whisker. The same data gives the same bytes.
func WriteSVG(w io.Writer, d *Data) error {
	workloads := d.WorkloadsPresent()
	height := headerH
	for _, wl := range workloads {
		height += panelTitleH + rowHeight*len(d.RowsOf(wl)) + axisH + panelGap
	}

	var b bytes.Buffer
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="Helvetica, Arial, sans-serif" font-size="12">`+"\n",
		svgWidth, height, svgWidth, height)
	p("<title>Median time per operation of every stage and peer, one panel per workload</title>\n")
	p(`<rect x="0" y="0" width="%d" height="%d" fill="#ffffff"/>`+"\n", svgWidth, height)
	p(`<text x="10" y="24" font-size="16" font-weight="bold" fill="%s">Median time per operation (lower is faster); whiskers: 95%% confidence interval</text>`+"\n", colourInk)
	legend := func(x int, colour, label string) {
		p(`<rect x="%d" y="38" width="14" height="12" fill="%s"/>`+"\n", x, colour)
		p(`<text x="%d" y="48" fill="%s">%s</text>`+"\n", x+20, colourInk, esc(label))
	}
	legend(10, colourStage, "stage of this course")
	legend(200, colourPeer, "peer (standard library, gRPC) or the raw TCP floor")

	y := headerH
	for _, wl := range workloads {
		y = panel(&b, d.RowsOf(wl), wl, y)
	}
	p("</svg>\n")
	_, err := w.Write(b.Bytes())
	return err
}

// panel draws one workload's panel with its top at y and returns the y
// below it.
func panel(b *bytes.Buffer, rows []*Row, workload string, y int) int {
	p := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	p(`<text x="10" y="%d" font-size="14" font-weight="bold" fill="%s">%s</text>`+"\n", y+18, colourInk, esc(workload))
	y += panelTitleH

	var top float64
	for _, r := range rows {
		s := r.Time().Summary
		top = math.Max(top, s.Center)
		if !math.IsInf(s.Hi, 0) {
			top = math.Max(top, s.Hi)
		}
	}
	step, axisMax := niceAxis(top)
	x := func(v float64) float64 { return barLeft + (barRight-barLeft)*v/axisMax }
	bottom := y + rowHeight*len(rows)

	for t := 0.0; t <= axisMax*(1+1e-9); t += step {
		p(`<line x1="%s" y1="%d" x2="%s" y2="%d" stroke="%s" stroke-width="1"/>`+"\n", num(x(t)), y, num(x(t)), bottom+4, colourGrid)
		label := "0"
		if t > 0 {
			label = FormatDuration(t)
		}
		p(`<text x="%s" y="%d" text-anchor="middle" fill="%s">%s</text>`+"\n", num(x(t)), bottom+18, colourInk, esc(label))
	}
	p(`<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="1"/>`+"\n", barLeft, bottom+4, barRight, bottom+4, colourInk)
	p(`<text x="%d" y="%d" text-anchor="middle" fill="%s">sec/op, linear scale from 0 to %s</text>`+"\n",
		(barLeft+barRight)/2, bottom+36, colourInk, esc(FormatDuration(axisMax)))

	for i, r := range rows {
		s := r.Time().Summary
		ry := y + i*rowHeight
		mid := float64(ry) + rowHeight/2.0
		colour := colourPeer
		if IsStage(r.System) {
			colour = colourStage
		}
		p(`<text x="%d" y="%s" text-anchor="end" fill="%s">%s</text>`+"\n", labelRight, num(mid+4), colourInk, esc(r.Label()))
		p(`<rect x="%d" y="%s" width="%s" height="%d" fill="%s"><title>%s</title></rect>`+"\n",
			barLeft, num(mid-barHeight/2.0), num(x(s.Center)-barLeft), barHeight, colour,
			esc(r.Workload+" "+r.Label()+": "+timeCell(r.Time())))
		end := x(s.Center)
		valueText := FormatDuration(s.Center)
		if math.IsInf(s.Lo, 0) || math.IsInf(s.Hi, 0) {
			valueText += fmt.Sprintf(" (n=%d, no interval)", r.Time().N())
		} else {
			lo, hi := x(s.Lo), x(s.Hi)
			p(`<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="%s" stroke-width="1.5"/>`+"\n", num(lo), num(mid), num(hi), num(mid), colourInk)
			for _, cx := range []float64{lo, hi} {
				p(`<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="%s" stroke-width="1.5"/>`+"\n", num(cx), num(mid-4), num(cx), num(mid+4), colourInk)
			}
			end = math.Max(end, hi)
		}
		p(`<text x="%s" y="%s" fill="%s">%s</text>`+"\n", num(end+6), num(mid+4), colourInk, esc(valueText))
	}
	return bottom + axisH + panelGap
}

// niceAxis chooses a tick step of 1, 2 or 5 times a power of ten giving
// four to ten ticks, and the axis maximum: the first tick at or above top.
func niceAxis(top float64) (step, axisMax float64) {
	if top <= 0 || math.IsInf(top, 0) || math.IsNaN(top) {
		return 1, 1
	}
	rough := top / 5
	pow := math.Pow(10, math.Floor(math.Log10(rough)))
	step = 10 * pow
	for _, m := range []float64{1, 2, 5} {
		if m*pow >= rough {
			step = m * pow
			break
		}
	}
	axisMax = math.Ceil(top/step-1e-9) * step
	return step, axisMax
}

// num formats a coordinate with one decimal, the same way every time.
func num(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

func esc(s string) string {
	var b bytes.Buffer
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}
