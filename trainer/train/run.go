// Package train runs Orchard's training job: load and split the dataset,
// train the CNN with GoMLX (AdamW, cosine schedule with warm-up, label
// smoothing, augmentation, early stopping, resumable checkpoints), export
// ONNX, verify the export with onnxruntime against the GoMLX model, and
// write the model directory (model.onnx, model.json) with metrics and a
// report.
package train

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gomlx/compute"

	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/shared/model"
	"github.com/orchard-mlops/orchard/shared/monitor"
	"github.com/orchard-mlops/orchard/shared/onnx"
	"github.com/orchard-mlops/orchard/shared/onnxrt"
	"github.com/orchard-mlops/orchard/shared/preprocess"
	"github.com/orchard-mlops/orchard/trainer/cnn"
	"github.com/orchard-mlops/orchard/trainer/config"
	"github.com/orchard-mlops/orchard/trainer/dataset"
	"github.com/orchard-mlops/orchard/trainer/evaluate"
)

// Files written next to model.onnx and model.json.
const (
	MetricsFile  = "metrics.jsonl"
	ConfigFile   = "config.yaml"
	ManifestFile = "manifest.jsonl"
	ReportDir    = "report"
)

// Tensor names in the exported graph.
const (
	InputName  = "input"
	OutputName = "logits"
)

// Options configure Run. Store URIs are gs://bucket/prefix, file:///dir
// or local paths.
type Options struct {
	Config        *config.Config
	ModelURI      string       // model directory (AIP_MODEL_DIR)
	CheckpointURI string       // default: ModelURI/checkpoints (AIP_CHECKPOINT_DIR)
	MetricsURI    string       // optional extra metrics directory (AIP_TENSORBOARD_LOG_DIR)
	Storage       *blob.Opener // opens the URIs; nil: local paths only
	Logger        *slog.Logger
	Progress      io.Writer // when set (a terminal), a progress bar is drawn there
	// Dataset, when set, is used instead of loading Config.Data.URI (tests).
	Dataset *dataset.Dataset
	// StopAfterEpochs, when > 0, stops the run after that many epochs
	// without exporting, as an interruption would (tests of resume).
	StopAfterEpochs int
	Now             func() time.Time
}

// EpochMetrics is one line of metrics.jsonl.
type EpochMetrics struct {
	Epoch         int     `json:"epoch"`
	Step          int64   `json:"step"`
	TrainLoss     float64 `json:"train_loss"`
	TrainAccuracy float64 `json:"train_accuracy"`
	ValLoss       float64 `json:"val_loss"`
	ValAccuracy   float64 `json:"val_accuracy"`
	LearningRate  float64 `json:"lr"`
	ImagesPerSec  float64 `json:"images_per_sec"`
	Seconds       float64 `json:"seconds"`
	Best          bool    `json:"best,omitempty"`
}

// StepSample is a point of the training curves between epochs: the mean
// training loss over the steps since the previous sample, the epoch's
// running training accuracy, and the learning rate.
type StepSample struct {
	Step          int64
	Epoch         float64 // fractional: 1.5 is halfway through epoch 2
	TrainLoss     float64
	TrainAccuracy float64
	LearningRate  float64
}

// Result describes a finished run.
type Result struct {
	Metadata *model.Metadata
	History  []EpochMetrics
	// Steps samples the training curves every report.curve_every_steps
	// steps of this run (not kept in checkpoints: a resumed run's report
	// has its own steps only).
	Steps        []StepSample
	Verification Verification
	BestEpoch    int
	Dataset      *dataset.Dataset
	GoLogits     []float32 // validation logits of the exported (best) model, GoMLX
	ORTLogits    []float32 // the same from onnxruntime
	ONNX         []byte
	Baseline     *monitor.Baseline // the drift monitor's, written as baseline.json
	Drift        []evaluate.Result // report.drift's suite on the validation split, clean first
	Interrupted  bool              // stopped by StopAfterEpochs
}

// ErrInterrupted is returned with a Result when StopAfterEpochs stopped the run.
var ErrInterrupted = errors.New("training interrupted")

// Run trains, exports, verifies and writes the model directory.
func Run(ctx context.Context, opt Options) (*Result, error) {
	r, err := newRun(ctx, opt)
	if err != nil {
		return nil, err
	}
	if err := r.loadData(ctx); err != nil {
		return nil, err
	}
	backend, err := NewBackend()
	if err != nil {
		return nil, err
	}
	defer backend.Finalize()
	if err := r.buildModel(backend); err != nil {
		return nil, err
	}
	if err := r.resume(ctx); err != nil {
		return nil, err
	}
	interrupted, err := r.trainEpochs(ctx)
	if err != nil {
		return nil, err
	}
	if interrupted {
		return &Result{History: r.st.History, Dataset: r.ds, Interrupted: true}, ErrInterrupted
	}
	goLogits, err := r.evaluateBest()
	if err != nil {
		return nil, err
	}
	res, err := r.exportVerified(goLogits)
	if err != nil {
		return nil, err
	}
	// The exported model and its validation outputs (res.ORTLogits over
	// r.valX) are final here and nothing is written yet: what else is
	// derived from them and stored with the version goes in this gap.
	// The suite only describes the model: its failure (the dataset gone
	// since loading, say) must not lose the trained, verified model.
	if res.Drift, err = r.driftSuite(ctx, res); err != nil {
		r.log.Warn("drift suite skipped", "error", err.Error())
	}
	driftMetrics(res.Drift, res.Metadata.Metrics.Extra)
	if err := r.writeModelDir(ctx, res); err != nil {
		return nil, err
	}
	r.log.Info("model written", "uri", r.modelStore.URI(""), "version", r.st.Version,
		"val_accuracy_ort", round(res.Metadata.Metrics.ValidationAccuracy), "seconds", round(r.now().Sub(r.start).Seconds()))
	return res, nil
}

// run is one call of Run: its settings and stores, and what one step
// hands to the next.
type run struct {
	opt   Options
	cfg   *config.Config
	log   *slog.Logger
	now   func() time.Time
	start time.Time

	modelStore, ckptStore blob.Store
	metricsStore          blob.Store // nil without Options.MetricsURI

	spec       preprocess.Spec
	ds         *dataset.Dataset
	digest     string    // of the dataset's manifest
	valX       []float32 // the validation tensors, stacked
	valY       []int32
	aug        *dataset.Augmenter
	arch       cnn.Arch
	eng        *Engine
	batchSize  int
	epochSteps int
	workers    int // augmenting a batch

	st    State
	best  []savedVar // model variables of the best epoch
	steps []StepSample
}

// newRun applies the defaults of Options and opens the stores.
func newRun(ctx context.Context, opt Options) (*run, error) {
	r := &run{opt: opt, cfg: opt.Config, log: opt.Logger, now: opt.Now}
	if r.cfg == nil {
		r.cfg = config.Default()
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.now == nil {
		r.now = time.Now
	}
	r.start = r.now()
	if opt.ModelURI == "" {
		return nil, errors.New("no model output directory")
	}
	// The export is verified with onnxruntime after the last epoch: find
	// the library now rather than after minutes of training.
	if err := onnxrt.Init(); err != nil {
		return nil, fmt.Errorf("before training: %w", err)
	}
	if _, err := evaluate.Select(r.cfg.Report.Drift); err != nil {
		return nil, fmt.Errorf("report.drift: %w", err)
	}
	var err error
	if r.modelStore, err = opt.Storage.Open(ctx, opt.ModelURI); err != nil {
		return nil, err
	}
	ckptURI := opt.CheckpointURI
	if ckptURI == "" {
		ckptURI = strings.TrimRight(opt.ModelURI, "/") + "/checkpoints"
	}
	if r.ckptStore, err = opt.Storage.Open(ctx, ckptURI); err != nil {
		return nil, err
	}
	if opt.MetricsURI != "" {
		if r.metricsStore, err = opt.Storage.Open(ctx, opt.MetricsURI); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// loadData loads and splits the dataset (unless Options.Dataset is given)
// with the model's preprocessing, and stacks the validation tensors.
func (r *run) loadData(ctx context.Context) error {
	cfg := r.cfg
	r.spec = cfg.Model.Spec()
	ds := r.opt.Dataset
	if ds == nil {
		if cfg.Data.URI == "" {
			return errors.New("no dataset: set -data or data.uri")
		}
		var err error
		ds, err = dataset.Load(ctx, dataset.Options{
			URI: cfg.Data.URI, Storage: r.opt.Storage, Mode: cfg.Data.Split, TrainDir: cfg.Data.TrainDir, TestDir: cfg.Data.TestDir,
			ValidationFraction: cfg.Data.ValidationFraction, Seed: cfg.Seed, Spec: r.spec,
			Limits: cfg.Data.Limits(), KeepRaw: cfg.Augment.FromPhoto(r.spec),
			Workers: cfg.Data.Workers, Logger: r.log,
		})
		if err != nil {
			return err
		}
	}
	if ds.Spec != r.spec {
		return fmt.Errorf("dataset preprocessed with %+v, model wants %+v", ds.Spec, r.spec)
	}
	if cfg.Augment.Enabled && cfg.Augment.FromPhoto(r.spec) && len(ds.Train) > 0 && ds.Train[0].Raw == nil {
		return errors.New("augment.source is photo, but the dataset was loaded without Raw pictures (dataset.Options.KeepRaw)")
	}
	r.ds, r.digest = ds, ds.Manifest.Digest()
	r.valX, r.valY = stack(ds.Validation, r.spec.TensorLen())
	return nil
}

// buildModel sizes batches and the learning-rate schedule to the dataset
// and builds the network with its optimiser, and the augmenter.
func (r *run) buildModel(backend compute.Backend) error {
	cfg, ds := r.cfg, r.ds
	r.arch = Arch(cfg, len(ds.Labels))
	r.batchSize = min(cfg.Train.BatchSize, len(ds.Train))
	r.epochSteps = len(ds.Train) / r.batchSize
	totalSteps := r.epochSteps * cfg.Train.Epochs
	warmup := int(math.Round(cfg.Train.WarmupEpochs * float64(r.epochSteps)))
	eng, err := NewEngine(backend, cfg, r.arch, totalSteps, warmup)
	if err != nil {
		return err
	}
	r.eng = eng
	r.aug = &dataset.Augmenter{Cfg: cfg.Augment, Spec: r.spec}
	r.workers = cfg.Data.Workers
	if r.workers <= 0 {
		r.workers = runtime.GOMAXPROCS(0)
	}
	r.log.Info("training", "backend", backend.Name(), "classes", len(ds.Labels), "train", len(ds.Train),
		"validation", len(ds.Validation), "batch", r.batchSize, "steps_per_epoch", r.epochSteps, "epochs", cfg.Train.Epochs,
		"input_size", cfg.Model.InputSize, "conv", cfg.Model.Conv, "gomaxprocs", runtime.GOMAXPROCS(0))
	return nil
}

// resume continues from the checkpoint when there is one of the same
// settings and dataset, and names the version (the config's, the resumed
// run's, or the start time).
func (r *run) resume(ctx context.Context) error {
	r.st = State{Fingerprint: fingerprint(r.cfg, r.digest), BestAcc: -1, BestLoss: math.Inf(1)}
	if b, _, err := r.ckptStore.Read(ctx, CheckpointFile, 0); err == nil {
		if err := r.restoreCheckpoint(b); err != nil {
			return err
		}
	} else if !errors.Is(err, blob.ErrNotFound) {
		return fmt.Errorf("reading checkpoint: %w", err)
	}
	if r.cfg.Version != "" {
		r.st.Version = r.cfg.Version
	} else if r.st.Version == "" {
		r.st.Version = r.start.UTC().Format("20060102-150405")
	}
	return nil
}

// restoreCheckpoint restores the variables and progress of checkpoint b;
// one that is unreadable or of other settings or data is ignored with a
// warning (training starts afresh).
func (r *run) restoreCheckpoint(b []byte) error {
	uri := r.ckptStore.URI(CheckpointFile)
	h, err := decodeCheckpoint(b)
	switch {
	case err != nil:
		r.log.Warn("ignoring unreadable checkpoint", "uri", uri, "err", err)
	case h.State.Fingerprint != r.st.Fingerprint:
		r.log.Warn("ignoring checkpoint of a different config or dataset", "uri", uri)
	default:
		if err := restoreVars(r.eng.Store, h.Vars); err != nil {
			return err
		}
		r.st, r.best = h.State, h.Best
		r.log.Info("resumed from checkpoint", "uri", uri, "epochs_done", r.st.Epoch, "done", r.st.Done)
	}
	return nil
}

// trainEpochs trains until the last epoch or a stop rule, writing a
// checkpoint and the metrics after each epoch. It returns true when
// Options.StopAfterEpochs cut the run short.
func (r *run) trainEpochs(ctx context.Context) (interrupted bool, err error) {
	for n := 1; !r.st.Done && r.st.Epoch < r.cfg.Train.Epochs; n++ {
		if err := ctx.Err(); err != nil {
			return false, err
		}
		if err := r.trainEpoch(ctx, r.st.Epoch+1); err != nil {
			return false, err
		}
		if err := r.saveProgress(ctx); err != nil {
			return false, err
		}
		if r.opt.StopAfterEpochs > 0 && n >= r.opt.StopAfterEpochs && !r.st.Done {
			return true, nil
		}
	}
	return false, nil
}

// trainEpoch trains one epoch, validates it with the GoMLX model
// (inference-mode batch norm), keeps the best weights and applies the stop
// rules.
func (r *run) trainEpoch(ctx context.Context, epoch int) error {
	m, samples, err := runEpoch(ctx, r.eng, r.ds, r.aug, r.cfg, epoch, r.batchSize, r.epochSteps, r.workers, r.opt.Progress)
	if err != nil {
		return err
	}
	r.steps = append(r.steps, samples...)
	logits, err := r.eng.Logits(r.valX, len(r.valY), r.cfg.Train.EvalBatchSize)
	if err != nil {
		return err
	}
	m.ValLoss, m.ValAccuracy = lossAccuracy(logits, r.valY, len(r.ds.Labels))
	if err := r.keepBest(&m); err != nil {
		return err
	}
	r.st.History = append(r.st.History, m)
	r.st.Epoch = epoch
	r.log.Info("epoch", "epoch", epoch, "of", r.cfg.Train.Epochs, "step", m.Step, "train_loss", round(m.TrainLoss),
		"train_accuracy", round(m.TrainAccuracy), "val_loss", round(m.ValLoss), "val_accuracy", round(m.ValAccuracy),
		"lr", sig(m.LearningRate), "images_per_sec", math.Round(m.ImagesPerSec), "seconds", round(m.Seconds), "best", m.Best)
	r.applyStopRules(m)
	return nil
}

// keepBest marks epoch m best and snapshots the model's variables when it
// improves on the best (improves); otherwise it counts a bad epoch.
func (r *run) keepBest(m *EpochMetrics) error {
	st := &r.st
	if !r.improves(*m) {
		st.BadEpochs++
		return nil
	}
	m.Best = true
	st.BestEpoch, st.BestAcc, st.BestLoss, st.BadEpochs = m.Epoch, m.ValAccuracy, m.ValLoss, 0
	var err error
	r.best, err = snapshot(r.eng.Store, modelPrefix)
	return err
}

// improves says whether epoch m beats the best so far in train.select_by:
// a validation loss lower by more than the early-stopping margin, or an
// accuracy higher by more than it or equal at a lower loss.
func (r *run) improves(m EpochMetrics) bool {
	st, delta := r.st, r.cfg.Train.EarlyStoppingMinDelta
	if r.cfg.Train.SelectBy == config.SelectLoss {
		return m.ValLoss < st.BestLoss-delta
	}
	return m.ValAccuracy > st.BestAcc+delta || (m.ValAccuracy >= st.BestAcc && m.ValLoss < st.BestLoss)
}

// applyStopRules ends training at the target accuracy, on early stopping,
// or after the last epoch.
func (r *run) applyStopRules(m EpochMetrics) {
	tc, st := r.cfg.Train, &r.st
	switch {
	case tc.TargetAccuracy > 0 && m.ValAccuracy >= tc.TargetAccuracy:
		r.log.Info("target accuracy reached", "val_accuracy", round(m.ValAccuracy))
		st.Done = true
	case tc.EarlyStoppingPatience > 0 && st.BadEpochs >= tc.EarlyStoppingPatience:
		r.log.Info("early stopping", "select_by", tc.SelectBy, "best_epoch", st.BestEpoch, "best_val_accuracy", round(st.BestAcc), "best_val_loss", round(st.BestLoss))
		st.Done = true
	}
	if st.Epoch >= tc.Epochs {
		st.Done = true
	}
}

// saveProgress writes the checkpoint (every variable but the metrics',
// the best epoch's model variables and the progress), then the metrics
// so far.
func (r *run) saveProgress(ctx context.Context) error {
	all, err := snapshot(r.eng.Store, "")
	if err != nil {
		return err
	}
	all = slices.DeleteFunc(all, func(v savedVar) bool { return strings.HasPrefix(v.Path, metricsPrefix) })
	if _, err := r.ckptStore.Write(ctx, CheckpointFile, encodeCheckpoint(r.st, all, r.best), blob.WriteOptions{ContentType: "application/octet-stream"}); err != nil {
		return fmt.Errorf("writing checkpoint: %w", err)
	}
	if err := r.writeMetrics(ctx); err != nil {
		return fmt.Errorf("writing metrics: %w", err)
	}
	return nil
}

// writeMetrics writes the epochs' metrics to the model directory and, when
// set, to the metrics directory with a TensorBoard event file.
func (r *run) writeMetrics(ctx context.Context) error {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	for _, m := range r.st.History {
		_ = enc.Encode(m)
	}
	if _, err := r.modelStore.Write(ctx, MetricsFile, b.Bytes(), blob.WriteOptions{ContentType: "application/x-ndjson"}); err != nil {
		return err
	}
	if r.metricsStore == nil {
		return nil
	}
	if _, err := r.metricsStore.Write(ctx, MetricsFile, b.Bytes(), blob.WriteOptions{ContentType: "application/x-ndjson"}); err != nil {
		return err
	}
	_, err := r.metricsStore.Write(ctx, TFEventsFile(r.st.Version), TFEvents(r.st.History, r.start), blob.WriteOptions{})
	return err
}

// evaluateBest restores the best epoch's model variables and returns the
// GoMLX model's validation logits.
func (r *run) evaluateBest() ([]float32, error) {
	if len(r.best) == 0 {
		return nil, errors.New("no epoch was trained (checkpoint without a best model?)")
	}
	if err := restoreVars(r.eng.Store, r.best); err != nil {
		return nil, err
	}
	return r.eng.Logits(r.valX, len(r.valY), r.cfg.Train.EvalBatchSize)
}

// exportVerified exports the model to ONNX and verifies it with
// onnxruntime against goLogits, the GoMLX model's validation logits. The
// Result's metrics are onnxruntime's, as serving computes them.
func (r *run) exportVerified(goLogits []float32) (*Result, error) {
	onnxBytes, err := r.export()
	if err != nil {
		return nil, err
	}
	meta := r.metadata()
	ver, ortLogits, err := Verify(&model.Model{Metadata: *meta, ONNX: onnxBytes, URI: r.opt.ModelURI},
		r.valX, goLogits, len(r.valY), r.cfg.Train.EvalBatchSize, r.cfg.Export.Tolerance)
	if err != nil {
		return nil, err
	}
	meta.Metrics = r.modelMetrics(ver, ortLogits)
	r.log.Info("onnx verified", "images", len(r.valY), "max_abs_logit_diff", sig(ver.MaxAbsDiff), "top1_mismatches", ver.Top1Mismatches,
		"near_ties", ver.NearTies, "ort_val_accuracy", round(meta.Metrics.ValidationAccuracy))
	return &Result{Metadata: meta, History: r.st.History, Steps: r.steps, Verification: ver, BestEpoch: r.st.BestEpoch,
		Dataset: r.ds, GoLogits: goLogits, ORTLogits: ortLogits, ONNX: onnxBytes}, nil
}

// export converts the network, with its current variables, to ONNX; the
// labels and the dataset digest go into the graph's metadata.
func (r *run) export() ([]byte, error) {
	net, err := cnn.Net(r.eng.Store, r.arch, InputName, OutputName)
	if err != nil {
		return nil, err
	}
	return onnx.Export(net, onnx.Options{
		FoldBatchNorm: r.cfg.Export.FoldBatchNorm, Opset: r.cfg.Export.Opset,
		ProducerVersion: revision(), DocString: r.cfg.Name + " " + r.st.Version,
		Metadata: map[string]string{"labels": strings.Join(r.ds.Labels, "\n"), "dataset_digest": r.digest},
	})
}

// metadata describes the model for model.json, metrics aside.
func (r *run) metadata() *model.Metadata {
	ds := r.ds
	return &model.Metadata{
		FormatVersion: model.FormatVersion,
		Name:          r.cfg.Name,
		Version:       r.st.Version,
		Labels:        ds.Labels,
		Input:         model.TensorSpec{Name: InputName, Shape: r.spec.Shape(-1)},
		Output:        model.TensorSpec{Name: OutputName, Shape: []int64{-1, int64(len(ds.Labels))}},
		Preprocessing: r.spec,
		Dataset: model.Dataset{URI: ds.Manifest.URI, ManifestDigest: r.digest,
			Images: len(ds.Train) + len(ds.Validation), Skipped: len(ds.Skipped)},
		TrainingConfig: r.cfg.JSON(),
		CreatedAt:      r.now().UTC().Truncate(time.Second),
		SourceRevision: revision(),
	}
}

// modelMetrics are model.json's metrics: validation figures from the
// onnxruntime logits, training figures of the best epoch.
func (r *run) modelMetrics(ver Verification, ortLogits []float32) model.Metrics {
	h := r.st.History
	last, bestM := h[len(h)-1], h[0]
	for _, m := range h {
		if m.Epoch == r.st.BestEpoch {
			bestM = m
		}
	}
	valLoss, valAcc := lossAccuracy(ortLogits, r.valY, len(r.ds.Labels))
	return model.Metrics{
		ValidationAccuracy: valAcc,
		ValidationLoss:     valLoss,
		TrainAccuracy:      bestM.TrainAccuracy,
		TrainLoss:          bestM.TrainLoss,
		Epochs:             last.Epoch,
		ValidationImages:   len(r.valY),
		Extra: map[string]float64{
			"best_epoch":             float64(r.st.BestEpoch),
			"gomlx_val_accuracy":     bestM.ValAccuracy,
			"ort_max_abs_logit_diff": ver.MaxAbsDiff,
			"train_images":           float64(len(r.ds.Train)),
			"images_per_sec":         meanIPS(h),
		},
	}
}

// writeModelDir writes the model directory: the config, the manifest, the
// confusion matrix and the report, then graph and metadata last-but-one,
// so a reader finding model.json finds everything it refers to, then the
// metrics.
func (r *run) writeModelDir(ctx context.Context, res *Result) error {
	cfg, ds, dir := r.cfg, r.ds, r.modelStore
	if _, err := dir.Write(ctx, ConfigFile, cfg.YAML(), blob.WriteOptions{ContentType: "application/yaml"}); err != nil {
		return err
	}
	if _, err := dir.Write(ctx, ManifestFile, ds.Manifest.JSONL(), blob.WriteOptions{ContentType: "application/x-ndjson"}); err != nil {
		return err
	}
	if err := writeConfusion(ctx, dir, ds.Labels, Confusion(res.ORTLogits, r.valY, len(ds.Labels))); err != nil {
		return err
	}
	res.Baseline = Baseline(ds, res.ORTLogits)
	if err := writeBaseline(ctx, dir, res.Baseline); err != nil {
		return err
	}
	if cfg.Report.Enabled {
		if err := writeReport(ctx, dir, cfg, res, r.start, r.now()); err != nil {
			return fmt.Errorf("writing report: %w", err)
		}
	}
	vb := VerificationBatch(r.valX, res.ORTLogits, len(r.valY), r.spec.TensorLen(), len(ds.Labels), cfg.Export.Tolerance)
	if err := (&model.Model{Metadata: *res.Metadata, ONNX: res.ONNX, Verification: vb}).Save(ctx, dir); err != nil {
		return err
	}
	return r.writeMetrics(ctx)
}

// runEpoch trains one epoch. Batches are augmented in parallel, one batch
// ahead of the training step.
func runEpoch(ctx context.Context, eng *Engine, ds *dataset.Dataset, aug *dataset.Augmenter, cfg *config.Config,
	epoch, bs, steps, workers int, progress io.Writer) (EpochMetrics, []StepSample, error) {
	start := time.Now()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	batches := augmentBatches(ctx, ds, aug, cfg.Seed, epoch, bs, steps, workers)
	if err := eng.ResetEpochMetrics(); err != nil {
		return EpochMetrics{}, nil, err
	}
	var lossSum, acc, windowLoss float64
	var windowN int
	var samples []StepSample
	bar := newProgressBar(progress, epoch, cfg.Train.Epochs, steps)
	for s := 0; s < steps; s++ {
		b, ok := <-batches
		if !ok {
			return EpochMetrics{}, nil, ctx.Err()
		}
		loss, a, err := eng.Step(b.x, b.y)
		if err != nil {
			return EpochMetrics{}, nil, err
		}
		if math.IsNaN(loss) || math.IsInf(loss, 0) {
			return EpochMetrics{}, nil, fmt.Errorf("epoch %d step %d: loss is %v (lower train.learning_rate?)", epoch, s, loss)
		}
		lossSum += loss
		acc = a
		if every := cfg.Report.CurveEverySteps; every > 0 {
			windowLoss += loss
			windowN++
			if (s+1)%every == 0 || s+1 == steps {
				samples = append(samples, StepSample{Step: eng.GlobalStep(), Epoch: float64(epoch-1) + float64(s+1)/float64(steps),
					TrainLoss: windowLoss / float64(windowN), TrainAccuracy: acc, LearningRate: eng.LearningRate()})
				windowLoss, windowN = 0, 0
			}
		}
		bar.update(s+1, lossSum/float64(s+1), acc, float64((s+1)*bs)/time.Since(start).Seconds())
	}
	bar.done()
	secs := time.Since(start).Seconds()
	return EpochMetrics{
		Epoch: epoch, Step: eng.GlobalStep(), TrainLoss: lossSum / float64(steps), TrainAccuracy: acc,
		LearningRate: eng.LearningRate(), ImagesPerSec: float64(steps*bs) / secs, Seconds: secs,
	}, samples, nil
}

// trainBatch is one augmented training batch.
type trainBatch struct {
	x []float32
	y []int32
}

// augmentBatches sends the epoch's steps batches of bs samples, shuffled
// by seed and epoch and augmented by workers goroutines, one batch ahead
// of the receiver; the channel closes after the last batch or when ctx is
// done.
func augmentBatches(ctx context.Context, ds *dataset.Dataset, aug *dataset.Augmenter, seed int64, epoch, bs, steps, workers int) <-chan trainBatch {
	per := ds.Spec.TensorLen()
	perm := rand.New(rand.NewPCG(uint64(seed), uint64(epoch))).Perm(len(ds.Train))
	batches := make(chan trainBatch, 1)
	go func() {
		defer close(batches)
		for s := range steps {
			x := make([]float32, bs*per)
			y := make([]int32, bs)
			var wg sync.WaitGroup
			for w := range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for j := w; j < bs; j += workers {
						idx := perm[s*bs+j]
						smp := &ds.Train[idx]
						aug.Apply(smp, x[j*per:(j+1)*per], dataset.SampleRNG(seed, epoch, idx))
						y[j] = int32(smp.Class)
					}
				}()
			}
			wg.Wait()
			select {
			case batches <- trainBatch{x, y}:
			case <-ctx.Done():
				return
			}
		}
	}()
	return batches
}

// stack concatenates the samples' serving tensors.
func stack(s []dataset.Sample, per int) ([]float32, []int32) {
	x := make([]float32, 0, len(s)*per)
	y := make([]int32, len(s))
	for i := range s {
		x = append(x, s[i].Tensor...)
		y[i] = int32(s[i].Class)
	}
	return x, y
}

// lossAccuracy is the mean cross-entropy (no smoothing) and top-1 accuracy.
func lossAccuracy(logits []float32, y []int32, k int) (loss, acc float64) {
	if len(y) == 0 {
		return 0, 0
	}
	correct := 0
	for i, label := range y {
		row := logits[i*k : (i+1)*k]
		if argmax(row) == int(label) {
			correct++
		}
		loss -= logSoftmax(row)[label]
	}
	return loss / float64(len(y)), float64(correct) / float64(len(y))
}

func argmax(v []float32) int {
	best := 0
	for i, x := range v {
		if x > v[best] {
			best = i
		}
	}
	return best
}

func logSoftmax(v []float32) []float64 {
	m := math.Inf(-1)
	for _, x := range v {
		m = math.Max(m, float64(x))
	}
	var s float64
	for _, x := range v {
		s += math.Exp(float64(x) - m)
	}
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x) - m - math.Log(s)
	}
	return out
}

// fingerprint identifies what a checkpoint may be resumed under: every
// setting that changes the trained weights, plus the dataset version.
func fingerprint(cfg *config.Config, digest string) string {
	b, _ := json.Marshal([]any{cfg.Seed, cfg.Data.Split, cfg.Data.ValidationFraction, cfg.Model, cfg.Train, cfg.Augment, digest})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func meanIPS(h []EpochMetrics) float64 {
	var imgs, secs float64
	for _, m := range h {
		imgs += m.ImagesPerSec * m.Seconds
		secs += m.Seconds
	}
	if secs == 0 {
		return 0
	}
	return imgs / secs
}

func round(v float64) float64 { return math.Round(v*1e4) / 1e4 }

// sig rounds v to 4 significant digits (learning rates, tiny differences),
// for log lines people read.
func sig(v float64) float64 {
	r, err := strconv.ParseFloat(strconv.FormatFloat(v, 'g', 4, 64), 64)
	if err != nil {
		return v
	}
	return r
}

// revision is the VCS revision the binary was built from, if recorded.
func revision() string {
	if r := os.Getenv("ORCHARD_SOURCE_REVISION"); r != "" {
		return r
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	if rev == "" {
		return ""
	}
	return rev + dirty
}
