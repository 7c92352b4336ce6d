// Package onnx writes Orchard's CNN as an ONNX model with a small
// protobuf writer (google.golang.org/protobuf/encoding/protowire), so the
// trainer needs neither generated ONNX types nor onnxruntime to export.
//
// The graph is Conv(3x3, pad 1) [-> BatchNormalization] -> Relu per layer,
// MaxPool(2x2) per block, GlobalAveragePool, Flatten, optional Gemm+Relu,
// and a final Gemm producing logits. The batch dimension is symbolic.
// Batch normalisation is folded into the convolution weights by default
// (fewer nodes, faster in onnxruntime); when it is kept, its epsilon is
// written explicitly (ONNX's default 1e-5 is not the trainer's).
package onnx

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
)

// BatchNorm holds inference-time batch-norm parameters of one layer.
type BatchNorm struct {
	Gamma, Beta, Mean, Var []float32
	Epsilon                float64
}

// Conv is a 3x3 "same" convolution, stride 1. Weights are laid out
// [kh][kw][in][out] (GoMLX channels-last); Bias may be nil.
type Conv struct {
	In, Out int
	Weights []float32
	Bias    []float32
	BN      *BatchNorm
}

// Dense is a fully connected layer; Weights are [in][out].
type Dense struct {
	In, Out int
	Weights []float32
	Bias    []float32
}

// Net is the network to export.
type Net struct {
	InputSize int
	// InputNormEpsilon > 0 standardises each image first: subtract its mean
	// over channels and pixels, divide by sqrt(variance + epsilon).
	InputNormEpsilon float64
	Blocks           [][]Conv // each block ends with 2x2 max pooling
	Hidden           *Dense   // optional, followed by Relu
	Head             Dense
	InputName        string
	OutputName       string
}

// Options control the export.
type Options struct {
	FoldBatchNorm   bool
	Opset           int
	ProducerVersion string
	DocString       string
	Metadata        map[string]string // ModelProto.metadata_props
}

// Export encodes the network as an ONNX ModelProto.
func Export(net *Net, opt Options) ([]byte, error) {
	if err := net.validate(); err != nil {
		return nil, err
	}
	if opt.Opset == 0 {
		opt.Opset = 17
	}
	var g msg
	var inits []msg
	var nodes []msg
	cur := net.InputName
	if eps := net.InputNormEpsilon; eps > 0 {
		reduce := func(name, in, out string) {
			if opt.Opset >= 18 { // axes became an input in opset 18
				nodes = append(nodes, nodeProto(name, "ReduceMean", []string{in, "norm.axes"}, []string{out}, intAttr("keepdims", 1)))
			} else {
				nodes = append(nodes, nodeProto(name, "ReduceMean", []string{in}, []string{out}, intsAttr("axes", 1, 2, 3), intAttr("keepdims", 1)))
			}
		}
		if opt.Opset >= 18 {
			inits = append(inits, int64TensorProto("norm.axes", []int64{3}, []int64{1, 2, 3}))
		}
		inits = append(inits, tensorProto("norm.epsilon", nil, []float32{float32(eps)}))
		reduce("norm_mean", cur, "norm.mean")
		nodes = append(nodes, nodeProto("norm_center", "Sub", []string{cur, "norm.mean"}, []string{"norm.centered"}))
		nodes = append(nodes, nodeProto("norm_square", "Mul", []string{"norm.centered", "norm.centered"}, []string{"norm.squared"}))
		reduce("norm_var", "norm.squared", "norm.var")
		nodes = append(nodes, nodeProto("norm_eps", "Add", []string{"norm.var", "norm.epsilon"}, []string{"norm.var_eps"}))
		nodes = append(nodes, nodeProto("norm_std", "Sqrt", []string{"norm.var_eps"}, []string{"norm.std"}))
		nodes = append(nodes, nodeProto("norm_div", "Div", []string{"norm.centered", "norm.std"}, []string{"norm.out"}))
		cur = "norm.out"
	}
	for b, block := range net.Blocks {
		for c, cv := range block {
			name := fmt.Sprintf("block%d_conv%d", b, c)
			w := toOIHW(cv)
			bias := cv.Bias
			bn := cv.BN
			if bn != nil && opt.FoldBatchNorm {
				w, bias = fold(cv, w)
				bn = nil
			}
			inits = append(inits, tensorProto(name+".weight", []int64{int64(cv.Out), int64(cv.In), 3, 3}, w))
			inputs := []string{cur, name + ".weight"}
			if bias != nil {
				inits = append(inits, tensorProto(name+".bias", []int64{int64(cv.Out)}, bias))
				inputs = append(inputs, name+".bias")
			}
			nodes = append(nodes, nodeProto(name, "Conv", inputs, []string{name + ".conv"},
				intsAttr("kernel_shape", 3, 3), intsAttr("pads", 1, 1, 1, 1), intsAttr("strides", 1, 1),
				intsAttr("dilations", 1, 1), intAttr("group", 1)))
			cur = name + ".conv"
			if bn != nil {
				for _, p := range []struct {
					suffix string
					v      []float32
				}{{"gamma", bn.Gamma}, {"beta", bn.Beta}, {"mean", bn.Mean}, {"var", bn.Var}} {
					inits = append(inits, tensorProto(name+".bn_"+p.suffix, []int64{int64(cv.Out)}, p.v))
				}
				nodes = append(nodes, nodeProto(name+"_bn", "BatchNormalization",
					[]string{cur, name + ".bn_gamma", name + ".bn_beta", name + ".bn_mean", name + ".bn_var"},
					[]string{name + ".bn"}, floatAttr("epsilon", float32(bn.Epsilon))))
				cur = name + ".bn"
			}
			nodes = append(nodes, nodeProto(name+"_relu", "Relu", []string{cur}, []string{name + ".relu"}))
			cur = name + ".relu"
		}
		pool := fmt.Sprintf("block%d_pool", b)
		nodes = append(nodes, nodeProto(pool, "MaxPool", []string{cur}, []string{pool},
			intsAttr("kernel_shape", 2, 2), intsAttr("strides", 2, 2)))
		cur = pool
	}
	nodes = append(nodes, nodeProto("gap", "GlobalAveragePool", []string{cur}, []string{"gap"}))
	nodes = append(nodes, nodeProto("flatten", "Flatten", []string{"gap"}, []string{"features"}, intAttr("axis", 1)))
	cur = "features"
	gemm := func(name string, d Dense, out string) {
		inits = append(inits, tensorProto(name+".weight", []int64{int64(d.In), int64(d.Out)}, d.Weights))
		inits = append(inits, tensorProto(name+".bias", []int64{int64(d.Out)}, d.Bias))
		nodes = append(nodes, nodeProto(name, "Gemm", []string{cur, name + ".weight", name + ".bias"}, []string{out}))
		cur = out
	}
	if net.Hidden != nil {
		gemm("dense", *net.Hidden, "dense")
		nodes = append(nodes, nodeProto("dense_relu", "Relu", []string{cur}, []string{"dense.relu"}))
		cur = "dense.relu"
	}
	gemm("head", net.Head, net.OutputName)

	for _, n := range nodes {
		g.sub(graphNode, n)
	}
	g.str(graphName, "orchard_cnn")
	for _, t := range inits {
		g.sub(graphInitializer, t)
	}
	if opt.DocString != "" {
		g.str(graphDocString, opt.DocString)
	}
	s := int64(net.InputSize)
	g.sub(graphInput, valueInfo(net.InputName, []int64{-1, 3, s, s}, []string{"batch"}))
	g.sub(graphOutput, valueInfo(net.OutputName, []int64{-1, int64(net.Head.Out)}, []string{"batch"}))

	var m msg
	m.varint(modelIRVersion, 8)
	m.str(modelProducerName, "orchard-trainer")
	if opt.ProducerVersion != "" {
		m.str(modelProducerVersion, opt.ProducerVersion)
	}
	if opt.DocString != "" {
		m.str(modelDocString, opt.DocString)
	}
	m.sub(modelGraph, g)
	var opset msg
	opset.str(opsetDomain, "")
	opset.varint(opsetVersion, int64(opt.Opset))
	m.sub(modelOpsetImport, opset)
	for _, k := range slices.Sorted(maps.Keys(opt.Metadata)) {
		var e msg
		e.str(stringEntryKey, k)
		e.str(stringEntryVals, opt.Metadata[k])
		m.sub(modelMetadataProps, e)
	}
	return m, nil
}

// toOIHW transposes [kh][kw][in][out] weights to ONNX's [out][in][kh][kw].
func toOIHW(c Conv) []float32 {
	w := make([]float32, len(c.Weights))
	for ky := range 3 {
		for kx := range 3 {
			for i := range c.In {
				for o := range c.Out {
					w[((o*c.In+i)*3+ky)*3+kx] = c.Weights[((ky*3+kx)*c.In+i)*c.Out+o]
				}
			}
		}
	}
	return w
}

// fold merges inference batch norm into OIHW weights and a bias:
// scale = gamma / sqrt(var + eps); w' = w * scale; b' = (b - mean) * scale + beta.
func fold(c Conv, w []float32) ([]float32, []float32) {
	bn := c.BN
	per := c.In * 9
	out := make([]float32, len(w))
	bias := make([]float32, c.Out)
	for o := range c.Out {
		scale := float64(bn.Gamma[o]) / math.Sqrt(float64(bn.Var[o])+bn.Epsilon)
		for k := range per {
			out[o*per+k] = float32(float64(w[o*per+k]) * scale)
		}
		b := 0.0
		if c.Bias != nil {
			b = float64(c.Bias[o])
		}
		bias[o] = float32((b-float64(bn.Mean[o]))*scale + float64(bn.Beta[o]))
	}
	return out, bias
}

func (n *Net) validate() error {
	if n.InputName == "" || n.OutputName == "" {
		return errors.New("onnxexport: input and output names are required")
	}
	if len(n.Blocks) == 0 {
		return errors.New("onnxexport: no convolution blocks")
	}
	in := 3
	for b, block := range n.Blocks {
		for c, cv := range block {
			if cv.In != in {
				return fmt.Errorf("onnxexport: block %d conv %d has %d input channels, want %d", b, c, cv.In, in)
			}
			if len(cv.Weights) != 9*cv.In*cv.Out {
				return fmt.Errorf("onnxexport: block %d conv %d: %d weights, want %d", b, c, len(cv.Weights), 9*cv.In*cv.Out)
			}
			if cv.Bias != nil && len(cv.Bias) != cv.Out {
				return fmt.Errorf("onnxexport: block %d conv %d: bias length %d", b, c, len(cv.Bias))
			}
			if bn := cv.BN; bn != nil && (len(bn.Gamma) != cv.Out || len(bn.Beta) != cv.Out || len(bn.Mean) != cv.Out || len(bn.Var) != cv.Out) {
				return fmt.Errorf("onnxexport: block %d conv %d: batch-norm parameter length", b, c)
			}
			in = cv.Out
		}
	}
	check := func(name string, d *Dense) error {
		if d.In != in || len(d.Weights) != d.In*d.Out || len(d.Bias) != d.Out {
			return fmt.Errorf("onnxexport: %s layer shape mismatch (in %d, want %d)", name, d.In, in)
		}
		in = d.Out
		return nil
	}
	if n.Hidden != nil {
		if err := check("hidden", n.Hidden); err != nil {
			return err
		}
	}
	return check("head", &n.Head)
}
