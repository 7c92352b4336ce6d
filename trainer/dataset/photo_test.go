package dataset

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"math"
	"testing"

	"github.com/orchard-mlops/orchard/shared/preprocess"
	"github.com/orchard-mlops/orchard/trainer/config"
)

// stripedFruitPNG is a w x h photo of a red disc of radius r at the
// centre, its skin striped with the given period in pixels, on a light
// backdrop: detail finer than the 32 px canvas keeps.
func stripedFruitPNG(t testing.TB, w, h int, r, period float64) []byte {
	t.Helper()
	m := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			c := color.RGBA{235, 232, 228, 255}
			dx, dy := float64(x)-float64(w-1)/2, float64(y)-float64(h-1)/2
			if math.Hypot(dx, dy) < r {
				c = color.RGBA{200, uint8(70 + 60*math.Sin(2*math.Pi*dx/period)), 40, 255}
			}
			m.Set(x, y, c)
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, m); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestAugmentPhotoLikeServing: with augment.source photo, a sample
// augmented only by a zoom is the tensor serving makes of the photo zoomed
// the same way; zooming the canvas is not: a 2.5x close-up of the 32 px
// canvas has lost the skin's stripes (11.2 levels a pixel from serving,
// the photo 1.4), a zoomed-out one aliases (0.51 against 0.24).
func TestAugmentPhotoLikeServing(t *testing.T) {
	spec := config.Default().Model.Spec()
	spec.Framing = "" // a canonical spec always augments the photo: compare the sources on the plain one
	const w, h, r, period = 120, 120, 45, 5
	canvas, raw, _, err := spec.CanvasRaw(stripedFruitPNG(t, w, h, r, period), preprocess.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	s := &Sample{Canvas: canvas, Raw: raw}
	for _, scale := range []float64{1, 2.5, 0.5} {
		want := make([]float32, spec.TensorLen())
		if err := spec.Process(stripedFruitPNG(t, w, h, r*scale, period*scale), preprocess.Limits{}, want); err != nil {
			t.Fatal(err)
		}
		levels := map[string]float64{}
		for _, src := range []string{config.SourcePhoto, config.SourceCanvas} {
			cfg := plainAugment()
			cfg.Source, cfg.ScaleMin, cfg.ScaleMax = src, scale, scale
			got := make([]float32, spec.TensorLen())
			(&Augmenter{Cfg: cfg, Spec: spec}).Apply(s, got, SampleRNG(1, 2, 3))
			var d float64
			for i := range got {
				d += math.Abs(float64(got[i] - want[i]))
			}
			levels[src] = d / float64(len(got)) * 255 * float64(spec.Std[0])
		}
		t.Logf("zoom %.1f: levels from serving: photo %.2f, canvas %.2f", scale, levels[config.SourcePhoto], levels[config.SourceCanvas])
		if levels[config.SourcePhoto] > 2 {
			t.Errorf("zoom %.1f: augmented photo is %.2f levels a pixel from serving's canvas, want <= 2", scale, levels[config.SourcePhoto])
		}
		if scale != 1 && levels[config.SourceCanvas] < 2*levels[config.SourcePhoto] {
			t.Errorf("zoom %.1f: the canvas (%.2f levels) is not farther from serving than the photo (%.2f)", scale, levels[config.SourceCanvas], levels[config.SourcePhoto])
		}
	}
}
