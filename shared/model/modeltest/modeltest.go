// Package modeltest makes small, real models for tests: an ONNX colour
// classifier whose answers are known in advance, so tests of the functions
// and the registry can assert exact labels without training anything.
//
// The graph is the trainer's own export path (one identity 3x3 convolution,
// ReLU, pooling, a dense head), so onnxruntime runs the same operators it
// runs for trained models.
package modeltest

import (
	"bytes"
	"context"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"testing"
	"time"

	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/shared/model"
	"github.com/orchard-mlops/orchard/shared/onnx"
	"github.com/orchard-mlops/orchard/shared/preprocess"
)

// Size is the colour model's input side.
const Size = 8

// Colours are the colour model's classes in output order by default: a
// mostly red image is "red", and so on.
var Colours = []string{"red", "green", "blue"}

// Options vary the colour model.
type Options struct {
	Name     string   // default "colours"
	Version  string   // default "v1"
	Labels   []string // output order; default Colours. Permuting them makes a model that answers differently.
	Accuracy float64  // recorded as the ORT-measured validation accuracy; default 0.9
}

// Colour returns the colour model. Its logits are 8x the mean of each
// normalised, ReLU-clipped channel, so a saturated red image scores about
// softmax(8, 0, 0) for Labels[0].
func Colour(tb testing.TB, o Options) *model.Model {
	tb.Helper()
	if o.Name == "" {
		o.Name = "colours"
	}
	if o.Version == "" {
		o.Version = "v1"
	}
	if o.Labels == nil {
		o.Labels = Colours
	}
	if o.Accuracy == 0 {
		o.Accuracy = 0.9
	}
	conv := onnx.Conv{In: 3, Out: 3, Weights: make([]float32, 9*3*3), Bias: make([]float32, 3)}
	for c := range 3 {
		conv.Weights[((1*3+1)*3+c)*3+c] = 1 // centre tap, channel c to c
	}
	head := onnx.Dense{In: 3, Out: 3, Weights: make([]float32, 9), Bias: make([]float32, 3)}
	for c := range 3 {
		head.Weights[c*3+c] = 8
	}
	net := &onnx.Net{InputSize: Size, Blocks: [][]onnx.Conv{{conv}}, Head: head, InputName: "input", OutputName: "logits"}
	onnxBytes, err := onnx.Export(net, onnx.Options{})
	if err != nil {
		tb.Fatalf("modeltest: exporting the colour model: %v", err)
	}
	spec := preprocess.DefaultSpec(Size)
	m := &model.Model{ONNX: onnxBytes, Metadata: model.Metadata{
		FormatVersion: model.FormatVersion,
		Name:          o.Name,
		Version:       o.Version,
		Labels:        o.Labels,
		Input:         model.TensorSpec{Name: "input", Shape: spec.Shape(-1)},
		Output:        model.TensorSpec{Name: "logits", Shape: []int64{-1, int64(len(o.Labels))}},
		Preprocessing: spec,
		Metrics:       model.Metrics{ValidationAccuracy: o.Accuracy},
		Dataset:       model.Dataset{URI: "modeltest://colours", ManifestDigest: "sha256:0", Images: 0},
		CreatedAt:     time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
	}, Verification: colourVerification()}
	if err := m.Metadata.Validate(); err != nil {
		tb.Fatalf("modeltest: %v", err)
	}
	return m
}

// colourVerification is the colour model's verification batch, computed
// from its definition: for an input whose channels are constant v, the
// identity convolution, ReLU and both poolings give max(v, 0) per channel,
// and the head multiplies by 8 (exact in float32).
func colourVerification() *model.Verification {
	images := [][3]float32{{1.5, -0.5, 0.25}, {-1, 2, 0}, {0.75, 0.75, -2}}
	v := &model.Verification{Images: len(images), Tolerance: 1e-5}
	for _, ch := range images {
		for c := range 3 {
			for range Size * Size {
				v.Inputs = append(v.Inputs, ch[c])
			}
		}
		for c := range 3 {
			v.Logits = append(v.Logits, 8*max(ch[c], 0))
		}
	}
	return v
}

// Save writes m into st (a directory or bucket prefix).
func Save(tb testing.TB, m *model.Model, st blob.Store) {
	tb.Helper()
	if err := m.Save(context.Background(), st); err != nil {
		tb.Fatalf("modeltest: %v", err)
	}
}

// Dir writes the colour model into a fresh temporary directory and returns
// the directory.
func Dir(tb testing.TB, o Options) string {
	tb.Helper()
	dir := tb.TempDir()
	st, err := blob.NewDir(dir)
	if err != nil {
		tb.Fatal(err)
	}
	Save(tb, Colour(tb, o), st)
	return dir
}

// Solid returns a w x h image of one colour.
func Solid(c color.RGBA, w, h int) *image.RGBA {
	m := image.NewRGBA(image.Rect(0, 0, w, h))
	for i := 0; i < len(m.Pix); i += 4 {
		m.Pix[i], m.Pix[i+1], m.Pix[i+2], m.Pix[i+3] = c.R, c.G, c.B, c.A
	}
	return m
}

// JPEG encodes an image at quality 95.
func JPEG(tb testing.TB, m image.Image) []byte {
	tb.Helper()
	var b bytes.Buffer
	if err := jpeg.Encode(&b, m, &jpeg.Options{Quality: 95}); err != nil {
		tb.Fatal(err)
	}
	return b.Bytes()
}

// PNG encodes an image.
func PNG(tb testing.TB, m image.Image) []byte {
	tb.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, m); err != nil {
		tb.Fatal(err)
	}
	return b.Bytes()
}

// Named colours the colour model separates.
var (
	Red   = color.RGBA{230, 20, 20, 255}
	Green = color.RGBA{20, 230, 20, 255}
	Blue  = color.RGBA{20, 20, 230, 255}
)
