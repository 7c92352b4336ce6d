// Package cnn builds Orchard's image classifier as a GoMLX graph: blocks of
// 3x3 convolution, batch normalisation (with the full gradient through the
// batch statistics), ReLU and 2x2 max pooling, then global average pooling
// and a dense classifier producing logits.
//
// The graph takes NCHW input (the preprocessing layout served in
// production); each convolution reads NHWC and writes a channel-first
// (CNHW) map, which batch norm, ReLU and pooling keep. Convolution is
// written either as im2col (zero padding by concatenation, the nine shifted
// views concatenated on the channel axis, one matrix product), which is ~5x
// faster on the pure-Go backend, or with GoMLX's native convolution op.
//
// Parameters are created with values drawn from a Go PCG generator keyed by
// (seed, variable path), so initialisation does not depend on creation order
// or on the backend's random generator.
package cnn

import (
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive // graph code reads better dot-imported
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/orchard-mlops/orchard/shared/onnx"
)

// Arch describes the network.
type Arch struct {
	InputSize int
	InputNorm bool // per-image standardisation of the input (see InputNormEpsilon)
	// InputSpace is where InputNorm standardises: "" the input as given,
	// one of onnx.InputSpaces, or several stacked
	// (onnx.ParseInputSpace); Pixels says how the input encodes pixel
	// values for the log spaces.
	InputSpace    string
	Pixels        onnx.PixelScale
	Widths        []int
	ConvsPerBlock int
	Conv          string // "im2col" or "native"
	BatchNorm     bool
	BNMomentum    float64
	BNEpsilon     float64
	Dense         int
	NumClasses    int
	Seed          int64
}

// Validate checks the architecture.
func (a Arch) Validate() error {
	if a.NumClasses < 2 {
		return fmt.Errorf("cnn: %d classes; need at least 2", a.NumClasses)
	}
	if len(a.Widths) == 0 || a.ConvsPerBlock < 1 {
		return fmt.Errorf("cnn: no convolution blocks")
	}
	if f := 1 << len(a.Widths); a.InputSize < f || a.InputSize%f != 0 {
		return fmt.Errorf("cnn: input size %d is not a multiple of %d", a.InputSize, f)
	}
	if a.Conv != "im2col" && a.Conv != "native" {
		return fmt.Errorf("cnn: conv %q is not im2col or native", a.Conv)
	}
	if _, err := onnx.ParseInputSpace(a.InputSpace); err != nil {
		return fmt.Errorf("cnn: %w", err)
	}
	if a.InputSpace != "" && !a.InputNorm {
		return fmt.Errorf("cnn: input space %q needs input norm", a.InputSpace)
	}
	return nil
}

// Scope is the root scope holding the model's variables.
const Scope = "model"

// Variable names inside a layer scope.
const (
	VarWeights = "weights"
	VarBias    = "bias"
	VarGamma   = "gamma"
	VarBeta    = "beta"
	VarMean    = "mean"
	VarVar     = "var"
)

// ConvScope, DenseScope and HeadScope name the layer scopes (relative to Scope).
func ConvScope(block, conv int) string { return fmt.Sprintf("block%d_conv%d", block, conv) }

// Layer scope names for the dense layers.
const (
	DenseScope = "dense"
	HeadScope  = "head"
)

// Logits builds the forward pass: x is [batch, 3, size, size] float32 and
// the result is [batch, NumClasses] logits. In a training graph (see
// model.Store.SetTraining) batch normalisation uses batch statistics and
// updates its running averages; otherwise it uses the running averages.
func Logits(scope *model.Scope, a Arch, x *Node) *Node {
	root := scope.Store().Scope("/" + Scope)
	training := scope.IsTraining(x.Graph())
	x.AssertDims(-1, 3, a.InputSize, a.InputSize)
	if a.InputNorm {
		x = standardise(a, x)
	}
	x = TransposeAllAxes(x, 0, 2, 3, 1) // NHWC
	var debias *Node
	if a.BatchNorm {
		debias = bnDebias(root, a, x.Graph(), training)
	}
	// Each convolution takes NHWC and returns CNHW (see conv3x3); batch
	// norm, ReLU and pooling run in CNHW, and only the pooled map goes back
	// to NHWC for the next block's patches.
	for b, w := range a.Widths {
		for c := range a.ConvsPerBlock {
			if c > 0 {
				x = TransposeAllAxes(x, 1, 2, 3, 0)
			}
			ls := root.In("%s", ConvScope(b, c))
			x = conv3x3(ls, a, x, w)
			if a.BatchNorm {
				x = batchNorm(ls, a, x, training, debias)
			}
			x = relu(x)
		}
		x = maxPool2(x)
		if b < len(a.Widths)-1 {
			x = TransposeAllAxes(x, 1, 2, 3, 0)
		}
	}
	x = Transpose(ReduceMean(x, 2, 3), 0, 1) // global average pooling: [batch, channels]
	if a.Dense > 0 {
		x = relu(dense(root.In(DenseScope), a, x, a.Dense))
	}
	return dense(root.In(HeadScope), a, x, a.NumClasses)
}

// InputNormEpsilon is added to the per-image variance (input values span
// about [-1, 1]), so near-uniform images are not amplified into noise.
const InputNormEpsilon = 0.01

// InputLogEpsilon is added to pixel values in [0, 1] before the log, so
// black and sensor noise in the shadows do not reach -Inf or dominate.
const InputLogEpsilon = 0.05

// standardise standardises x in each space a.InputSpace stacks and
// concatenates the results on the channel axis (an invalid space was
// refused by Validate).
func standardise(a Arch, x *Node) *Node {
	spaces, _ := onnx.ParseInputSpace(a.InputSpace)
	outs := make([]*Node, len(spaces))
	for i, space := range spaces {
		outs[i] = standardiseIn(a, space, x)
	}
	if len(outs) == 1 {
		return outs[0]
	}
	return Concatenate(outs, 1)
}

// standardiseIn subtracts each image's mean over all channels and pixels
// and divides by its standard deviation. Any exposure or contrast change
// of the form a*v+b (the same for all channels) cancels out, while the
// colour balance between channels, which tells fruits apart, is kept. The
// log spaces do the same to logPixels(x).
func standardiseIn(a Arch, space string, x *Node) *Node {
	n := x.Shape().Dimensions[0]
	var mean *Node
	switch space {
	case onnx.InputLog:
		x = logPixels(a, x)
		mean = Reshape(ReduceMean(x, 1, 2, 3), n, 1, 1, 1)
	case onnx.InputLogChroma:
		x = logPixels(a, x)
		mean = Reshape(ReduceMean(x, 2, 3), n, 3, 1, 1)
	case onnx.InputLogChromaBlack:
		x = logAboveBlack(a, x)
		mean = Reshape(ReduceMean(x, 2, 3), n, 3, 1, 1)
	default:
		mean = Reshape(ReduceMean(x, 1, 2, 3), n, 1, 1, 1)
	}
	d := Sub(x, mean)
	variance := Reshape(ReduceMean(Square(d), 1, 2, 3), n, 1, 1, 1)
	return Div(d, Sqrt(AddScalar(variance, InputNormEpsilon)))
}

// logPixels maps the NCHW input back to pixel values v in [0, 1] and
// returns log(max(v, 0) + InputLogEpsilon).
func logPixels(a Arch, x *Node) *Node {
	return Log(AddScalar(pixels(a, x), InputLogEpsilon))
}

// logAboveBlack is logPixels above each channel's black level b (its
// minimum over the image, m its mean): log(v - b + InputLogEpsilon*(m-b) +
// onnx.BlackFloor), as onnx.LogInput.Black exports it.
func logAboveBlack(a Arch, x *Node) *Node {
	v := pixels(a, x)
	n := x.Shape().Dimensions[0]
	black := Reshape(ReduceMin(v, 2, 3), n, 3, 1, 1)
	spread := Sub(Reshape(ReduceMean(v, 2, 3), n, 3, 1, 1), black)
	eps := AddScalar(MulScalar(spread, InputLogEpsilon), onnx.BlackFloor)
	return Log(Add(Sub(v, black), eps))
}

// pixels maps the NCHW input back to pixel values in [0, 1], clipped at 0.
func pixels(a Arch, x *Node) *Node {
	g := x.Graph()
	scale := Const(g, tensors.FromFlatDataAndDimensions(a.Pixels.Scale[:], 1, 3, 1, 1))
	offset := Const(g, tensors.FromFlatDataAndDimensions(a.Pixels.Offset[:], 1, 3, 1, 1))
	return MaxScalar(Add(Mul(x, scale), offset), 0.0)
}

// conv3x3 is a "same" 3x3 convolution, stride 1, from NHWC input to CNHW
// output. The im2col product is written kernel^T x patches^T, so the
// output channel comes first: then the Go backend computes the kernel's
// gradient (a contraction over every pixel of the batch) without
// transposing the patch matrix, nine times the size of the input, at each
// step.
func conv3x3(scope *model.Scope, a Arch, x *Node, out int) *Node {
	dims := x.Shape().Dimensions
	n, h, w, in := dims[0], dims[1], dims[2], dims[3]
	kernel := param(scope, a.Seed, VarWeights, []int{3, 3, in, out}, heNormal(9*in)).NodeValue(x.Graph())
	var y *Node
	if a.Conv == "native" {
		y = TransposeAllAxes(Convolve(x, kernel).PadSame().Done(), 3, 0, 1, 2)
	} else {
		// Pad with zeros by concatenation: Pad has no gradient in GoMLX v0.28.3.
		g := x.Graph()
		zr := Zeros(g, shapes.Make(x.DType(), n, 1, w, in))
		x = Concatenate([]*Node{zr, x, zr}, 1)
		zc := Zeros(g, shapes.Make(x.DType(), n, h+2, 1, in))
		x = Concatenate([]*Node{zc, x, zc}, 2)
		views := make([]*Node, 0, 9)
		for dy := range 3 {
			for dx := range 3 {
				views = append(views, Slice(x, AxisRange(), AxisRange(dy, dy+h), AxisRange(dx, dx+w), AxisRange()))
			}
		}
		patches := Reshape(Concatenate(views, 3), n*h*w, 9*in)
		kernelT := Transpose(Reshape(kernel, 9*in, out), 0, 1)
		y = Reshape(DotGeneral(kernelT, []int{1}, nil, patches, []int{1}, nil), out, n, h, w)
	}
	if !a.BatchNorm {
		y = Add(y, Reshape(param(scope, a.Seed, VarBias, []int{out}, zeros).NodeValue(x.Graph()), out, 1, 1, 1))
	}
	return y
}

// VarBNSteps counts training steps for the bias correction of the
// batch-norm running averages (in the root model scope).
const VarBNSteps = "bn_steps"

// bnDebias returns 1/(1-momentum^t), the bias correction of running
// averages that start at zero after t updates (as Adam does for its
// moments): exact statistics even after a few steps, where a plain moving
// average would still be dominated by its initial value. In training it
// increments t.
func bnDebias(root *model.Scope, a Arch, g *Graph, training bool) *Node {
	stepVar := root.GetVariable(VarBNSteps)
	if stepVar == nil {
		stepVar = root.VariableWithValue(VarBNSteps, float32(0))
	}
	stepVar.SetTrainable(false)
	t := stepVar.NodeValue(g)
	if training {
		t = AddScalar(t, 1)
		stepVar.SetNodeValue(t)
	}
	pow := Pow(Scalar(g, DType, a.BNMomentum), t)
	return Reciprocal(Max(OneMinus(pow), Scalar(g, DType, 1e-12)))
}

// BNDebias is bnDebias for exporting: the correction after steps updates.
func BNDebias(momentum float64, steps float64) float64 {
	return 1 / math.Max(1-math.Pow(momentum, steps), 1e-12)
}

// batchNorm normalises CNHW activations per channel. In training the batch
// statistics carry their full gradient (GoMLX's own batch norm stops it,
// which trains poorly) and the running averages are updated; inference
// uses the bias-corrected running averages.
func batchNorm(scope *model.Scope, a Arch, x *Node, training bool, debias *Node) *Node {
	g := x.Graph()
	dims := x.Shape().Dimensions
	c := dims[0]
	gamma := param(scope, a.Seed, VarGamma, []int{c}, ones).NodeValue(g)
	beta := param(scope, a.Seed, VarBeta, []int{c}, zeros).NodeValue(g)
	meanVar := param(scope, a.Seed, VarMean, []int{c}, zeros).SetTrainable(false)
	varVar := param(scope, a.Seed, VarVar, []int{c}, zeros).SetTrainable(false)
	x = Reshape(x, c, -1)
	r := newRows(x)
	var mean, variance *Node // [c]
	if training {
		mean = r.mean(x)
		variance = r.mean(Square(Sub(x, r.spread(mean))))
		m := a.BNMomentum
		meanVar.SetNodeValue(Add(MulScalar(meanVar.NodeValue(g), m), MulScalar(StopGradient(mean), 1-m)))
		varVar.SetNodeValue(Add(MulScalar(varVar.NodeValue(g), m), MulScalar(StopGradient(variance), 1-m)))
	} else {
		mean = Mul(meanVar.NodeValue(g), debias)
		variance = Mul(varVar.NodeValue(g), debias)
	}
	// Rsqrt has no gradient in v0.28.3: divide by Sqrt instead.
	inv := Div(gamma, Sqrt(AddScalar(variance, a.BNEpsilon)))
	y := Add(Mul(Sub(x, r.spread(mean)), r.spread(inv)), r.spread(beta))
	return Reshape(y, dims...)
}

// rows sums and spreads along the rows of a [c, m] matrix with matrix
// products against a row of ones: the Go backend's reductions (and the
// gradients of implicit broadcasts, which are reductions) walk an index
// iterator per element, its matrix product is vectorised.
type rows struct{ ones *Node } // [1, m]

func newRows(x *Node) rows {
	m := x.Shape().Dimensions[1]
	return rows{Ones(x.Graph(), shapes.Make(x.DType(), 1, m))}
}

// mean of each row of x [c, m]: [c].
func (r rows) mean(x *Node) *Node {
	m := x.Shape().Dimensions[1]
	return DivScalar(Reshape(DotGeneral(x, []int{1}, nil, r.ones, []int{1}, nil), -1), float64(m))
}

// spread repeats v [c] along the rows: [c, m].
func (r rows) spread(v *Node) *Node {
	return DotGeneral(Reshape(v, -1, 1), []int{1}, nil, r.ones, []int{0}, nil)
}

// maxPool2 is 2x2 max pooling, stride 2, of CNHW activations, by reshape
// and reduce (faster than MaxPool on the Go backend).
func maxPool2(x *Node) *Node {
	d := x.Shape().Dimensions
	x = Reshape(x, d[0], d[1], d[2]/2, 2, d[3]/2, 2)
	return ReduceMax(x, 3, 5)
}

func dense(scope *model.Scope, a Arch, x *Node, out int) *Node {
	in := x.Shape().Dimensions[1]
	w := param(scope, a.Seed, VarWeights, []int{in, out}, heNormal(in)).NodeValue(x.Graph())
	b := param(scope, a.Seed, VarBias, []int{out}, zeros).NodeValue(x.Graph())
	return Add(Dot(x, w).Product(), Reshape(b, 1, out))
}

type initFn func(r *rand.Rand, n int) []float32

func zeros(_ *rand.Rand, n int) []float32 { return make([]float32, n) }

func ones(_ *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = 1
	}
	return v
}

// heNormal draws from a normal distribution with std sqrt(2/fanIn),
// truncated at two standard deviations.
func heNormal(fanIn int) initFn {
	std := math.Sqrt(2 / float64(fanIn))
	return func(r *rand.Rand, n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			z := r.NormFloat64()
			for math.Abs(z) > 2 {
				z = r.NormFloat64()
			}
			v[i] = float32(z * std)
		}
		return v
	}
}

// param returns the variable at scope/name, creating it with a value drawn
// from a generator keyed by (seed, full path) when it does not exist yet (a
// checkpoint restores variables before the graph is built).
func param(scope *model.Scope, seed int64, name string, dims []int, init initFn) *model.Variable {
	if v := scope.GetVariable(name); v != nil {
		return v
	}
	path := model.JoinPath(scope.Scope(), name)
	h := fnv.New64a()
	h.Write([]byte(path))
	r := rand.New(rand.NewPCG(uint64(seed), h.Sum64()))
	size := 1
	for _, d := range dims {
		size *= d
	}
	t := tensors.FromFlatDataAndDimensions(init(r, size), dims...)
	return scope.VariableWithValue(name, t)
}

// DType is the dtype of the model.
var DType = dtypes.Float32

// relu is max(x, 0) written as a Where: its gradient is one Where, where
// Max's is built from four element-wise passes (Sub, Sign, Add, Sign).
func relu(x *Node) *Node {
	zeros := ZerosLike(x)
	return Where(GreaterThan(x, zeros), x, zeros)
}
