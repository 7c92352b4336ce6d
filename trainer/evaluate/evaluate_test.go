package evaluate

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"testing"

	"github.com/orchard-mlops/orchard/shared/preprocess"
)

// TestCorruptedTensorPadsAsServing: with no corruption, the corruption
// path gives exactly the tensor serving computes from the same pixels,
// under every pad mode. (It once padded with white whatever the spec said,
// so a border-median model was measured on inputs it never serves.)
func TestCorruptedTensorPadsAsServing(t *testing.T) {
	img := image.NewRGBA(image.Rect(0, 0, 90, 50))
	for y := range 50 {
		for x := range 90 {
			img.Set(x, y, color.RGBA{uint8(20 + x/3), uint8(40 + y/2), 60, 255})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	for _, pad := range []string{"", preprocess.PadBorderMedian} {
		spec := preprocess.DefaultSpec(16)
		spec.Pad = pad
		want := make([]float32, spec.TensorLen())
		if err := spec.Process(buf.Bytes(), preprocess.Limits{}, want); err != nil {
			t.Fatal(err)
		}
		d, err := preprocess.Decode(buf.Bytes(), preprocess.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		got := make([]float32, spec.TensorLen())
		if err := corruptedTensor(spec, d, shrink(d.Image, WorkSize), 0, preprocess.Limits{}, got); err != nil {
			t.Fatal(err)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("pad %q: element %d is %v, serving gives %v", pad, i, got[i], want[i])
			}
		}
	}
}
