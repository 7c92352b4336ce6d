// Package report renders a training run as a self-contained HTML page with
// PNG plots drawn with the standard library: loss, accuracy and learning
// rate curves, a confusion-matrix picture, per-class precision and recall,
// and the worst misclassified validation images.
package report

import (
	"bytes"
	"fmt"
	"html/template"
	"image"
	"image/png"
	"math"
	"sort"
)

// Point is one epoch of the learning curves.
type Point struct {
	Epoch                                int
	TrainLoss, ValLoss, TrainAcc, ValAcc float64
	LearningRate, ImagesPerSec, Seconds  float64
}

// StepPoint is a sample of the training curves between epochs (every
// report.curve_every_steps steps); Epoch is fractional.
type StepPoint struct {
	Epoch                             float64
	TrainLoss, TrainAcc, LearningRate float64
}

// Example is one validation image with its prediction.
type Example struct {
	Image      image.Image
	Path       string
	True, Pred string
	Confidence float64 // softmax probability of Pred
	Correct    bool
}

// Table is an extra section rendered as a table.
type Table struct {
	Title  string
	Header []string
	Rows   [][]string
}

// Input is everything a report shows.
type Input struct {
	Title      string
	Summary    [][2]string
	Labels     []string
	History    []Point
	Steps      []StepPoint // optional: finer training curves than History
	Confusion  [][]int     // [true][predicted]
	Examples   []Example
	Skipped    [][2]string // path, reason
	Tables     []Table
	ConfigYAML string
}

// ClassStats are per-class precision and recall.
type ClassStats struct {
	Index                 int
	Label                 string
	Support               int
	Precision, Recall, F1 float64
}

// PerClass computes precision, recall and F1 from a confusion matrix.
func PerClass(labels []string, m [][]int) []ClassStats {
	out := make([]ClassStats, len(m))
	for c := range m {
		tp := m[c][c]
		var rowSum, colSum int
		for j := range m {
			rowSum += m[c][j]
			colSum += m[j][c]
		}
		s := ClassStats{Index: c, Label: labels[c], Support: rowSum}
		if colSum > 0 {
			s.Precision = float64(tp) / float64(colSum)
		}
		if rowSum > 0 {
			s.Recall = float64(tp) / float64(rowSum)
		}
		if s.Precision+s.Recall > 0 {
			s.F1 = 2 * s.Precision * s.Recall / (s.Precision + s.Recall)
		}
		out[c] = s
	}
	return out
}

// Worst picks up to n examples to show: misclassified ones by descending
// confidence in the wrong class, then (if fewer) correct ones by ascending
// confidence. probs[i] are image i's softmax probabilities.
func Worst(probs [][]float64, truth []int, n int) []int {
	type cand struct {
		i     int
		score float64
		wrong bool
	}
	var cs []cand
	for i, p := range probs {
		pred := 0
		for j := range p {
			if p[j] > p[pred] {
				pred = j
			}
		}
		if pred != truth[i] {
			cs = append(cs, cand{i, p[pred], true})
		} else {
			cs = append(cs, cand{i, -p[pred], false})
		}
	}
	sort.SliceStable(cs, func(a, b int) bool {
		if cs[a].wrong != cs[b].wrong {
			return cs[a].wrong
		}
		return cs[a].score > cs[b].score
	})
	out := make([]int, 0, n)
	for _, c := range cs[:min(n, len(cs))] {
		out = append(out, c.i)
	}
	return out
}

// Render returns the report's files: index.html and its PNGs.
func Render(in Input) (map[string][]byte, error) {
	files := map[string][]byte{}
	put := func(name string, img image.Image) error {
		var b bytes.Buffer
		if err := png.Encode(&b, img); err != nil {
			return err
		}
		files[name] = b.Bytes()
		return nil
	}
	for _, p := range curves(in) {
		if err := put(p.name, LinePlot(p.title, "epoch", p.s, 560, 300, p.log)); err != nil {
			return nil, err
		}
	}
	if len(in.Confusion) > 0 {
		if err := put("confusion.png", ConfusionPlot(in.Confusion, in.Labels)); err != nil {
			return nil, err
		}
	}
	type exView struct {
		File, Path, True, Pred string
		Confidence             string
		Correct                bool
	}
	var exs []exView
	for i, e := range in.Examples {
		name := fmt.Sprintf("example_%02d.png", i)
		img := e.Image
		if b := img.Bounds(); b.Dx() < 96 {
			img = Upscale(img, int(math.Ceil(96/float64(b.Dx()))))
		}
		if err := put(name, img); err != nil {
			return nil, err
		}
		exs = append(exs, exView{name, e.Path, e.True, e.Pred, fmt.Sprintf("%.3f", e.Confidence), e.Correct})
	}
	type classView struct {
		Index                 int
		Label                 string
		Support               int
		Precision, Recall, F1 string
	}
	var cls []classView
	if len(in.Confusion) > 0 {
		for _, s := range PerClass(in.Labels, in.Confusion) {
			cls = append(cls, classView{s.Index, s.Label, s.Support, fmt.Sprintf("%.4f", s.Precision),
				fmt.Sprintf("%.4f", s.Recall), fmt.Sprintf("%.4f", s.F1)})
		}
	}
	var b bytes.Buffer
	err := page.Execute(&b, map[string]any{
		"Title": in.Title, "Summary": in.Summary, "HasHistory": len(in.History) > 0, "History": in.History,
		"HasConfusion": len(in.Confusion) > 0, "Classes": cls, "Examples": exs, "Skipped": in.Skipped,
		"Tables": in.Tables, "Config": in.ConfigYAML,
	})
	if err != nil {
		return nil, err
	}
	files["index.html"] = b.Bytes()
	return files, nil
}

type plot struct {
	name, title string
	s           []Series
	log         bool
}

// curves are the loss, accuracy and learning-rate plots: validation once
// per epoch, training from the step samples when there are any (else per
// epoch), on an epoch axis.
func curves(in Input) []plot {
	series := func(f func(Point) float64) (x, y []float64) {
		for _, p := range in.History {
			x, y = append(x, float64(p.Epoch)), append(y, f(p))
		}
		return x, y
	}
	steps := func(f func(StepPoint) float64) (x, y []float64) {
		for _, p := range in.Steps {
			x, y = append(x, p.Epoch), append(y, f(p))
		}
		return x, y
	}
	train := func(fe func(Point) float64, fs func(StepPoint) float64) Series {
		x, y := series(fe)
		if len(in.Steps) > 0 {
			x, y = steps(fs)
		}
		return Series{Name: "train", Color: Blue, X: x, Y: y}
	}
	val := func(f func(Point) float64) Series {
		x, y := series(f)
		return Series{Name: "validation", Color: Orange, X: x, Y: y}
	}
	lrX, lrY := series(func(p Point) float64 { return p.LearningRate })
	lrTitle := "learning rate at epoch end"
	if len(in.Steps) > 0 {
		lrX, lrY = steps(func(p StepPoint) float64 { return p.LearningRate })
		lrTitle = "learning rate"
	}
	return []plot{
		{"loss.png", "loss (train: smoothed labels, augmented)", []Series{
			train(func(p Point) float64 { return p.TrainLoss }, func(p StepPoint) float64 { return p.TrainLoss }),
			val(func(p Point) float64 { return p.ValLoss })}, true},
		{"accuracy.png", "accuracy", []Series{
			train(func(p Point) float64 { return p.TrainAcc }, func(p StepPoint) float64 { return p.TrainAcc }),
			val(func(p Point) float64 { return p.ValAcc })}, false},
		{"lr.png", lrTitle, []Series{{Name: "lr", Color: Green, X: lrX, Y: lrY}}, false},
	}
}

var page = template.Must(template.New("report").Funcs(template.FuncMap{
	"f4": func(v float64) string { return fmt.Sprintf("%.4f", v) },
	"f0": func(v float64) string { return fmt.Sprintf("%.0f", v) },
	"f1": func(v float64) string { return fmt.Sprintf("%.1f", v) },
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{.Title}}</title>
<style>
body{font-family:system-ui,sans-serif;margin:24px;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:8px 0 20px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
th{background:#f3f3f3}.num{text-align:right}.bad{color:#b00}.ok{color:#070}
.gallery{display:flex;flex-wrap:wrap;gap:12px}.gallery figure{margin:0;width:150px;font-size:12px}
.gallery img{width:128px;height:128px;image-rendering:pixelated;border:1px solid #ccc}
pre{background:#f7f7f7;padding:8px;overflow:auto}
</style></head><body>
<h1>{{.Title}}</h1>
<table>{{range .Summary}}<tr><th>{{index . 0}}</th><td>{{index . 1}}</td></tr>{{end}}</table>
{{if .HasHistory}}<h2>Learning curves</h2>
<img src="loss.png" alt="loss"> <img src="accuracy.png" alt="accuracy"> <img src="lr.png" alt="learning rate">
<table><tr><th>epoch</th><th>train loss</th><th>train acc</th><th>val loss</th><th>val acc</th><th>lr</th><th>img/s</th><th>s</th></tr>
{{range .History}}<tr><td class="num">{{.Epoch}}</td><td class="num">{{f4 .TrainLoss}}</td><td class="num">{{f4 .TrainAcc}}</td><td class="num">{{f4 .ValLoss}}</td><td class="num">{{f4 .ValAcc}}</td><td class="num">{{printf "%.2e" .LearningRate}}</td><td class="num">{{f0 .ImagesPerSec}}</td><td class="num">{{f1 .Seconds}}</td></tr>{{end}}</table>{{end}}
{{if .HasConfusion}}<h2>Validation (onnxruntime)</h2><img src="confusion.png" alt="confusion matrix">
<table><tr><th>#</th><th>class</th><th>images</th><th>precision</th><th>recall</th><th>F1</th></tr>
{{range .Classes}}<tr><td class="num">{{.Index}}</td><td>{{.Label}}</td><td class="num">{{.Support}}</td><td class="num">{{.Precision}}</td><td class="num">{{.Recall}}</td><td class="num">{{.F1}}</td></tr>{{end}}</table>{{end}}
{{range .Tables}}<h2>{{.Title}}</h2><table><tr>{{range .Header}}<th>{{.}}</th>{{end}}</tr>
{{range .Rows}}<tr>{{range .}}<td>{{.}}</td>{{end}}</tr>{{end}}</table>{{end}}
{{if .Examples}}<h2>Worst validation images</h2><p>Misclassified first (most confident mistakes), then the least confident correct ones; shown as the model sees them.</p>
<div class="gallery">{{range .Examples}}<figure><img src="{{.File}}" alt="{{.Path}}"><figcaption>{{if .Correct}}<span class="ok">correct</span>{{else}}<span class="bad">wrong</span>{{end}}: {{.Pred}} ({{.Confidence}})<br>true: {{.True}}<br><small>{{.Path}}</small></figcaption></figure>{{end}}</div>{{end}}
{{if .Skipped}}<h2>Skipped files</h2><table><tr><th>path</th><th>reason</th></tr>{{range .Skipped}}<tr><td>{{index . 0}}</td><td>{{index . 1}}</td></tr>{{end}}</table>{{end}}
{{if .Config}}<h2>Resolved configuration</h2><pre>{{.Config}}</pre>{{end}}
</body></html>
`))
