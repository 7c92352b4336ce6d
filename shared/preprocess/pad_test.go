package preprocess_test

import (
	"bytes"
	"encoding/json"
	"image"
	"image/color"
	"image/png"
	"math"
	"strings"
	"testing"

	"github.com/orchard-mlops/orchard/shared/preprocess"
	"github.com/orchard-mlops/orchard/shared/preprocess/preprocesstest"
)

// TestGoldenPadded pins the border-median path bit for bit, and shows it
// differs from the old path (the old golden still holds in TestGolden).
func TestGoldenPadded(t *testing.T) {
	s := preprocesstest.GoldenPaddedSpec
	x := make([]float32, s.TensorLen())
	if err := s.Process(preprocesstest.GoldenJPEG, preprocess.Limits{}, x); err != nil {
		t.Fatal(err)
	}
	got := preprocesstest.TensorDigest(x)
	if got != preprocesstest.GoldenPaddedDigest {
		t.Errorf("padded golden digest = %s, want %s", got, preprocesstest.GoldenPaddedDigest)
	}
	if got == preprocesstest.GoldenDigest {
		t.Error("padded digest equals the white-canvas digest: the pad field had no effect")
	}
}

// TestGoldenCanonical pins the canonical framing and exposure paths bit
// for bit through Process and after the spec's JSON round trip: every step
// on, and the default config's small-object framing.
func TestGoldenCanonical(t *testing.T) {
	for _, g := range []struct {
		spec   preprocess.Spec
		digest string
	}{
		{preprocesstest.GoldenCanonicalSpec, preprocesstest.GoldenCanonicalDigest},
		{preprocesstest.GoldenSmallSpec, preprocesstest.GoldenSmallDigest},
	} {
		b, err := json.Marshal(g.spec)
		if err != nil {
			t.Fatal(err)
		}
		var back preprocess.Spec
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		for _, sp := range []preprocess.Spec{g.spec, back} {
			x := make([]float32, sp.TensorLen())
			if err := sp.Process(preprocesstest.GoldenJPEG, preprocess.Limits{}, x); err != nil {
				t.Fatal(err)
			}
			if got := preprocesstest.TensorDigest(x); got != g.digest {
				t.Errorf("framing %q: golden digest = %s, want %s", sp.Framing, got, g.digest)
			}
		}
	}
}

// photo is a w x h PNG of a grey backdrop with a reddish disc, every
// value scaled by gain.
func photo(t *testing.T, w, h int, gain float64) []byte {
	t.Helper()
	m := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			c := [3]float64{200, 200, 190}
			dx, dy := float64(x-w/2), float64(y-h/2)
			if dx*dx+dy*dy < float64(h*h)/9 {
				c = [3]float64{180, 40 + float64(x%7), 30}
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

// standardise is what the graph does: per-image zero mean, unit std.
func standardise(x []float32) []float64 {
	var sum, sq float64
	for _, v := range x {
		sum += float64(v)
	}
	mean := sum / float64(len(x))
	for _, v := range x {
		sq += (float64(v) - mean) * (float64(v) - mean)
	}
	sd := math.Sqrt(sq / float64(len(x)))
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = (float64(v) - mean) / sd
	}
	return out
}

// TestBorderMedianPadCancelsExposure: a dark non-square photo gives the
// clean photo's tensor under per-image standardisation with border-median
// padding, and does not with the white canvas.
func TestBorderMedianPadCancelsExposure(t *testing.T) {
	clean, dark := photo(t, 120, 80, 1), photo(t, 120, 80, 0.3)
	maxDiff := func(s preprocess.Spec) float64 {
		a, b := make([]float32, s.TensorLen()), make([]float32, s.TensorLen())
		if err := s.Process(clean, preprocess.Limits{}, a); err != nil {
			t.Fatal(err)
		}
		if err := s.Process(dark, preprocess.Limits{}, b); err != nil {
			t.Fatal(err)
		}
		sa, sb := standardise(a), standardise(b)
		var d float64
		for i := range sa {
			d = max(d, math.Abs(sa[i]-sb[i]))
		}
		return d
	}
	padded := preprocess.DefaultSpec(32)
	padded.Pad = preprocess.PadBorderMedian
	if d := maxDiff(padded); d > 0.1 {
		t.Errorf("border-median pad: max standardised difference %.3f, want <= 0.1", d)
	}
	if d := maxDiff(preprocess.DefaultSpec(32)); d < 0.5 {
		t.Errorf("white pad: max standardised difference %.3f; the test no longer shows the problem", d)
	}
}

func TestSpecRejectsUnknownPad(t *testing.T) {
	s := preprocess.DefaultSpec(32)
	s.Pad = "mirror"
	if err := s.Validate(); err == nil || !strings.Contains(err.Error(), "pad") {
		t.Errorf("Validate() = %v, want an error naming pad", err)
	}
}
