package cnn

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gomlx/compute"
	_ "github.com/gomlx/compute/gobackend" // the pure-Go backend
	. "github.com/gomlx/gomlx/core/graph"  //nolint:revive
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/orchard-mlops/orchard/shared/onnx"
)

// standardised runs standardise on images given as pixel values in [0, 1]
// (encoded as the default spec does: (v - 0.5) / 0.5) and returns the flat
// result.
func standardised(t *testing.T, space string, pixels []float32, n, size int) []float32 {
	t.Helper()
	backend, err := compute.New()
	if err != nil {
		t.Fatal(err)
	}
	a := Arch{InputNorm: true, InputSpace: space,
		Pixels: onnx.PixelScale{Scale: [3]float32{0.5, 0.5, 0.5}, Offset: [3]float32{0.5, 0.5, 0.5}}}
	in := make([]float32, len(pixels))
	for i, v := range pixels {
		in[i] = (v - 0.5) / 0.5
	}
	out, err := ExecOnce(backend, func(x *Node) *Node { return standardise(a, x) },
		tensors.FromFlatDataAndDimensions(in, n, 3, size, size))
	if err != nil {
		t.Fatal(err)
	}
	v, err := tensors.CopyFlatData[float32](out)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// lit applies a per-channel gain and a tone curve v^g to NCHW pixels.
func lit(pixels []float32, size int, gain [3]float64, g float64) []float32 {
	out := make([]float32, len(pixels))
	for i, v := range pixels {
		c := i / (size * size) % 3
		out[i] = float32(gain[c] * math.Pow(float64(v), g))
	}
	return out
}

func meanAbsDiff(a, b []float32) float64 {
	s := 0.0
	for i := range a {
		s += math.Abs(float64(a[i] - b[i]))
	}
	return s / float64(len(a))
}

// TestLogChromaCancelsCastsAndTone: a warm cast (blue and green down), a
// tone curve and a dark exposure move the log-chroma tensor much less than
// the linear one (the epsilons keep neither exact; the linear one cancels
// the exposure up to InputNormEpsilon); the log space cancels the tone
// curve and the exposure but not the cast.
func TestLogChromaCancelsCastsAndTone(t *testing.T) {
	const n, size = 2, 8
	r := rand.New(rand.NewPCG(1, 2))
	clean := make([]float32, n*3*size*size)
	for i := range clean {
		clean[i] = float32(0.25 + 0.7*r.Float64()) // a lit object: no blacks, no clipping
	}
	cases := []struct {
		name string
		gain [3]float64
		g    float64
		// the most each space's tensor may move, as a share of the linear one's change
		logShare, chromaShare float64
	}{
		{"warm cast", [3]float64{1, 0.85, 0.6}, 1, 1.5, 0.25},
		{"tone curve", [3]float64{1, 1, 1}, 2.2, 0.5, 0.5},
		{"dark", [3]float64{0.4, 0.4, 0.4}, 1, 0.5, 0.5},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			shifted := lit(clean, size, tc.gain, tc.g)
			diff := map[string]float64{}
			for _, space := range []string{"", onnx.InputLog, onnx.InputLogChroma} {
				diff[space] = meanAbsDiff(standardised(t, space, clean, n, size), standardised(t, space, shifted, n, size))
			}
			t.Logf("mean |change|: linear %.4f, log %.4f, log-chroma %.4f", diff[""], diff[onnx.InputLog], diff[onnx.InputLogChroma])
			if diff[""] < 0.05 {
				t.Fatalf("linear change %.4f: the case does not exercise the standardisation", diff[""])
			}
			if limit := tc.logShare * diff[""]; diff[onnx.InputLog] > limit {
				t.Errorf("log: change %.4f > %.4f", diff[onnx.InputLog], limit)
			}
			if limit := tc.chromaShare * diff[""]; diff[onnx.InputLogChroma] > limit {
				t.Errorf("log-chroma: change %.4f > %.4f", diff[onnx.InputLogChroma], limit)
			}
		})
	}
}

// TestStackedSpacesConcatenate: a stack of spaces gives each space's own
// standardisation as three channels per image, in the stack's order.
func TestStackedSpacesConcatenate(t *testing.T) {
	const n, size = 2, 4
	r := rand.New(rand.NewPCG(3, 4))
	pixels := make([]float32, n*3*size*size)
	for i := range pixels {
		pixels[i] = r.Float32()
	}
	spaces := []string{"", onnx.InputLogChroma, onnx.InputLog}
	got := standardised(t, "linear+log-chroma+log", pixels, n, size)
	if want := n * 3 * len(spaces) * size * size; len(got) != want {
		t.Fatalf("%d values, want %d", len(got), want)
	}
	plane := 3 * size * size
	for s, space := range spaces {
		want := standardised(t, space, pixels, n, size)
		for img := range n {
			g := got[(img*len(spaces)+s)*plane:][:plane]
			if d := meanAbsDiff(g, want[img*plane:][:plane]); d > 1e-6 {
				t.Errorf("image %d, space %q: mean |diff| %g from the space alone", img, space, d)
			}
		}
	}
}

// TestLogChromaBlackCancelsOffsets: a per-channel gain and offset (haze,
// a lifted black under a cast, the suite's bright 0.6v+0.4) leaves the
// log-chroma-black tensor unchanged up to onnx.BlackFloor, while it moves
// log-chroma's; a tone curve on an image with blacks near zero moves it
// about as little as log-chroma's.
func TestLogChromaBlackCancelsOffsets(t *testing.T) {
	const n, size = 2, 8
	r := rand.New(rand.NewPCG(5, 6))
	clean := make([]float32, n*3*size*size)
	for i := range clean {
		clean[i] = float32(0.02 + 0.9*r.Float64())
	}
	cases := []struct {
		name       string
		gain, off  [3]float64
		g          float64
		blackLimit float64 // the most log-chroma-black may move, as a share of log-chroma's change
	}{
		{"bright", [3]float64{0.6, 0.6, 0.6}, [3]float64{0.4, 0.4, 0.4}, 1, 0.1},
		{"hazy warm cast", [3]float64{0.7, 0.6, 0.45}, [3]float64{0.25, 0.2, 0.15}, 1, 0.1},
		{"tone curve", [3]float64{1, 1, 1}, [3]float64{}, 2.2, 1.5},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			shifted := make([]float32, len(clean))
			for i, v := range clean {
				c := i / (size * size) % 3
				shifted[i] = float32(tc.gain[c]*math.Pow(float64(v), tc.g) + tc.off[c])
			}
			diff := map[string]float64{}
			for _, space := range []string{onnx.InputLogChroma, onnx.InputLogChromaBlack} {
				diff[space] = meanAbsDiff(standardised(t, space, clean, n, size), standardised(t, space, shifted, n, size))
			}
			t.Logf("mean |change|: log-chroma %.4f, log-chroma-black %.4f", diff[onnx.InputLogChroma], diff[onnx.InputLogChromaBlack])
			if diff[onnx.InputLogChroma] < 0.05 {
				t.Fatalf("log-chroma change %.4f: the case does not exercise the black level", diff[onnx.InputLogChroma])
			}
			if limit := tc.blackLimit * diff[onnx.InputLogChroma]; diff[onnx.InputLogChromaBlack] > limit {
				t.Errorf("log-chroma-black: change %.4f > %.4f", diff[onnx.InputLogChromaBlack], limit)
			}
		})
	}
}
