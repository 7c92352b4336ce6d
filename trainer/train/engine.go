package train

import (
	"errors"
	"fmt"
	"math"
	"os"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	_ "github.com/gomlx/compute/gobackend" // the pure-Go backend, "go"
	. "github.com/gomlx/gomlx/core/graph"  //nolint:revive
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
	gtrain "github.com/gomlx/gomlx/ml/train"
	"github.com/gomlx/gomlx/ml/train/metric"
	"github.com/gomlx/gomlx/ml/train/optimizer"
	"github.com/gomlx/gomlx/ml/train/optimizer/cosineschedule"
	"github.com/gomlx/gomlx/support/exceptions"

	"github.com/orchard-mlops/orchard/shared/onnx"
	"github.com/orchard-mlops/orchard/trainer/cnn"
	"github.com/orchard-mlops/orchard/trainer/config"
)

// NewBackend returns the GoMLX backend selected by GOMLX_BACKEND (default:
// the pure-Go backend; XLA when the binary is built with -tags xla and the
// variable asks for it). Backend construction panics are turned into errors.
func NewBackend() (b compute.Backend, err error) {
	if perr := exceptions.TryCatch[error](func() { b, err = compute.New() }); perr != nil {
		err = perr
	}
	if err != nil {
		return nil, fmt.Errorf("creating the GoMLX backend (GOMLX_BACKEND=%q, available %v): %w",
			os.Getenv(compute.ConfigEnvVar), compute.List(), err)
	}
	return b, nil
}

// Arch returns the network architecture a config describes.
func Arch(cfg *config.Config, numClasses int) cnn.Arch {
	spec := cfg.Model.Spec()
	return cnn.Arch{
		InputSize:     cfg.Model.InputSize,
		InputNorm:     cfg.Model.InputNorm,
		InputSpace:    cfg.Model.InputSpace,
		Pixels:        onnx.PixelScale{Scale: spec.Std, Offset: spec.Mean},
		Widths:        cfg.Model.Widths,
		ConvsPerBlock: cfg.Model.ConvsPerBlock,
		Conv:          cfg.Model.Conv,
		BatchNorm:     cfg.Model.BatchNorm,
		BNMomentum:    cfg.Model.BNMomentum,
		BNEpsilon:     cfg.Model.BNEpsilon,
		Dense:         cfg.Model.Dense,
		NumClasses:    numClasses,
		Seed:          cfg.Seed,
	}
}

// Engine owns the GoMLX state of one model: variables, the training step
// and the inference executable.
type Engine struct {
	Backend compute.Backend
	Store   *model.Store
	Arch    cnn.Arch
	trainer *gtrain.Trainer
	infer   *model.Exec
}

// NewEngine builds (lazily compiled) training and inference graphs.
// totalSteps and warmupSteps drive the cosine learning-rate schedule.
func NewEngine(backend compute.Backend, cfg *config.Config, arch cnn.Arch, totalSteps, warmupSteps int) (*Engine, error) {
	if err := arch.Validate(); err != nil {
		return nil, err
	}
	store := model.NewStore()
	if err := store.SetRNGStateFromSeed(cfg.Seed); err != nil {
		return nil, err
	}
	lr, minLR := cfg.Train.LearningRate, cfg.Train.MinLearningRate
	smoothing := cfg.Train.LabelSmoothing
	modelFn := func(scope *model.Scope, x *Node) *Node {
		g := x.Graph()
		if scope.IsTraining(g) {
			cosineschedule.New(scope.Store().RootScope(), g, dtypes.Float32).
				LearningRate(lr).MinLearningRate(minLR).
				WarmUpSteps(warmupSteps).PeriodSteps(max(1, totalSteps)).Done()
		}
		return cnn.Logits(scope, arch, x)
	}
	lossFn := func(labels, logits []*Node) *Node {
		return SmoothedCrossEntropy(labels[0], logits[0], smoothing)
	}
	opt := optimizer.Adam().LearningRate(lr).WeightDecay(cfg.Train.WeightDecay).Done()
	tr := gtrain.NewTrainer(backend, store, modelFn, lossFn, opt,
		[]metric.Interface{metric.NewSparseCategoricalAccuracy("Accuracy", "acc")}, nil)
	infer, err := model.NewExec(backend, store, func(scope *model.Scope, x *Node) *Node {
		return cnn.Logits(scope, arch, x)
	})
	if err != nil {
		return nil, err
	}
	return &Engine{Backend: backend, Store: store, Arch: arch, trainer: tr, infer: infer}, nil
}

// SmoothedCrossEntropy is the mean cross-entropy of logits [batch, K]
// against integer labels [batch, 1] smoothed by eps: the target puts 1-eps
// on the label and eps/K on every class.
func SmoothedCrossEntropy(labels, logits *Node, eps float64) *Node {
	k := logits.Shape().Dimensions[1]
	y := OneHot(Reshape(labels, labels.Shape().Dimensions[0]), k, logits.DType())
	if eps > 0 {
		y = AddScalar(MulScalar(y, 1-eps), eps/float64(k))
	}
	return Neg(ReduceAllMean(ReduceSum(Mul(y, LogSoftmax(logits, -1)), -1)))
}

// Step runs one training step on a batch (x: n*TensorLen values NCHW,
// y: n labels) and returns the batch loss and the epoch's running accuracy.
func (e *Engine) Step(x []float32, y []int32) (loss, acc float64, err error) {
	n := len(y)
	s := e.Arch.InputSize
	batch := gtrain.Batch{
		Inputs: []*tensors.Tensor{tensors.FromFlatDataAndDimensions(x, n, 3, s, s)},
		Labels: []*tensors.Tensor{tensors.FromFlatDataAndDimensions(y, n, 1)},
	}
	var ms []*tensors.Tensor
	if perr := exceptions.TryCatch[error](func() { ms, err = e.trainer.TrainStep(batch) }); perr != nil {
		err = perr
	}
	if err != nil {
		return 0, 0, fmt.Errorf("training step: %w", err)
	}
	defer func() {
		for _, m := range ms {
			_ = m.FinalizeAll()
		}
	}()
	if len(ms) < 3 {
		return 0, 0, errors.New("training step returned no metrics")
	}
	return scalar(ms[0]), scalar(ms[2]), nil
}

// ResetEpochMetrics clears the running training accuracy.
func (e *Engine) ResetEpochMetrics() error { return e.trainer.ResetTrainMetrics() }

// LearningRate is the current learning rate (set by the schedule).
func (e *Engine) LearningRate() float64 {
	v := e.Store.GetVariable(model.JoinPath("/"+optimizer.Scope, optimizer.ParamLearningRate))
	if v == nil {
		return 0
	}
	t, err := v.Value()
	if err != nil {
		return 0
	}
	return scalar(t)
}

// GlobalStep is the number of training steps taken.
func (e *Engine) GlobalStep() int64 { return optimizer.GetGlobalStep(e.Store) }

// Logits runs inference on n images (n*TensorLen values) in batches of
// batchSize; the last batch is padded so one compiled graph serves all.
func (e *Engine) Logits(x []float32, n, batchSize int) ([]float32, error) {
	s := e.Arch.InputSize
	per := 3 * s * s
	k := e.Arch.NumClasses
	if len(x) != n*per {
		return nil, fmt.Errorf("logits: %d values for %d images of %d", len(x), n, per)
	}
	if batchSize > n {
		batchSize = n
	}
	out := make([]float32, 0, n*k)
	for start := 0; start < n; start += batchSize {
		m := min(batchSize, n-start)
		buf := make([]float32, batchSize*per)
		copy(buf, x[start*per:(start+m)*per])
		var res []*tensors.Tensor
		var err error
		err2 := exceptions.TryCatch[error](func() {
			res, err = e.infer.Exec(tensors.FromFlatDataAndDimensions(buf, batchSize, 3, s, s))
		})
		if err == nil {
			err = err2
		}
		if err != nil {
			return nil, fmt.Errorf("inference: %w", err)
		}
		vals, err := tensors.CopyFlatData[float32](res[0])
		for _, r := range res {
			_ = r.FinalizeAll()
		}
		if err != nil {
			return nil, err
		}
		out = append(out, vals[:m*k]...)
	}
	return out, nil
}

func scalar(t *tensors.Tensor) float64 {
	switch v := t.Value().(type) {
	case float32:
		return float64(v)
	case float64:
		return v
	case int64:
		return float64(v)
	case int32:
		return float64(v)
	}
	return math.NaN()
}
