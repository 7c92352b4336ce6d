package monitor

import (
	"bytes"
	_ "embed"
	"fmt"
	"html/template"
	"math"
)

//go:embed report.html.tmpl
var reportHTML string

var reportTmpl = template.Must(template.New("report").Funcs(template.FuncMap{
	"bars": bars,
	"pct":  func(v float64) string { return fmt.Sprintf("%.1f %%", 100*v) },
	"f3":   func(v float64) string { return fmt.Sprintf("%.3f", v) },
}).Parse(reportHTML))

// HTML renders the report as one self-contained page: the figures, the
// alerts, and per feature the baseline's and the window's histograms as
// inline SVG.
func (r *Report) HTML() ([]byte, error) {
	var buf bytes.Buffer
	if err := reportTmpl.Execute(&buf, r); err != nil {
		return nil, fmt.Errorf("rendering the report page: %w", err)
	}
	return buf.Bytes(), nil
}

// Bar geometry of the SVG histograms.
const (
	svgW, svgH = 360, 120
	svgPad     = 16
)

// bars draws a drift's two distributions side by side per bin: baseline
// grey, window orange, scaled to the larger share.
func bars(d Drift) template.HTML {
	n := len(d.Baseline)
	if n == 0 || len(d.Window) != n {
		return ""
	}
	top := 0.0
	for i := range n {
		top = math.Max(top, math.Max(d.Baseline[i], d.Window[i]))
	}
	if top == 0 {
		top = 1
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" role="img">`, svgW, svgH+svgPad)
	slot := float64(svgW) / float64(n)
	for i := range n {
		for j, v := range []float64{d.Baseline[i], d.Window[i]} {
			h := float64(svgH) * v / top
			colour := "#9aa0a6"
			if j == 1 {
				colour = "#f29900"
			}
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`,
				float64(i)*slot+float64(j)*slot/2, float64(svgH)-h, slot/2-1, h, colour)
		}
	}
	lo, hi := fmt.Sprintf("%g", d.Lo), fmt.Sprintf("%g", d.Hi)
	if d.Categories != nil {
		lo, hi = d.Categories[0], d.Categories[len(d.Categories)-1]
	}
	fmt.Fprintf(&b, `<text x="0" y="%d" font-size="11">%s</text><text x="%d" y="%d" font-size="11" text-anchor="end">%s</text></svg>`,
		svgH+svgPad-2, template.HTMLEscapeString(lo), svgW, svgH+svgPad-2, template.HTMLEscapeString(hi))
	return template.HTML(b.String())
}
