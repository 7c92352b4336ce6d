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
	"strings"
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
	// InputLog, when set, standardises log pixel values instead (see
	// LogInput); it needs InputNormEpsilon > 0.
	InputLog *LogInput
	// InputStack, when set (and InputLog is not), standardises the image
	// once per element (nil: linear, else that LogInput) and concatenates
	// the results on the channel axis in order, so the first convolution
	// has 3*len(InputStack) input channels (see SetInputSpace).
	InputStack []*LogInput
	Blocks     [][]Conv // each block ends with 2x2 max pooling
	Hidden     *Dense   // optional, followed by Relu
	Head       Dense
	InputName  string
	OutputName string
}

// PixelScale says how an input tensor encodes pixel values: the pixel in
// [0, 1] is x*Scale[c] + Offset[c] for channel c (a preprocessing spec's
// Std and Mean).
type PixelScale struct {
	Scale, Offset [3]float32
}

// The input spaces a trainer may standardise in besides the input as
// given (trainer/config's model.input_space); both are a LogInput.
const (
	// InputLog standardises log pixel values: a global gain becomes an
	// offset and a tone curve v^g a scale, both cancelled.
	InputLog = "log"
	// InputLogChroma is InputLog with each channel's own mean subtracted
	// (LogInput.PerChannel), so a per-channel gain (a colour cast, a white
	// balance) cancels too; the channels keep one common spread.
	InputLogChroma = "log-chroma"
	// InputLogChromaBlack is InputLogChroma above each channel's black
	// level (LogInput.Black): the channel's minimum is subtracted before
	// the log, so a per-channel offset (haze, glare, a lifted black)
	// cancels as well as a per-channel gain.
	InputLogChromaBlack = "log-chroma-black"
)

// InputSpaces lists the input spaces besides the linear one (a new slice
// each call: no importer can change what ParseInputSpace accepts).
func InputSpaces() []string { return []string{InputLog, InputLogChroma, InputLogChromaBlack} }

// InputLinear names the linear space inside a stack of input spaces
// ("linear+log"); alone it is the empty space.
const InputLinear = "linear"

// ParseInputSpace splits an input space into the spaces it stacks: ""
// (linear), one of InputSpaces, or several of InputLinear and InputSpaces
// joined by "+", each standardised on its own and given to the network as
// three more input channels. Linear comes back as "".
func ParseInputSpace(space string) ([]string, error) {
	if space == "" {
		return []string{""}, nil
	}
	parts := strings.Split(space, "+")
	seen := map[string]bool{}
	for i, p := range parts {
		if p != InputLinear && !slices.Contains(InputSpaces(), p) {
			return nil, fmt.Errorf("onnx: input space %q: %q is not %s or one of %q", space, p, InputLinear, InputSpaces())
		}
		if seen[p] {
			return nil, fmt.Errorf("onnx: input space %q stacks %q twice", space, p)
		}
		seen[p] = true
		if p == InputLinear {
			parts[i] = ""
		}
	}
	return parts, nil
}

// SetInputSpace makes the net standardise its input in space (see
// ParseInputSpace), for pixels encoded as given and a log epsilon; it
// needs InputNormEpsilon > 0 unless space is linear.
func (n *Net) SetInputSpace(space string, pixels PixelScale, logEpsilon float64) error {
	parts, err := ParseInputSpace(space)
	if err != nil {
		return err
	}
	layers := make([]*LogInput, len(parts))
	for i, p := range parts {
		if p != "" {
			black := p == InputLogChromaBlack
			layers[i] = &LogInput{Pixels: pixels, Epsilon: logEpsilon, PerChannel: black || p == InputLogChroma, Black: black}
		}
	}
	n.InputLog, n.InputStack = nil, nil
	if len(layers) == 1 {
		n.InputLog = layers[0]
	} else {
		n.InputStack = layers
	}
	return nil
}

// InputChannels is the number of channels the first convolution reads:
// three per stacked input space.
func (n *Net) InputChannels() int { return 3 * max(1, len(n.InputStack)) }

// LogInput standardises log(max(pixel, 0) + Epsilon) rather than the input
// itself: subtract the image's mean (each channel's own when PerChannel),
// divide by its deviation over all channels and pixels.
//
// Black takes the log of v - b + Epsilon*(m - b) + BlackFloor instead,
// with b and m the minimum and mean of v's channel over the image: the
// epsilon scales with the channel, so v -> g*v + o per channel changes the
// log by log(g) only, which the per-channel mean removes.
type LogInput struct {
	Pixels     PixelScale
	Epsilon    float64
	PerChannel bool
	Black      bool
}

// BlackFloor keeps a flat channel's log finite under LogInput.Black (a
// share of the pixel range: 0.005 is about one 8-bit level).
const BlackFloor = 0.005

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
	if net.InputNormEpsilon > 0 {
		var ni, nn []msg
		cur, ni, nn = standardise(net, opt.Opset, cur)
		inits, nodes = append(inits, ni...), append(nodes, nn...)
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

// standardise writes the nodes of per-image input standardisation (see
// Net.InputNormEpsilon, Net.InputLog and Net.InputStack) reading in and
// returns their output.
func standardise(net *Net, opset int, in string) (out string, inits, nodes []msg) {
	if len(net.InputStack) == 0 {
		return standardiseOne("norm", net.InputLog, net.InputNormEpsilon, opset, in)
	}
	outs := make([]string, len(net.InputStack))
	for i, l := range net.InputStack {
		o, ni, nn := standardiseOne(fmt.Sprintf("norm%d", i), l, net.InputNormEpsilon, opset, in)
		outs[i], inits, nodes = o, append(inits, ni...), append(nodes, nn...)
	}
	nodes = append(nodes, nodeProto("norm_concat", "Concat", outs, []string{"norm.out"}, intAttr("axis", 1)))
	return "norm.out", inits, nodes
}

// standardiseOne writes one space's standardisation (l nil: linear) with
// names starting with p.
func standardiseOne(p string, l *LogInput, epsilon float64, opset int, in string) (out string, inits, nodes []msg) {
	all, meanAxes := []int64{1, 2, 3}, p+".axes"
	if l != nil && l.PerChannel {
		meanAxes = p + ".chroma_axes"
	}
	axes := map[string][]int64{p + ".axes": all, p + ".chroma_axes": {2, 3}}
	if opset >= 18 { // axes became an input in opset 18
		inits = append(inits, int64TensorProto(p+".axes", []int64{3}, all))
		if meanAxes != p+".axes" {
			inits = append(inits, int64TensorProto(meanAxes, []int64{2}, axes[meanAxes]))
		}
	}
	reduceOp := func(op, name, in, out, axesName string) {
		if opset >= 18 {
			nodes = append(nodes, nodeProto(name, op, []string{in, axesName}, []string{out}, intAttr("keepdims", 1)))
		} else {
			nodes = append(nodes, nodeProto(name, op, []string{in}, []string{out}, intsAttr("axes", axes[axesName]...), intAttr("keepdims", 1)))
		}
	}
	reduce := func(name, in, out, axesName string) { reduceOp("ReduceMean", name, in, out, axesName) }
	inits = append(inits, tensorProto(p+".epsilon", nil, []float32{float32(epsilon)}))
	if l != nil {
		inits = append(inits,
			tensorProto(p+".pixel_scale", []int64{1, 3, 1, 1}, l.Pixels.Scale[:]),
			tensorProto(p+".pixel_offset", []int64{1, 3, 1, 1}, l.Pixels.Offset[:]),
			tensorProto(p+".zero", nil, []float32{0}),
			tensorProto(p+".log_epsilon", nil, []float32{float32(l.Epsilon)}))
		nodes = append(nodes,
			nodeProto(p+"_scale", "Mul", []string{in, p + ".pixel_scale"}, []string{p + ".scaled"}),
			nodeProto(p+"_offset", "Add", []string{p + ".scaled", p + ".pixel_offset"}, []string{p + ".pixels"}),
			nodeProto(p+"_clip", "Max", []string{p + ".pixels", p + ".zero"}, []string{p + ".clipped"}))
		above, eps := p+".clipped", p+".log_epsilon"
		if l.Black {
			above, eps = p+".above", p+".black_eps"
			inits = append(inits, tensorProto(p+".black_floor", nil, []float32{BlackFloor}))
			reduceOp("ReduceMin", p+"_black", p+".clipped", p+".black", meanAxes)
			reduce(p+"_channel_mean", p+".clipped", p+".channel_mean", meanAxes)
			nodes = append(nodes,
				nodeProto(p+"_above", "Sub", []string{p + ".clipped", p + ".black"}, []string{above}),
				nodeProto(p+"_range", "Sub", []string{p + ".channel_mean", p + ".black"}, []string{p + ".range"}),
				nodeProto(p+"_rel_eps", "Mul", []string{p + ".range", p + ".log_epsilon"}, []string{p + ".rel_eps"}),
				nodeProto(p+"_black_eps", "Add", []string{p + ".rel_eps", p + ".black_floor"}, []string{eps}))
		}
		nodes = append(nodes,
			nodeProto(p+"_log_eps", "Add", []string{above, eps}, []string{p + ".log_in"}),
			nodeProto(p+"_log", "Log", []string{p + ".log_in"}, []string{p + ".log"}))
		in = p + ".log"
	}
	reduce(p+"_mean", in, p+".mean", meanAxes)
	nodes = append(nodes,
		nodeProto(p+"_center", "Sub", []string{in, p + ".mean"}, []string{p + ".centered"}),
		nodeProto(p+"_square", "Mul", []string{p + ".centered", p + ".centered"}, []string{p + ".squared"}))
	reduce(p+"_var", p+".squared", p+".var", p+".axes")
	nodes = append(nodes,
		nodeProto(p+"_eps", "Add", []string{p + ".var", p + ".epsilon"}, []string{p + ".var_eps"}),
		nodeProto(p+"_std", "Sqrt", []string{p + ".var_eps"}, []string{p + ".std"}),
		nodeProto(p+"_div", "Div", []string{p + ".centered", p + ".std"}, []string{p + ".out"}))
	return p + ".out", inits, nodes
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

func (n *Net) validateInput() error {
	if n.InputLog != nil && len(n.InputStack) > 0 {
		return errors.New("onnxexport: both InputLog and InputStack are set")
	}
	if len(n.InputStack) > 0 && n.InputNormEpsilon <= 0 {
		return errors.New("onnxexport: an input stack needs a positive input-norm epsilon")
	}
	for _, l := range append([]*LogInput{n.InputLog}, n.InputStack...) {
		if l != nil && (n.InputNormEpsilon <= 0 || l.Epsilon <= 0) {
			return errors.New("onnxexport: log input needs positive input-norm and log epsilons")
		}
		if l != nil && l.Black && !l.PerChannel {
			return errors.New("onnxexport: a log input above black needs PerChannel")
		}
	}
	return nil
}

func (n *Net) validate() error {
	if n.InputName == "" || n.OutputName == "" {
		return errors.New("onnxexport: input and output names are required")
	}
	if len(n.Blocks) == 0 {
		return errors.New("onnxexport: no convolution blocks")
	}
	if err := n.validateInput(); err != nil {
		return err
	}
	in := n.InputChannels()
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
