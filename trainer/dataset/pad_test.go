package dataset

import (
	"image"
	"testing"

	"github.com/orchard-mlops/orchard/shared/preprocess"
	"github.com/orchard-mlops/orchard/trainer/config"
)

// TestAugmentPadsLikeServing: a zoomed-out sample's uncovered area takes
// the spec's pad colour: white for old specs, the canvas's border median
// under PadBorderMedian, as serving's Fit fills it; from the canvas or the
// photo alike.
func TestAugmentPadsLikeServing(t *testing.T) {
	for _, src := range []string{config.SourcePhoto, config.SourceCanvas} {
		t.Run(src, func(t *testing.T) { testAugmentPads(t, src) })
	}
}

func testAugmentPads(t *testing.T, src string) {
	const n = 16
	canvas := solidCanvas(n, [3]uint8{40, 60, 80})
	cfg := plainAugment()
	cfg.Source, cfg.ScaleMin, cfg.ScaleMax = src, 0.5, 0.5
	cfg.LetterboxProb = 1
	for _, tt := range []struct {
		pad  string
		want [3]uint8
	}{{"", [3]uint8{255, 255, 255}}, {preprocess.PadBorderMedian, [3]uint8{40, 60, 80}}} {
		spec := preprocess.DefaultSpec(n)
		spec.Pad = tt.pad
		x := make([]float32, spec.TensorLen())
		(&Augmenter{Cfg: cfg, Spec: spec}).Apply(&Sample{Canvas: canvas, Raw: canvas}, x, SampleRNG(1, 2, 3))
		for c := range 3 { // the corner pixel lies outside the zoomed-out source
			want := (float32(tt.want[c])/255 - spec.Mean[c]) / spec.Std[c]
			if got := x[c*n*n]; got < want-0.02 || got > want+0.02 {
				t.Errorf("pad %q: corner channel %d = %.3f, want %.3f", tt.pad, c, got, want)
			}
		}
	}
}

// TestAugmentLetterboxUnlit: under either pad, a letterboxed sample's
// uncovered area keeps the pad colour while the exposure jitter darkens or
// brightens the object: the model sees objects lit unlike their
// surroundings (the border-median spec used to let the jitter reach it).
func TestAugmentLetterboxUnlit(t *testing.T) {
	for _, src := range []string{config.SourcePhoto, config.SourceCanvas} {
		t.Run(src, func(t *testing.T) { testAugmentLetterbox(t, src) })
	}
}

func testAugmentLetterbox(t *testing.T, src string) {
	const n = 16
	canvas := solidCanvas(n, [3]uint8{40, 60, 80})
	cfg := plainAugment()
	cfg.Source, cfg.ScaleMin, cfg.ScaleMax = src, 0.5, 0.5
	cfg.LetterboxProb, cfg.Brightness = 1, 0.6
	for _, pad := range []string{"", preprocess.PadBorderMedian} {
		spec := preprocess.DefaultSpec(n)
		spec.Pad = pad
		want := spec.PadColour(canvas)
		lit := 0
		for seed := range int64(8) {
			x := make([]float32, spec.TensorLen())
			(&Augmenter{Cfg: cfg, Spec: spec}).Apply(&Sample{Canvas: canvas, Raw: canvas}, x, SampleRNG(seed, 2, 3))
			centre := (n/2)*n + n/2
			if v := float32(40)/255*2 - 1; x[centre] < v-0.02 || x[centre] > v+0.02 {
				lit++ // the object took the jitter
			}
			for c := range 3 { // the corner lies outside the zoomed-out source
				w := (float32(want[c])/255 - spec.Mean[c]) / spec.Std[c]
				if got := x[c*n*n]; got < w-0.02 || got > w+0.02 {
					t.Errorf("pad %q seed %d: corner channel %d = %.3f, want the pad colour %.3f", pad, seed, c, got, w)
				}
			}
		}
		if lit == 0 {
			t.Errorf("pad %q: the exposure jitter never changed the object", pad)
		}
	}
}

// TestAugmentCloseup: a close-up magnifies the canvas's centre past the
// object's outline, so a fruit covering the middle half of the canvas
// fills the whole sample (no backdrop left at the corners); without the
// close-up the corners stay backdrop.
func TestAugmentCloseup(t *testing.T) {
	const n = 16
	canvas := image.NewRGBA(image.Rect(0, 0, n, n))
	for y := range n {
		for x := range n {
			p := canvas.Pix[canvas.PixOffset(x, y):]
			p[0], p[1], p[2], p[3] = 255, 255, 255, 255
			if x >= n/4 && x < 3*n/4 && y >= n/4 && y < 3*n/4 {
				p[1], p[2] = 30, 30 // red skin
			}
		}
	}
	cfg := plainAugment()
	cfg.CloseupMin, cfg.CloseupMax = 2.2, 2.2
	spec := preprocess.DefaultSpec(n)
	green := func(x []float32, i int) float32 { return x[n*n+i]*spec.Std[1] + spec.Mean[1] }
	for _, tt := range []struct {
		prob   float64
		corner bool // corner is skin
	}{{0, false}, {1, true}} {
		cfg.CloseupProb = tt.prob
		x := make([]float32, spec.TensorLen())
		(&Augmenter{Cfg: cfg, Spec: spec}).Apply(&Sample{Canvas: canvas, Raw: canvas}, x, SampleRNG(1, 2, 3))
		for _, i := range []int{0, n - 1, n*n - n, n*n - 1} {
			if skin := green(x, i) < 0.5; skin != tt.corner {
				t.Errorf("closeup_prob %v: corner %d green %.2f, skin %v, want %v", tt.prob, i, green(x, i), skin, tt.corner)
			}
		}
	}
}

// plainAugment is an augmentation applied to every sample that changes
// nothing: each test turns on the one step it looks at.
// solidCanvas is an n x n canvas of one colour.
func solidCanvas(n int, c [3]uint8) *image.RGBA {
	m := image.NewRGBA(image.Rect(0, 0, n, n))
	for i := 0; i < len(m.Pix); i += 4 {
		m.Pix[i], m.Pix[i+1], m.Pix[i+2], m.Pix[i+3] = c[0], c[1], c[2], 255
	}
	return m
}

func plainAugment() config.Augment {
	cfg := config.Default().Augment
	cfg.Enabled, cfg.Prob = true, 1
	cfg.ScaleMin, cfg.ScaleMax = 1, 1
	cfg.RotateDegrees, cfg.Translate, cfg.FlipHorizontal, cfg.FlipVertical = 0, 0, false, false
	cfg.Brightness, cfg.Contrast, cfg.Saturation, cfg.HueDegrees = 0, 0, 0, 0
	cfg.BlurProb, cfg.NoiseProb, cfg.BackgroundProb, cfg.LetterboxProb, cfg.CloseupProb, cfg.EraseProb = 0, 0, 0, 0, 0, 0
	cfg.Gamma, cfg.WhiteBalance, cfg.Haze = 0, 0, 0
	return cfg
}

// TestAugmentTexturedBackground: with augment.background_texture the
// replaced backdrop is a patchwork (its colours vary across the sample)
// while the object keeps its colour; without it the backdrop is one colour.
func TestAugmentTexturedBackground(t *testing.T) {
	const n = 32
	canvas := image.NewRGBA(image.Rect(0, 0, n, n))
	for y := range n {
		for x := range n {
			i, v := canvas.PixOffset(x, y), uint8(255)
			if x >= n/4 && x < 3*n/4 && y >= n/4 && y < 3*n/4 {
				v = 30 // the object
			}
			canvas.Pix[i], canvas.Pix[i+1], canvas.Pix[i+2], canvas.Pix[i+3] = v, v, v, 255
		}
	}
	for _, tex := range []float64{0, 1} {
		cfg := plainAugment()
		cfg.BackgroundProb, cfg.BackgroundTexture = 1, tex
		spec := preprocess.DefaultSpec(n)
		x := make([]float32, spec.TensorLen())
		(&Augmenter{Cfg: cfg, Spec: spec}).Apply(&Sample{Canvas: canvas, Raw: canvas}, x, SampleRNG(1, 2, 3))
		lo, hi := float32(9), float32(-9)
		for _, i := range []int{0, n - 1, (n - 1) * n, n*n - 1, n / 2} { // backdrop pixels, red channel
			lo, hi = min(lo, x[i]), max(hi, x[i])
		}
		if varied := hi-lo > 0.05; varied != (tex == 1) {
			t.Errorf("background_texture %v: backdrop red spans %.3f..%.3f", tex, lo, hi)
		}
		if obj := x[(n/2)*n+n/2]; obj > float32(30)/255*2-1+0.02 {
			t.Errorf("background_texture %v: object pixel %.3f, want it unchanged", tex, obj)
		}
	}
}
