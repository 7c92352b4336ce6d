package dataset

import (
	"image"
	"testing"

	"github.com/orchard-mlops/orchard/shared/preprocess"
	"github.com/orchard-mlops/orchard/trainer/config"
)

// TestAugmentPadsLikeServing: a zoomed-out sample's uncovered area takes
// the spec's pad colour: white for old specs, the canvas's border median
// under PadBorderMedian, as serving's Fit fills it.
func TestAugmentPadsLikeServing(t *testing.T) {
	const n = 16
	canvas := image.NewRGBA(image.Rect(0, 0, n, n))
	for i := 0; i < len(canvas.Pix); i += 4 {
		canvas.Pix[i], canvas.Pix[i+1], canvas.Pix[i+2], canvas.Pix[i+3] = 40, 60, 80, 255
	}
	cfg := config.Default().Augment
	cfg.Enabled, cfg.Prob = true, 1
	cfg.ScaleMin, cfg.ScaleMax = 0.5, 0.5
	cfg.RotateDegrees, cfg.Translate, cfg.FlipHorizontal, cfg.FlipVertical = 0, 0, false, false
	cfg.Brightness, cfg.Contrast, cfg.Saturation, cfg.HueDegrees = 0, 0, 0, 0
	cfg.BlurProb, cfg.NoiseProb, cfg.BackgroundProb, cfg.LetterboxProb = 0, 0, 0, 1
	for _, tt := range []struct {
		pad  string
		want [3]uint8
	}{{"", [3]uint8{255, 255, 255}}, {preprocess.PadBorderMedian, [3]uint8{40, 60, 80}}} {
		spec := preprocess.DefaultSpec(n)
		spec.Pad = tt.pad
		x := make([]float32, spec.TensorLen())
		(&Augmenter{Cfg: cfg, Spec: spec}).Apply(&Sample{Canvas: canvas}, x, SampleRNG(1, 2, 3))
		for c := range 3 { // the corner pixel lies outside the zoomed-out source
			want := (float32(tt.want[c])/255 - spec.Mean[c]) / spec.Std[c]
			if got := x[c*n*n]; got < want-0.02 || got > want+0.02 {
				t.Errorf("pad %q: corner channel %d = %.3f, want %.3f", tt.pad, c, got, want)
			}
		}
	}
}
