package dataset

import (
	"image"
	"testing"

	"github.com/orchard-mlops/orchard/shared/preprocess"
)

// TestAugmentTone: gamma bends mid-tones while keeping black and white,
// white balance moves red and blue apart, and with both off the sample is
// untouched by them.
func TestAugmentTone(t *testing.T) {
	const n = 8
	canvas := image.NewRGBA(image.Rect(0, 0, n, n))
	for i := 0; i < len(canvas.Pix); i += 4 {
		canvas.Pix[i], canvas.Pix[i+1], canvas.Pix[i+2], canvas.Pix[i+3] = 128, 128, 128, 255
	}
	spec := preprocess.DefaultSpec(n)
	cfg := plainAugment()
	pixel := func(g, wb float64, seed int64) [3]float32 {
		cfg.Gamma, cfg.WhiteBalance = g, wb
		x := make([]float32, spec.TensorLen())
		(&Augmenter{Cfg: cfg, Spec: spec}).Apply(&Sample{Canvas: canvas, Raw: canvas}, x, SampleRNG(seed, 0, 0))
		var p [3]float32
		for c := range 3 {
			p[c] = x[c*n*n]*spec.Std[c] + spec.Mean[c]
		}
		return p
	}
	if p := pixel(0, 0, 1); p[0] != p[1] || p[1] != p[2] || p[0] < 0.49 || p[0] > 0.52 {
		t.Errorf("no tone: pixel %v, want the canvas's 128/255 grey", p)
	}
	moved := false
	for seed := range int64(8) {
		if p := pixel(1, 0, seed); p[0] != p[1] || p[1] != p[2] || p[0] < 0.25-0.01 || p[0] > 0.71+0.01 {
			t.Errorf("gamma: pixel %v, want a grey between 0.5^2 and 0.5^0.5", p)
		} else if p[0] < 0.45 || p[0] > 0.56 {
			moved = true
		}
		if p := pixel(0, 0.3, seed); (p[0]-0.5)*(p[2]-0.5) > 0 {
			t.Errorf("white balance: pixel %v, want red and blue on opposite sides of grey", p)
		}
	}
	if !moved {
		t.Error("gamma 1 left mid-grey near 0.5 on all 8 draws")
	}
}

// TestAugmentErase: with augment.erase_prob a rectangle of the requested
// share of a grey sample turns one other colour; without it the sample
// stays grey.
func TestAugmentErase(t *testing.T) {
	const n = 20
	canvas := solidCanvas(n, [3]uint8{128, 128, 128})
	spec := preprocess.DefaultSpec(n)
	cfg := plainAugment()
	cfg.EraseAreaMin, cfg.EraseAreaMax = 0.2, 0.2
	grey := [3]float32{(128.0/255 - spec.Mean[0]) / spec.Std[0], (128.0/255 - spec.Mean[1]) / spec.Std[1], (128.0/255 - spec.Mean[2]) / spec.Std[2]}
	for _, prob := range []float64{0, 1} {
		cfg.EraseProb = prob
		for seed := range int64(4) {
			x := make([]float32, spec.TensorLen())
			(&Augmenter{Cfg: cfg, Spec: spec}).Apply(&Sample{Canvas: canvas, Raw: canvas}, x, SampleRNG(seed, 0, 0))
			colours, erased := map[[3]float32]bool{}, 0
			for i := range n * n {
				if p := [3]float32{x[i], x[n*n+i], x[2*n*n+i]}; p != grey {
					colours[p] = true
					erased++
				}
			}
			// 20 % of 400 pixels is 80, up to rounding of the sides.
			if want := prob == 1; want != (erased > 0) || want && (len(colours) != 1 || erased < 60 || erased > 100) {
				t.Errorf("erase_prob %v, seed %d: %d colours over %d pixels", prob, seed, len(colours), erased)
			}
		}
	}
}

// TestAugmentHaze: haze lifts a mid grey towards white by at most the
// configured share and keeps white white.
func TestAugmentHaze(t *testing.T) {
	const n = 8
	spec := preprocess.DefaultSpec(n)
	cfg := plainAugment()
	cfg.Haze = 0.5
	lifted := false
	for seed := range int64(8) {
		for _, level := range []uint8{128, 255} {
			x := make([]float32, spec.TensorLen())
			c := solidCanvas(n, [3]uint8{level, level, level})
			(&Augmenter{Cfg: cfg, Spec: spec}).Apply(&Sample{Canvas: c, Raw: c}, x, SampleRNG(seed, 0, 0))
			v, in := x[0]*spec.Std[0]+spec.Mean[0], float32(level)/255
			if v < in-1e-5 || v > in+(1-in)*0.5+1e-5 {
				t.Errorf("seed %d, level %d: %.3f, want in [%.3f, %.3f]", seed, level, v, in, in+(1-in)*0.5)
			}
			lifted = lifted || v > in+0.05
		}
	}
	if !lifted {
		t.Error("haze 0.5 lifted no grey by more than 0.05 over 8 draws")
	}
}
