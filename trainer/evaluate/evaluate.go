// Package evaluate measures a model directory's accuracy on a
// folder-per-class dataset through the serving path (shared/model's
// onnxruntime classifier), optionally under corruptions that imitate real
// uploads: under- and over-exposure, low contrast, blur, sensor noise, heavy
// JPEG compression, rotation, zoom, and coloured backgrounds.
//
// The clean condition feeds the original bytes to Classifier.Classify.
// Corruptions are applied to the decoded image after scaling it so its
// longer side is at most WorkSize pixels (a phone photo shrunk by an app),
// then the image goes through the serving Fit and Tensor steps (JPEG is
// re-encoded and decoded by the full serving path). Every random draw is
// keyed by (seed, image index), so results are reproducible.
package evaluate

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/jpeg"
	"math"
	"math/rand/v2"
	"path"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	xdraw "golang.org/x/image/draw"

	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/shared/model"
	"github.com/orchard-mlops/orchard/shared/monitor"
	"github.com/orchard-mlops/orchard/shared/onnxrt"
	"github.com/orchard-mlops/orchard/shared/preprocess"
	"github.com/orchard-mlops/orchard/shared/signals"
	"github.com/orchard-mlops/orchard/trainer/dataset"
)

// WorkSize bounds the longer side of the image corruptions are applied to.
const WorkSize = 256

// Corruption changes a decoded image (RGBA, longer side <= WorkSize).
// When JPEG is set the result is re-encoded at that quality and decoded by
// the serving path.
type Corruption struct {
	Name  string
	Desc  string
	Apply func(m *image.RGBA, r *rand.Rand) *image.RGBA
	JPEG  int
}

// Clean is the name of the uncorrupted condition.
const Clean = "clean"

// Corruptions are the conditions of `trainer eval -corrupt all`.
var Corruptions = []Corruption{
	{Name: "dark", Desc: "pixel values x0.45 (under-exposed)", Apply: pointwise(func(v float64) float64 { return v * 0.45 })},
	{Name: "bright", Desc: "0.6v + 0.4 (over-exposed, washed out)", Apply: pointwise(func(v float64) float64 { return 0.6*v + 0.4 })},
	{Name: "low_contrast", Desc: "contrast x0.4 around the mean", Apply: lowContrast(0.4)},
	{Name: "blur", Desc: "Gaussian blur, sigma 2.5% of the longer side", Apply: blur(0.025)},
	{Name: "noise", Desc: "Gaussian noise, std 0.1", Apply: noise(0.1)},
	{Name: "jpeg", Desc: "JPEG quality 8", Apply: func(m *image.RGBA, _ *rand.Rand) *image.RGBA { return m }, JPEG: 8},
	{Name: "rotate", Desc: "rotated 30 degrees (random sign), white fill", Apply: rotate(30)},
	{Name: "zoom_in", Desc: "centre crop of 65% of the side", Apply: zoomIn(0.65)},
	{Name: "zoom_out", Desc: "shrunk to 55% on a white canvas", Apply: zoomOut(0.55)},
	{Name: "colour_background", Desc: "near-white background replaced by a random colour", Apply: colourBackground},
}

// Select returns the named corruptions ("all" for every one).
func Select(names string) ([]Corruption, error) {
	if names == "" {
		return nil, nil
	}
	if names == "all" {
		return Corruptions, nil
	}
	var out []Corruption
	for _, n := range strings.Split(names, ",") {
		i := slices.IndexFunc(Corruptions, func(c Corruption) bool { return c.Name == n })
		if i < 0 {
			var known []string
			for _, c := range Corruptions {
				known = append(known, c.Name)
			}
			return nil, fmt.Errorf("unknown corruption %q (known: %s, all)", n, strings.Join(known, ", "))
		}
		out = append(out, Corruptions[i])
	}
	return out, nil
}

// Result is the accuracy under one condition.
type Result struct {
	Condition string  `json:"condition"`
	Desc      string  `json:"description,omitempty"`
	Images    int     `json:"images"`
	Correct   int     `json:"correct"`
	Accuracy  float64 `json:"accuracy"`
	// Confused are the condition's most frequent mistakes, at most
	// MaxConfused, the most images first: where a kind of shift hurts.
	Confused []Confusion `json:"confused,omitempty"`
	// Monitor is the drift monitor's view of the condition as one window,
	// when Options.Baseline is set.
	Monitor *Drift `json:"monitor,omitempty"`
}

// Confusion is one kind of mistake: images of class True taken for
// Predicted.
type Confusion struct {
	True      string `json:"true"`
	Predicted string `json:"predicted"`
	Images    int    `json:"images"`
}

// ConfusedText is the condition's mistakes on one line:
// "Plum 5 -> Onion Red 2: 37, ...".
func (r Result) ConfusedText() string {
	parts := make([]string, len(r.Confused))
	for i, c := range r.Confused {
		parts[i] = fmt.Sprintf("%s -> %s: %d", c.True, c.Predicted, c.Images)
	}
	return strings.Join(parts, ", ")
}

// MaxConfused is how many mistakes a Result lists.
const MaxConfused = 3

// confused tallies the mistakes of one condition, most frequent first
// (ties by name), at most MaxConfused.
func confused(use []dataset.Entry, ok, correct []bool, seen []monitor.Prediction) []Confusion {
	count := map[[2]string]int{}
	for i, e := range use {
		if ok[i] && !correct[i] {
			count[[2]string{e.Class, seen[i].Label}]++
		}
	}
	out := make([]Confusion, 0, len(count))
	for k, n := range count {
		out = append(out, Confusion{True: k[0], Predicted: k[1], Images: n})
	}
	slices.SortFunc(out, func(a, b Confusion) int {
		if a.Images != b.Images {
			return b.Images - a.Images
		}
		return strings.Compare(a.True+"\x00"+a.Predicted, b.True+"\x00"+b.Predicted)
	})
	return out[:min(len(out), MaxConfused)]
}

// Drift is what the monitor reports for one condition's windows.
type Drift struct {
	Windows    int                `json:"windows"`
	OODShare   float64            `json:"ood_share"`  // the largest over the windows
	Divergence map[string]float64 `json:"divergence"` // per feature, the largest JS (L-inf for labels and format)
	Alerts     []string           `json:"alerts"`     // "feature k/n": k of the n windows alert on it
}

// Options configure Run.
type Options struct {
	DataURI     string
	Storage     *blob.Opener // opens DataURI; nil: local paths only
	Mode        string       // dataset split mode; in folders mode only the test folder is used
	TrainDir    string
	TestDir     string
	Corruptions []Corruption
	Seed        int64
	Workers     int
	Limits      preprocess.Limits
	// Baseline, when set, gives every condition a monitor window: input
	// statistics and top-1 of each image against the model's baseline,
	// with Thresholds deciding the alerts.
	Baseline   *monitor.Baseline
	Thresholds monitor.Thresholds
	WindowSize int // images per monitor window; 0: the whole condition is one
	// Entries, when not nil, are the images of DataURI to evaluate (the
	// trainer's validation split), instead of the dataset's listing.
	Entries []dataset.Entry
}

// Run evaluates clf on every image of the dataset under the clean
// condition and each corruption. Unreadable images are counted in Skipped.
func Run(ctx context.Context, clf *onnxrt.Classifier, opt Options) (results []Result, skipped int, err error) {
	p, err := newPass(ctx, clf, opt)
	if err != nil {
		return nil, 0, err
	}
	workers := opt.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	var wg sync.WaitGroup
	errs := make([]error, workers)
	for w := range workers {
		wg.Go(func() {
			x := make([]float32, p.spec.TensorLen())
			for i := w; i < len(p.use) && ctx.Err() == nil; i += workers {
				if errs[w] = p.image(ctx, i, x); errs[w] != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	for _, err := range errs {
		if err != nil {
			return nil, 0, fmt.Errorf("evaluate: %w", err)
		}
	}
	results, skipped = p.results()
	return results, skipped, nil
}

// pass is one Run: the images, the conditions, and what each image gave
// under each condition.
type pass struct {
	clf      *onnxrt.Classifier
	opt      Options
	spec     preprocess.Spec
	store    blob.Store
	use      []dataset.Entry
	labelIdx map[string]int
	conds    []Corruption
	maxBytes int64
	ok       []bool   // image i was read and decoded
	correct  [][]bool // [condition][image]
	// seen[c][i] is image i under condition c as the monitor sees it.
	seen [][]monitor.Prediction
}

func newPass(ctx context.Context, clf *onnxrt.Classifier, opt Options) (*pass, error) {
	meta := clf.Metadata()
	p := &pass{clf: clf, opt: opt, spec: meta.Preprocessing, labelIdx: map[string]int{}, maxBytes: opt.Limits.MaxBytes}
	for i, l := range meta.Labels {
		p.labelIdx[l] = i
	}
	var err error
	if p.store, p.use, err = images(ctx, opt); err != nil {
		return nil, err
	}
	for _, e := range p.use {
		if _, ok := p.labelIdx[e.Class]; !ok {
			return nil, fmt.Errorf("evaluate: class %q is not a label of model %s", e.Class, meta.Name)
		}
	}
	if p.maxBytes <= 0 {
		p.maxBytes = preprocess.DefaultMaxBytes
	}
	p.conds = append([]Corruption{{Name: Clean, Desc: "original bytes through Classifier.Classify"}}, opt.Corruptions...)
	p.ok = make([]bool, len(p.use))
	p.correct, p.seen = make([][]bool, len(p.conds)), make([][]monitor.Prediction, len(p.conds))
	for c := range p.conds {
		p.correct[c], p.seen[c] = make([]bool, len(p.use)), make([]monitor.Prediction, len(p.use))
	}
	return p, nil
}

// image classifies image i under every condition, x being scratch space
// for one tensor. An unreadable image is left not ok; an error is the
// classifier's.
func (p *pass) image(ctx context.Context, i int, x []float32) error {
	e := p.use[i]
	b, _, err := p.store.Read(ctx, e.Path, p.maxBytes)
	if err != nil {
		return nil
	}
	d, err := preprocess.Decode(b, p.opt.Limits)
	if err != nil {
		return nil
	}
	p.ok[i] = true
	preds, st, err := p.clf.ClassifyStats(b, 1)
	if err != nil {
		return err
	}
	p.correct[0][i] = preds[0].Label == e.Class
	p.seen[0][i] = observed(e, preds[0], st)
	if len(p.conds) == 1 {
		return nil
	}
	work := shrink(d.Image, WorkSize)
	for c, cond := range p.conds[1:] {
		r := rand.New(rand.NewPCG(uint64(p.opt.Seed), uint64(i)<<8|uint64(c)))
		img := cond.Apply(cloneRGBA(work), r)
		st, err := corruptedTensor(p.spec, d, img, cond.JPEG, p.opt.Limits, x)
		if err != nil {
			return err
		}
		logits, err := p.clf.Logits(x, 1)
		if err != nil {
			return err
		}
		p.correct[c+1][i] = argmax(logits) == p.labelIdx[e.Class]
		p.seen[c+1][i] = observed(e, p.clf.TopK(logits, 1)[0], st)
	}
	return nil
}

// results tallies each condition, with its monitor window when asked.
func (p *pass) results() (results []Result, skipped int) {
	for _, v := range p.ok {
		if !v {
			skipped++
		}
	}
	meta, opt := p.clf.Metadata(), p.opt
	for c, cond := range p.conds {
		r := Result{Condition: cond.Name, Desc: cond.Desc}
		for i := range p.use {
			if p.ok[i] {
				r.Images++
				if p.correct[c][i] {
					r.Correct++
				}
			}
		}
		if r.Images > 0 {
			r.Accuracy = float64(r.Correct) / float64(r.Images)
		}
		r.Confused = confused(p.use, p.ok, p.correct[c], p.seen[c])
		if opt.Baseline != nil {
			r.Monitor = window(meta, opt.Baseline, opt.Thresholds, p.seen[c], p.ok, opt.WindowSize, opt.Seed)
		}
		results = append(results, r)
	}
	return results, skipped
}

// images are the entries Run evaluates and the store holding them:
// Options.Entries when given, else the dataset's listing (in folders mode
// its test folder only).
func images(ctx context.Context, opt Options) (blob.Store, []dataset.Entry, error) {
	if opt.Entries != nil {
		store, err := opt.Storage.Open(ctx, opt.DataURI)
		if err != nil {
			return nil, nil, fmt.Errorf("evaluate: %w", err)
		}
		return store, opt.Entries, nil
	}
	store, entries, layout, err := dataset.Scan(ctx, opt.Storage, opt.DataURI, opt.Mode, opt.TrainDir, opt.TestDir)
	if err != nil {
		return nil, nil, err
	}
	var use []dataset.Entry
	for _, e := range entries {
		if !layout.Folders || e.Split == dataset.SplitValidation {
			use = append(use, e)
		}
	}
	return store, use, nil
}

// corruptedTensor writes the model input for a corrupted image and returns
// its input statistics: through the whole serving path after a JPEG round
// trip at quality q (q > 0), or else through the spec's own canvas step
// with the source's format and orientation, so a corrupted photo is padded
// and framed as serving would.
func corruptedTensor(spec preprocess.Spec, src *preprocess.Decoded, img *image.RGBA, q int, lim preprocess.Limits, x []float32) (signals.Stats, error) {
	if q > 0 {
		var buf bytes.Buffer
		if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: q}); err != nil {
			return signals.Stats{}, fmt.Errorf("re-encoding at quality %d: %w", q, err)
		}
		return spec.ProcessStats(buf.Bytes(), lim, x)
	}
	d := &preprocess.Decoded{Image: img, Format: src.Format, Orientation: src.Orientation}
	s := preprocess.Source{Width: img.Bounds().Dx(), Height: img.Bounds().Dy(), Format: src.Format}
	return spec.TensorStats(spec.Fit(d), s, x)
}

// observed is one image's prediction as the monitor reads it from a
// result: under its class folder, so the window's live accuracy is the
// condition's accuracy.
func observed(e dataset.Entry, p model.Prediction, st signals.Stats) monitor.Prediction {
	return monitor.Prediction{Object: e.Class + "/" + path.Base(e.Path), Label: p.Label, Score: p.Score, Stats: &st}
}

// window is the monitor's view of one condition: its images as one
// window, or, with size > 0, split (in a seeded random order) into windows
// of size images, giving per feature the largest divergence over them
// and per alert the share of windows raising it.
func window(meta *model.Metadata, b *monitor.Baseline, th monitor.Thresholds, seen []monitor.Prediction, ok []bool, size int, seed int64) *Drift {
	var idx []int
	for i := range seen {
		if ok[i] {
			idx = append(idx, i)
		}
	}
	if size <= 0 || size > len(idx) {
		size = len(idx)
	}
	rand.New(rand.NewPCG(uint64(seed), 0xd1f7)).Shuffle(len(idx), func(i, j int) { idx[i], idx[j] = idx[j], idx[i] })
	k := monitor.Key{Model: meta.Name, Version: meta.Version}
	var t0 time.Time
	d := &Drift{Divergence: map[string]float64{}, Alerts: []string{}}
	alerts := map[string]int{}
	var order []string
	for start := 0; start+size <= len(idx); start += size {
		w := monitor.NewWindow(t0, t0.Add(time.Second))
		for _, i := range idx[start : start+size] {
			p := seen[i]
			o := b.Check(*p.Stats, p.Score)
			p.Model, p.Version, p.Time, p.OOD = k.Model, k.Version, t0, &o
			w.Add(p)
		}
		r := w.Report(k, b, meta.Labels, th)
		d.Windows++
		d.OODShare = max(d.OODShare, r.OODShare)
		for _, f := range r.Drift {
			d.Divergence[f.Feature] = max(d.Divergence[f.Feature], f.Value)
		}
		for _, a := range r.Alerts {
			if alerts[a.Feature] == 0 {
				order = append(order, a.Feature)
			}
			alerts[a.Feature]++
		}
	}
	for _, f := range order {
		d.Alerts = append(d.Alerts, fmt.Sprintf("%s %d/%d", f, alerts[f], d.Windows))
	}
	return d
}

func argmax(v []float32) int {
	best := 0
	for i := range v {
		if v[i] > v[best] {
			best = i
		}
	}
	return best
}

// shrink returns the image as RGBA with its longer side at most n pixels.
func shrink(src image.Image, n int) *image.RGBA {
	b := src.Bounds()
	w, h := b.Dx(), b.Dy()
	if s := max(w, h); s > n {
		w, h = max(1, w*n/s), max(1, h*n/s)
	}
	dst := image.NewRGBA(image.Rect(0, 0, w, h))
	if w == b.Dx() && h == b.Dy() {
		draw.Draw(dst, dst.Bounds(), src, b.Min, draw.Src)
		return dst
	}
	xdraw.CatmullRom.Scale(dst, dst.Bounds(), src, b, xdraw.Src, nil)
	return dst
}

func cloneRGBA(m *image.RGBA) *image.RGBA {
	out := image.NewRGBA(m.Bounds())
	copy(out.Pix, m.Pix)
	return out
}

func clamp8(v float64) uint8 { return uint8(math.Max(0, math.Min(255, math.Round(v)))) }

func pointwise(f func(v float64) float64) func(*image.RGBA, *rand.Rand) *image.RGBA {
	return func(m *image.RGBA, _ *rand.Rand) *image.RGBA {
		for i := 0; i < len(m.Pix); i += 4 {
			for k := range 3 {
				m.Pix[i+k] = clamp8(255 * f(float64(m.Pix[i+k])/255))
			}
		}
		return m
	}
}

func lowContrast(f float64) func(*image.RGBA, *rand.Rand) *image.RGBA {
	return func(m *image.RGBA, r *rand.Rand) *image.RGBA {
		var sum float64
		for i := 0; i < len(m.Pix); i += 4 {
			sum += float64(m.Pix[i]) + float64(m.Pix[i+1]) + float64(m.Pix[i+2])
		}
		mean := sum / float64(3*len(m.Pix)/4) / 255
		return pointwise(func(v float64) float64 { return (v-mean)*f + mean })(m, r)
	}
}

func noise(std float64) func(*image.RGBA, *rand.Rand) *image.RGBA {
	return func(m *image.RGBA, r *rand.Rand) *image.RGBA {
		for i := 0; i < len(m.Pix); i += 4 {
			for k := range 3 {
				m.Pix[i+k] = clamp8(float64(m.Pix[i+k]) + 255*std*r.NormFloat64())
			}
		}
		return m
	}
}

func blur(frac float64) func(*image.RGBA, *rand.Rand) *image.RGBA {
	return func(m *image.RGBA, _ *rand.Rand) *image.RGBA {
		b := m.Bounds()
		w, h := b.Dx(), b.Dy()
		sigma := frac * float64(max(w, h))
		rad := int(math.Ceil(2.5 * sigma))
		k := make([]float64, 2*rad+1)
		var sum float64
		for i := range k {
			d := float64(i - rad)
			k[i] = math.Exp(-d * d / (2 * sigma * sigma))
			sum += k[i]
		}
		for i := range k {
			k[i] /= sum
		}
		tmp := make([]float64, w*h*3)
		for y := range h {
			for x := range w {
				for c := range 3 {
					var v float64
					for i, kw := range k {
						xx := min(w-1, max(0, x+i-rad))
						v += kw * float64(m.Pix[y*m.Stride+4*xx+c])
					}
					tmp[(y*w+x)*3+c] = v
				}
			}
		}
		for y := range h {
			for x := range w {
				for c := range 3 {
					var v float64
					for i, kw := range k {
						yy := min(h-1, max(0, y+i-rad))
						v += kw * tmp[(yy*w+x)*3+c]
					}
					m.Pix[y*m.Stride+4*x+c] = clamp8(v)
				}
			}
		}
		return m
	}
}

// sample is bilinear sampling with a fill colour outside the image.
func sample(m *image.RGBA, x, y float64, fill [3]float64) [3]float64 {
	b := m.Bounds()
	x0, y0 := int(math.Floor(x)), int(math.Floor(y))
	fx, fy := x-float64(x0), y-float64(y0)
	var out [3]float64
	for j := range 2 {
		for i := range 2 {
			w := (1 - fx) * (1 - fy)
			switch {
			case i == 1 && j == 0:
				w = fx * (1 - fy)
			case i == 0 && j == 1:
				w = (1 - fx) * fy
			case i == 1 && j == 1:
				w = fx * fy
			}
			xx, yy := x0+i, y0+j
			for c := range 3 {
				if xx < 0 || yy < 0 || xx >= b.Dx() || yy >= b.Dy() {
					out[c] += w * fill[c]
				} else {
					out[c] += w * float64(m.Pix[yy*m.Stride+4*xx+c])
				}
			}
		}
	}
	return out
}

func warp(m *image.RGBA, w, h int, inv func(x, y float64) (float64, float64)) *image.RGBA {
	out := image.NewRGBA(image.Rect(0, 0, w, h))
	white := [3]float64{255, 255, 255}
	for y := range h {
		for x := range w {
			sx, sy := inv(float64(x), float64(y))
			p := sample(m, sx, sy, white)
			o := y*out.Stride + 4*x
			out.Pix[o], out.Pix[o+1], out.Pix[o+2], out.Pix[o+3] = clamp8(p[0]), clamp8(p[1]), clamp8(p[2]), 255
		}
	}
	return out
}

func rotate(deg float64) func(*image.RGBA, *rand.Rand) *image.RGBA {
	return func(m *image.RGBA, r *rand.Rand) *image.RGBA {
		th := deg * math.Pi / 180
		if r.IntN(2) == 0 {
			th = -th
		}
		w, h := m.Bounds().Dx(), m.Bounds().Dy()
		cx, cy := float64(w-1)/2, float64(h-1)/2
		c, s := math.Cos(th), math.Sin(th)
		return warp(m, w, h, func(x, y float64) (float64, float64) {
			dx, dy := x-cx, y-cy
			return c*dx + s*dy + cx, -s*dx + c*dy + cy
		})
	}
}

func zoomIn(frac float64) func(*image.RGBA, *rand.Rand) *image.RGBA {
	return func(m *image.RGBA, _ *rand.Rand) *image.RGBA {
		w, h := m.Bounds().Dx(), m.Bounds().Dy()
		cw, ch := max(1, int(float64(w)*frac)), max(1, int(float64(h)*frac))
		r := image.Rect((w-cw)/2, (h-ch)/2, (w-cw)/2+cw, (h-ch)/2+ch)
		return m.SubImage(r).(*image.RGBA)
	}
}

func zoomOut(frac float64) func(*image.RGBA, *rand.Rand) *image.RGBA {
	return func(m *image.RGBA, _ *rand.Rand) *image.RGBA {
		w, h := m.Bounds().Dx(), m.Bounds().Dy()
		out := image.NewRGBA(image.Rect(0, 0, w, h))
		draw.Draw(out, out.Bounds(), image.NewUniform(color.White), image.Point{}, draw.Src)
		sw, sh := max(1, int(float64(w)*frac)), max(1, int(float64(h)*frac))
		dst := image.Rect((w-sw)/2, (h-sh)/2, (w-sw)/2+sw, (h-sh)/2+sh)
		xdraw.CatmullRom.Scale(out, dst, m, m.Bounds(), xdraw.Src, nil)
		return out
	}
}

func colourBackground(m *image.RGBA, r *rand.Rand) *image.RGBA {
	var bg [3]float64
	for k := range bg {
		bg[k] = 40 + 180*r.Float64()
	}
	for i := 0; i < len(m.Pix); i += 4 {
		mn := math.Min(float64(m.Pix[i]), math.Min(float64(m.Pix[i+1]), float64(m.Pix[i+2]))) / 255
		a := math.Max(0, math.Min(1, (mn-0.86)/0.1))
		for k := range 3 {
			v := float64(m.Pix[i+k])
			m.Pix[i+k] = clamp8(v + (bg[k]-v)*a)
		}
	}
	return m
}

// CorruptJPEG applies the corruptions in order to an encoded image, as Run
// does (decoded by the serving path, shrunk to WorkSize, random draws keyed
// by seed and index), and encodes the result as a JPEG of quality 95 (or
// the last JPEG corruption's quality): an upload of the same photo under a
// drift, for the monitor's demo.
func CorruptJPEG(b []byte, corrs []Corruption, seed int64, index int) ([]byte, error) {
	d, err := preprocess.Decode(b, preprocess.Limits{})
	if err != nil {
		return nil, fmt.Errorf("corrupting: %w", err)
	}
	img, q := shrink(d.Image, WorkSize), 95
	for c, cond := range corrs {
		r := rand.New(rand.NewPCG(uint64(seed), uint64(index)<<8|uint64(c)))
		out := cond.Apply(cloneRGBA(img), r) // may be a sub-image (zoom_in)
		img = image.NewRGBA(image.Rect(0, 0, out.Bounds().Dx(), out.Bounds().Dy()))
		draw.Draw(img, img.Bounds(), out, out.Bounds().Min, draw.Src)
		if cond.JPEG > 0 {
			q = cond.JPEG
		}
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: q}); err != nil {
		return nil, fmt.Errorf("corrupting: encoding: %w", err)
	}
	return buf.Bytes(), nil
}
