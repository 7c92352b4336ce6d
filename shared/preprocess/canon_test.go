package preprocess_test

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"math"
	"strings"
	"testing"

	"github.com/orchard-mlops/orchard/shared/preprocess"
)

// canonicalSpec turns every canonical step on.
func canonicalSpec(size int) preprocess.Spec {
	s := preprocess.DefaultSpec(size)
	s.Pad = preprocess.PadBorderMedian
	s.Framing = preprocess.FramingObject
	s.Levels = preprocess.LevelsObject
	s.Backdrop = preprocess.BackdropRepaint
	return s
}

// scenePNG is a w x h PNG: a backdrop colour bg with a textured fruit-like
// disc of radius r at (cx, cy); every value scaled by gain.
func scenePNG(t *testing.T, w, h, cx, cy, r int, bg [3]float64, gain float64) []byte {
	t.Helper()
	m := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			c := bg
			dx, dy := float64(x-cx), float64(y-cy)
			if d := math.Hypot(dx, dy); d < float64(r) {
				shade := 1 - 0.4*d/float64(r)
				c = [3]float64{200 * shade, (60 + 40*math.Sin(8*dx/float64(r))) * shade, 40 * shade}
			}
			m.Set(x, y, color.RGBA{uint8(c[0] * gain), uint8(c[1] * gain), uint8(c[2] * gain), 255})
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, m); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func tensorOf(t *testing.T, s preprocess.Spec, b []byte) []float32 {
	t.Helper()
	x := make([]float32, s.TensorLen())
	if err := s.Process(b, preprocess.Limits{}, x); err != nil {
		t.Fatal(err)
	}
	return x
}

// meanAbs is the mean absolute difference of two tensors after the
// graph's per-image standardisation.
func meanAbs(a, b []float32) float64 {
	sa, sb := standardise(a), standardise(b)
	var d float64
	for i := range sa {
		d += math.Abs(sa[i] - sb[i])
	}
	return d / float64(len(sa))
}

var grey = [3]float64{205, 205, 198}

// TestCanonicalCancelsExposure: a dark and a washed-out non-square photo
// give about the clean photo's tensor; the old white canvas does not.
func TestCanonicalCancelsExposure(t *testing.T) {
	clean := scenePNG(t, 150, 100, 75, 50, 40, grey, 1)
	dark := scenePNG(t, 150, 100, 75, 50, 40, grey, 0.4)
	for _, tc := range []struct {
		name string
		spec preprocess.Spec
		ok   bool
	}{{"canonical", canonicalSpec(32), true}, {"white", preprocess.DefaultSpec(32), false}} {
		d := meanAbs(tensorOf(t, tc.spec, clean), tensorOf(t, tc.spec, dark))
		t.Logf("%s: mean standardised difference dark vs clean %.3f", tc.name, d)
		if tc.ok && d > 0.08 {
			t.Errorf("%s: dark differs from clean by %.3f, want <= 0.08", tc.name, d)
		}
		if !tc.ok && d < 0.15 {
			t.Errorf("%s: dark differs from clean by only %.3f; the test no longer shows the problem", tc.name, d)
		}
	}
}

// TestCanonicalFramesZoomedOut: a small fruit in a wide shot is framed
// like the same fruit filling the picture.
func TestCanonicalFramesZoomedOut(t *testing.T) {
	close := scenePNG(t, 200, 200, 100, 100, 88, grey, 1)
	far := scenePNG(t, 300, 240, 170, 110, 60, grey, 1)
	s := canonicalSpec(32)
	d := meanAbs(tensorOf(t, s, close), tensorOf(t, s, far))
	old := meanAbs(tensorOf(t, preprocess.DefaultSpec(32), close), tensorOf(t, preprocess.DefaultSpec(32), far))
	t.Logf("framed %.3f, unframed %.3f", d, old)
	if d > 0.15 || d > old/3 {
		t.Errorf("framed zoomed-out photo differs by %.3f (unframed %.3f), want <= 0.15 and a third of unframed", d, old)
	}
}

// TestCanonicalRepaintsBackdrop: a coloured backdrop becomes the spec's
// background, so the tensor matches the grey-backdrop photo's.
func TestCanonicalRepaintsBackdrop(t *testing.T) {
	g := scenePNG(t, 160, 160, 80, 80, 60, grey, 1)
	blue := scenePNG(t, 160, 160, 80, 80, 60, [3]float64{40, 90, 200}, 1)
	s := canonicalSpec(32)
	d := meanAbs(tensorOf(t, s, g), tensorOf(t, s, blue))
	old := meanAbs(tensorOf(t, preprocess.DefaultSpec(32), g), tensorOf(t, preprocess.DefaultSpec(32), blue))
	t.Logf("repainted %.3f, as is %.3f", d, old)
	if d > 0.1 || d > old/3 {
		t.Errorf("blue backdrop differs by %.3f after repaint (%.3f before), want <= 0.1 and a third", d, old)
	}
	x := tensorOf(t, s, blue)
	// The corner is backdrop: it must be the spec's white, 1.0 after (v/255-0.5)/0.5.
	for c := range 3 {
		if v := x[c*32*32]; v < 0.95 {
			t.Errorf("corner channel %d = %.3f after repaint, want white (1)", c, v)
		}
	}
}

// texturedWide is a 192 x 96 picture of smooth colour waves: no uniform
// backdrop anywhere.
func texturedWide() *image.RGBA {
	wide := image.NewRGBA(image.Rect(0, 0, 192, 96))
	for y := range 96 {
		for x := range 192 {
			wide.Set(x, y, color.RGBA{uint8(128 + 100*math.Sin(float64(x)/15)), uint8(128 + 100*math.Cos(float64(y)/11)), uint8((x + y) / 2), 255})
		}
	}
	return wide
}

// TestCanonicalCentreCropsWithoutBackdrop: a picture with no uniform
// backdrop is cropped to its central square, not padded.
func TestCanonicalCentreCropsWithoutBackdrop(t *testing.T) {
	wide := texturedWide()
	centre := image.NewRGBA(image.Rect(0, 0, 96, 96))
	for y := range 96 {
		for x := range 96 {
			centre.Set(x, y, wide.At(x+48, y))
		}
	}
	enc := func(m image.Image) []byte {
		var b bytes.Buffer
		if err := png.Encode(&b, m); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	s := preprocess.DefaultSpec(32)
	s.Framing = preprocess.FramingObject
	a, b := tensorOf(t, s, enc(wide)), tensorOf(t, s, enc(centre))
	padded := tensorOf(t, preprocess.DefaultSpec(32), enc(wide))
	var d, old float64
	for i := range a {
		d += math.Abs(float64(a[i]-b[i])) / float64(len(a))
		old += math.Abs(float64(padded[i]-b[i])) / float64(len(a))
	}
	t.Logf("centre crop vs central square %.4f, padded vs central square %.4f", d, old)
	if d > 0.03 || old < 0.2 {
		t.Errorf("centre crop differs from the central square by %.3f (want <= 0.03); padded by %.3f (want >= 0.2)", d, old)
	}
}

// TestFitOfAPictureMatchesServing: the augmenter's entry point, Fit of a
// Decoded wrapping an augmented picture, makes a zoomed-out canvas look
// like the framed one serving makes, and under a spec with no canonical
// steps gives back a canvas-sized picture unchanged.
func TestFitOfAPictureMatchesServing(t *testing.T) {
	s := canonicalSpec(32)
	framed, err := s.Canvas(scenePNG(t, 200, 200, 100, 100, 88, grey, 1), preprocess.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	plain := preprocess.DefaultSpec(32)
	wide, err := plain.Canvas(scenePNG(t, 200, 200, 100, 100, 50, grey, 1), preprocess.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	a, b := make([]float32, s.TensorLen()), make([]float32, s.TensorLen())
	if err := s.Tensor(framed, a); err != nil {
		t.Fatal(err)
	}
	if err := s.Tensor(s.Fit(&preprocess.Decoded{Image: wide}), b); err != nil {
		t.Fatal(err)
	}
	if d := meanAbs(a, b); d > 0.15 {
		t.Errorf("Fit of a zoomed-out canvas differs from the framed canvas by %.3f, want <= 0.15", d)
	}
	if got := plain.Fit(&preprocess.Decoded{Image: wide}); !bytes.Equal(got.Pix, wide.Pix) {
		t.Error("Fit changed a canvas-sized picture under a spec with no canonical steps")
	}
}

func TestSpecRejectsUnknownCanonicalValues(t *testing.T) {
	for _, f := range []string{"framing", "levels", "backdrop"} {
		s := preprocess.DefaultSpec(32)
		switch f {
		case "framing":
			s.Framing = "tight"
		case "levels":
			s.Levels = "auto"
		case "backdrop":
			s.Backdrop = "blur"
		}
		if err := s.Validate(); err == nil || !strings.Contains(err.Error(), f) {
			t.Errorf("Validate() = %v, want an error naming %s", err, f)
		}
	}
}

// TestCanonicalKeepsCloseupSkin: a close-up is skin to the edges with
// highlights on it. Its uniform ring is not a backdrop (no solid object
// sits on it), so the skin must not be repainted the spec's white nor the
// levels measured on the highlights.
func TestCanonicalKeepsCloseupSkin(t *testing.T) {
	m := image.NewRGBA(image.Rect(0, 0, 128, 128))
	for y := range 128 {
		for x := range 128 {
			c := color.RGBA{180, uint8(40 + (x*7+y*3)%9), 35, 255}
			if x%32 >= 12 && x%32 < 20 && y%32 >= 12 && y%32 < 16 { // scattered highlights
				c = color.RGBA{250, 240, 235, 255}
			}
			m.Set(x, y, c)
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, m); err != nil {
		t.Fatal(err)
	}
	x := tensorOf(t, canonicalSpec(32), b.Bytes())
	white := 0
	for i := range 32 * 32 {
		if x[32*32+i] > 0.6 && x[2*32*32+i] > 0.6 { // green and blue high: white
			white++
		}
	}
	if white > 32*32/4 {
		t.Errorf("%d of %d canvas pixels are white: the close-up's skin was taken for a backdrop", white, 32*32)
	}
}

// framingSpecs are the border-median spec with small and with object
// framing, and without framing.
func framingSpecs() (small, object, plain preprocess.Spec) {
	plain = preprocess.DefaultSpec(32)
	plain.Pad = preprocess.PadBorderMedian
	small, object = plain, plain
	small.Framing, object.Framing = preprocess.FramingSmall, preprocess.FramingObject
	return small, object, plain
}

// TestFramingSmall: FramingSmall frames a fruit taken from afar like
// FramingObject does, and leaves a fruit filling the picture as the plain
// border-median path fits it (no crop, its backdrop kept), where
// FramingObject crops it (0.079 against 0.56 standardised).
func TestFramingSmall(t *testing.T) {
	small, object, plain := framingSpecs()
	close := scenePNG(t, 200, 200, 100, 100, 88, grey, 1)
	far := scenePNG(t, 300, 240, 170, 110, 60, grey, 1)
	full := scenePNG(t, 220, 200, 110, 100, 80, grey, 1) // box 0.73 of the longer side: over smallFrame
	if d := meanAbs(tensorOf(t, small, far), tensorOf(t, object, far)); d > 1e-6 {
		t.Errorf("zoomed-out fruit: small framing differs from object framing by %.4f, want the same canvas", d)
	}
	if d := meanAbs(tensorOf(t, small, close), tensorOf(t, small, far)); d > 0.15 {
		t.Errorf("zoomed-out fruit framed %.3f from the close one, want <= 0.15", d)
	}
	kept := meanAbs(tensorOf(t, small, full), tensorOf(t, plain, full))
	cropped := meanAbs(tensorOf(t, object, full), tensorOf(t, plain, full))
	t.Logf("full-size fruit: small framing %.4f from the plain canvas, object framing %.4f", kept, cropped)
	// Not zero: the canonical path pads the reduced photo to a square
	// before resampling, the plain one places it on the canvas after.
	if kept > 0.1 || cropped < 5*kept {
		t.Errorf("full-size fruit: small framing %.4f from the plain canvas (want <= 0.1), object framing %.4f (want 5x more)", kept, cropped)
	}
}

// TestFramingSmallKeepsSceneWithoutBackdrop: a wide picture with no
// uniform backdrop keeps its whole picture under FramingSmall (padded as
// the plain path pads it), where FramingObject takes its central square.
func TestFramingSmallKeepsSceneWithoutBackdrop(t *testing.T) {
	wide := texturedWide()
	var b bytes.Buffer
	if err := png.Encode(&b, wide); err != nil {
		t.Fatal(err)
	}
	small, object, plain := framingSpecs()
	kept := meanAbs(tensorOf(t, small, b.Bytes()), tensorOf(t, plain, b.Bytes()))
	cropped := meanAbs(tensorOf(t, object, b.Bytes()), tensorOf(t, plain, b.Bytes()))
	t.Logf("no backdrop: small framing %.4f from the plain canvas, object framing %.4f", kept, cropped)
	if kept > 0.1 || cropped < 5*kept {
		t.Errorf("no backdrop: small framing %.4f from the plain canvas (want <= 0.1), object framing %.4f (want 5x more)", kept, cropped)
	}
}
