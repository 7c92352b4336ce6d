package preprocess

import (
	"image"
	"math"
	"testing"
)

// fruitScene is a w x h picture: backdrop bg, a textured disc of radius r
// at the centre, every channel then multiplied by cast.
func fruitScene(w, h, r int, bg [3]float64, cast [3]float64) *image.RGBA {
	m := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			c := bg
			dx, dy := float64(x-w/2), float64(y-h/2)
			if d := math.Hypot(dx, dy); d < float64(r) {
				shade := 1 - 0.4*d/float64(r)
				c = [3]float64{200 * shade, (60 + 40*math.Sin(8*dx/float64(r))) * shade, 40 * shade}
			}
			i := m.PixOffset(x, y)
			for k := range 3 {
				m.Pix[i+k] = uint8(min(255, math.Round(c[k]*cast[k])))
			}
			m.Pix[i+3] = 255
		}
	}
	return m
}

// boxBlur is a (2k+1)-wide box blur, clamped at the edges.
func boxBlur(m *image.RGBA, k int) *image.RGBA {
	w, h := m.Rect.Dx(), m.Rect.Dy()
	out := image.NewRGBA(m.Rect)
	for y := range h {
		for x := range w {
			var s [3]int
			n := 0
			for yy := max(0, y-k); yy <= min(h-1, y+k); yy++ {
				for xx := max(0, x-k); xx <= min(w-1, x+k); xx++ {
					i := m.PixOffset(xx, yy)
					s[0], s[1], s[2] = s[0]+int(m.Pix[i]), s[1]+int(m.Pix[i+1]), s[2]+int(m.Pix[i+2])
					n++
				}
			}
			i := out.PixOffset(x, y)
			out.Pix[i], out.Pix[i+1], out.Pix[i+2], out.Pix[i+3] = uint8(s[0]/n), uint8(s[1]/n), uint8(s[2]/n), 255
		}
	}
	return out
}

// pixelDiff is the mean absolute difference of two canvases, in levels.
func pixelDiff(a, b *image.RGBA) float64 {
	d := 0.0
	for i := range a.Pix {
		d += math.Abs(float64(a.Pix[i]) - float64(b.Pix[i]))
	}
	return d / float64(len(a.Pix)*3/4)
}

func leverSpec(framing, levels, backdrop string) Spec {
	s := DefaultSpec(32)
	s.Pad, s.Framing, s.Levels, s.Backdrop = PadBorderMedian, framing, levels, backdrop
	return s
}

var white = [3]float64{250, 250, 250}
var neutral = [3]float64{1, 1, 1}

// TestSoftFramingStableUnderBlur: for a fruit that nearly touches the
// frame, a mild blur flips the hard backdrop decision and the hard
// canvas changes far more than the soft one.
func TestSoftFramingStableUnderBlur(t *testing.T) {
	hard, soft := leverSpec(FramingObject, LevelsObject, BackdropRepaint), leverSpec(FramingSoft, LevelsObject, BackdropRepaint)
	flipped := 0
	for r := 40; r <= 58; r++ {
		clean := fruitScene(100, 100, r, white, neutral)
		blurred := boxBlur(clean, 2)
		if analyse(clean).framed == analyse(blurred).framed {
			continue
		}
		flipped++
		dh := pixelDiff(hard.canonicalCanvas(clean, 32), hard.canonicalCanvas(blurred, 32))
		ds := pixelDiff(soft.canonicalCanvas(clean, 32), soft.canonicalCanvas(blurred, 32))
		if ds > dh/2 {
			t.Errorf("radius %d: the blur moved the soft canvas %.2f levels, the hard one %.2f: soft should move less than half", r, ds, dh)
		}
	}
	if flipped == 0 {
		t.Fatal("no radius flipped the hard decision under blur: the test shows nothing")
	}
}

// TestSoftFramingMatchesHardWhenClear: a small fruit well inside a white
// backdrop is clearly framable (weight 1), and the soft canvas is the
// hard one.
func TestSoftFramingMatchesHardWhenClear(t *testing.T) {
	m := fruitScene(120, 100, 35, white, neutral)
	if w := analyse(m).weight; w != 1 {
		t.Fatalf("weight %v, want 1", w)
	}
	hard := leverSpec(FramingObject, LevelsObject, BackdropRepaint).canonicalCanvas(m, 32)
	soft := leverSpec(FramingSoft, LevelsObject, BackdropRepaint).canonicalCanvas(m, 32)
	if d := pixelDiff(hard, soft); d != 0 {
		t.Errorf("soft canvas differs from the hard one by %.3f levels", d)
	}
}

// TestBalanceCancelsWarmCast: a warm cast on a near-white backdrop gives
// nearly the clean canvas under BackdropBalance, not under repaint alone;
// a clearly coloured backdrop is left unbalanced.
func TestBalanceCancelsWarmCast(t *testing.T) {
	warm := [3]float64{1.1, 1, 0.8}
	bg := [3]float64{210, 210, 210}
	clean, cast := fruitScene(120, 100, 30, bg, neutral), fruitScene(120, 100, 30, bg, warm)
	rep, bal := leverSpec(FramingObject, LevelsObject, BackdropRepaint), leverSpec(FramingObject, LevelsObject, BackdropBalance)
	dr := pixelDiff(rep.canonicalCanvas(clean, 32), rep.canonicalCanvas(cast, 32))
	db := pixelDiff(bal.canonicalCanvas(clean, 32), bal.canonicalCanvas(cast, 32))
	if db > 2 || db > dr/3 {
		t.Errorf("warm cast moved the balanced canvas %.2f levels (repaint only: %.2f); want under 2 and a third", db, dr)
	}
	blue := fruitScene(120, 100, 30, [3]float64{70, 140, 220}, neutral)
	if d := pixelDiff(rep.canonicalCanvas(blue, 32), bal.canonicalCanvas(blue, 32)); d != 0 {
		t.Errorf("a blue backdrop was balanced: canvases differ by %.3f levels", d)
	}
}

// TestRobustLevelsIgnoreHighlights: a saturated highlight on a few
// percent of the fruit moves mean/std levels more than robust levels.
func TestRobustLevelsIgnoreHighlights(t *testing.T) {
	clean := fruitScene(120, 100, 35, white, neutral)
	spot := fruitScene(120, 100, 35, white, neutral)
	for y := 36; y < 48; y++ {
		for x := 50; x < 60; x++ {
			i := spot.PixOffset(x, y)
			spot.Pix[i], spot.Pix[i+1], spot.Pix[i+2] = 255, 250, 240
		}
	}
	obj, rob := leverSpec(FramingObject, LevelsObject, BackdropRepaint), leverSpec(FramingObject, LevelsRobust, BackdropRepaint)
	do := pixelDiff(obj.canonicalCanvas(clean, 32), obj.canonicalCanvas(spot, 32))
	dr := pixelDiff(rob.canonicalCanvas(clean, 32), rob.canonicalCanvas(spot, 32))
	if dr >= 0.8*do {
		t.Errorf("the highlight moved the robust canvas %.2f levels, the mean/std one %.2f: want under 0.8 of it", dr, do)
	}
}
