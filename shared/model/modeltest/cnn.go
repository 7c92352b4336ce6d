package modeltest

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/orchard-mlops/orchard/shared/model"
	"github.com/orchard-mlops/orchard/shared/onnx"
	"github.com/orchard-mlops/orchard/shared/preprocess"
)

// CNNInputNormEpsilon mirrors trainer/cnn.InputNormEpsilon, the epsilon the
// trainer exports for per-image input standardisation. It is copied rather
// than imported so that tests linking modeltest do not link GoMLX (and
// shared/ never imports trainer/); trainer/config's tests keep the two equal.
const CNNInputNormEpsilon = 0.01

// CNNInputLogEpsilon mirrors trainer/cnn.InputLogEpsilon in the same way.
const CNNInputLogEpsilon = 0.05

// CNNArch is the part of the trainer's configuration (trainer/config's
// model and export sections) that shapes the exported graph.
type CNNArch struct {
	Name          string  `json:"name"`
	InputSize     int     `json:"input_size"`
	InputNorm     bool    `json:"input_norm"`
	InputSpace    string  `json:"input_space,omitempty"`
	Widths        []int   `json:"widths"`
	ConvsPerBlock int     `json:"convs_per_block"`
	BatchNorm     bool    `json:"batch_norm"`
	BNEpsilon     float64 `json:"bn_epsilon"`
	Dense         int     `json:"dense"`
	FoldBatchNorm bool    `json:"fold_batch_norm"`
	Opset         int     `json:"opset"`
}

// DefaultCNNArch is the trainer's default architecture and export options
// (trainer/config/default.yaml), copied so that modeltest does not import
// the trainer; trainer/config's tests keep the two equal.
func DefaultCNNArch() CNNArch {
	return CNNArch{Name: "fruits", InputSize: 32, InputNorm: true, InputSpace: onnx.InputLinear + "+" + onnx.InputLogChromaBlack, Widths: []int{16, 64, 128}, ConvsPerBlock: 1,
		BatchNorm: true, BNEpsilon: 0.001, FoldBatchNorm: true, Opset: 17}
}

// CNNOptions vary the representative CNN.
type CNNOptions struct {
	Arch    *CNNArch // architecture and export options; default DefaultCNNArch()
	Classes int      // default 10 (the Fruits-360 subset Orchard is demonstrated on)
	Seed    uint64   // weight seed; the default 0 is as good as any
}

// CNN returns a model with the trainer's architecture and export options
// for o.Arch (by default the trainer's default configuration), for
// timing onnxruntime and the serving path on a graph of realistic size.
//
// Its weights are deterministic pseudo-random values, NOT trained ones: the
// convolutions are He-normal (the trainer's initialiser) and batch
// normalisation gets plausible running statistics, so activations stay
// finite. Its answers are meaningless, but onnxruntime does the same work
// as for a trained model of the same configuration: the graph comes from
// the trainer's exporter (shared/onnx) with the config's export
// options (batch norm folded, opset), so it has the same operators and
// tensor shapes; only the values differ. Building it needs no GoMLX
// backend, which keeps it cheap enough for benchmarks.
func CNN(o CNNOptions) (*model.Model, error) {
	mc := DefaultCNNArch()
	if o.Arch != nil {
		mc = *o.Arch
	}
	if o.Classes == 0 {
		o.Classes = 10
	}
	if o.Classes < 2 {
		return nil, fmt.Errorf("modeltest: CNN with %d classes; need at least 2", o.Classes)
	}
	archJSON, err := json.Marshal(mc)
	if err != nil {
		return nil, fmt.Errorf("modeltest: %w", err)
	}
	r := rand.New(rand.NewPCG(o.Seed, 0x6f7263686172640a))
	heNormal := func(n, fanIn int) []float32 {
		std := math.Sqrt(2 / float64(fanIn))
		v := make([]float32, n)
		for i := range v {
			z := r.NormFloat64()
			for math.Abs(z) > 2 { // truncated at two standard deviations, as the trainer does
				z = r.NormFloat64()
			}
			v[i] = float32(z * std)
		}
		return v
	}
	uniform := func(n int, lo, hi float64) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(lo + (hi-lo)*r.Float64())
		}
		return v
	}

	const inputName, outputName = "input", "logits" // the trainer's names (trainer/train)
	net := &onnx.Net{InputSize: mc.InputSize, InputName: inputName, OutputName: outputName}
	spec := preprocess.DefaultSpec(mc.InputSize) // what the trainer serves its models with
	if mc.InputNorm {
		net.InputNormEpsilon = CNNInputNormEpsilon
	}
	if err := net.SetInputSpace(mc.InputSpace, onnx.PixelScale{Scale: spec.Std, Offset: spec.Mean}, CNNInputLogEpsilon); err != nil {
		return nil, fmt.Errorf("modeltest: %w", err)
	}
	in := net.InputChannels()
	for range mc.Widths {
		net.Blocks = append(net.Blocks, nil)
	}
	for b, w := range mc.Widths {
		for range mc.ConvsPerBlock {
			cv := onnx.Conv{In: in, Out: w, Weights: heNormal(9*in*w, 9*in)}
			if mc.BatchNorm {
				cv.BN = &onnx.BatchNorm{
					Gamma: uniform(w, 0.8, 1.2), Beta: uniform(w, -0.1, 0.1),
					Mean: uniform(w, -0.2, 0.2), Var: uniform(w, 0.5, 1.5),
					Epsilon: mc.BNEpsilon,
				}
			} else {
				cv.Bias = uniform(w, -0.05, 0.05)
			}
			net.Blocks[b] = append(net.Blocks[b], cv)
			in = w
		}
	}
	if mc.Dense > 0 {
		net.Hidden = &onnx.Dense{In: in, Out: mc.Dense, Weights: heNormal(in*mc.Dense, in), Bias: uniform(mc.Dense, -0.05, 0.05)}
		in = mc.Dense
	}
	net.Head = onnx.Dense{In: in, Out: o.Classes, Weights: heNormal(in*o.Classes, in), Bias: uniform(o.Classes, -0.05, 0.05)}

	onnxBytes, err := onnx.Export(net, onnx.Options{
		FoldBatchNorm: mc.FoldBatchNorm, Opset: mc.Opset,
		DocString: "modeltest: untrained CNN with pseudo-random weights, for timing only",
	})
	if err != nil {
		return nil, fmt.Errorf("modeltest: exporting the CNN: %w", err)
	}
	labels := make([]string, o.Classes)
	for i := range labels {
		labels[i] = fmt.Sprintf("class%02d", i)
	}
	m := &model.Model{ONNX: onnxBytes, URI: "modeltest://cnn", Metadata: model.Metadata{
		FormatVersion:  model.FormatVersion,
		Name:           mc.Name,
		Version:        "untrained",
		Labels:         labels,
		Input:          model.TensorSpec{Name: inputName, Shape: spec.Shape(-1)},
		Output:         model.TensorSpec{Name: outputName, Shape: []int64{-1, int64(o.Classes)}},
		Preprocessing:  spec,
		Dataset:        model.Dataset{URI: "modeltest://untrained", ManifestDigest: "sha256:0"},
		TrainingConfig: archJSON,
		CreatedAt:      time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
	}}
	if err := m.Metadata.Validate(); err != nil {
		return nil, fmt.Errorf("modeltest: %w", err)
	}
	return m, nil
}
