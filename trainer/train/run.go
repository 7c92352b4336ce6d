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

	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/shared/model"
	"github.com/orchard-mlops/orchard/shared/preprocess"
	"github.com/orchard-mlops/orchard/trainer/cnn"
	"github.com/orchard-mlops/orchard/trainer/config"
	"github.com/orchard-mlops/orchard/trainer/dataset"
	"github.com/orchard-mlops/orchard/trainer/onnxexport"
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
	ModelURI      string // model directory (AIP_MODEL_DIR)
	CheckpointURI string // default: ModelURI/checkpoints (AIP_CHECKPOINT_DIR)
	MetricsURI    string // optional extra metrics directory (AIP_TENSORBOARD_LOG_DIR)
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
	Interrupted  bool // stopped by StopAfterEpochs
}

// ErrInterrupted is returned with a Result when StopAfterEpochs stopped the run.
var ErrInterrupted = errors.New("training interrupted")

// Run trains, exports, verifies and writes the model directory.
func Run(ctx context.Context, opt Options) (*Result, error) {
	cfg := opt.Config
	if cfg == nil {
		cfg = config.Default()
	}
	log := opt.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := opt.Now
	if now == nil {
		now = time.Now
	}
	runStart := now()
	if opt.ModelURI == "" {
		return nil, errors.New("no model output directory")
	}
	modelStore, err := blob.Open(ctx, opt.ModelURI)
	if err != nil {
		return nil, err
	}
	ckptURI := opt.CheckpointURI
	if ckptURI == "" {
		ckptURI = strings.TrimRight(opt.ModelURI, "/") + "/checkpoints"
	}
	ckptStore, err := blob.Open(ctx, ckptURI)
	if err != nil {
		return nil, err
	}
	var metricsStore blob.Store
	if opt.MetricsURI != "" {
		if metricsStore, err = blob.Open(ctx, opt.MetricsURI); err != nil {
			return nil, err
		}
	}

	spec := cfg.Model.Spec()
	ds := opt.Dataset
	if ds == nil {
		if cfg.Data.URI == "" {
			return nil, errors.New("no dataset: set -data or data.uri")
		}
		ds, err = dataset.Load(ctx, dataset.Options{
			URI: cfg.Data.URI, Mode: cfg.Data.Split, TrainDir: cfg.Data.TrainDir, TestDir: cfg.Data.TestDir,
			ValidationFraction: cfg.Data.ValidationFraction, Seed: cfg.Seed, Spec: spec,
			Limits:  preprocess.Limits{MaxBytes: cfg.Data.MaxImageBytes, MaxPixels: cfg.Data.MaxImagePixels},
			Workers: cfg.Data.Workers, Logger: log,
		})
		if err != nil {
			return nil, err
		}
	}
	if ds.Spec != spec {
		return nil, fmt.Errorf("dataset preprocessed with %+v, model wants %+v", ds.Spec, spec)
	}
	digest := ds.Manifest.Digest()

	backend, err := NewBackend()
	if err != nil {
		return nil, err
	}
	defer backend.Finalize()
	arch := Arch(cfg, len(ds.Labels))
	bs := min(cfg.Train.BatchSize, len(ds.Train))
	stepsPerEpoch := len(ds.Train) / bs
	totalSteps := stepsPerEpoch * cfg.Train.Epochs
	warmup := int(math.Round(cfg.Train.WarmupEpochs * float64(stepsPerEpoch)))
	eng, err := NewEngine(backend, cfg, arch, totalSteps, warmup)
	if err != nil {
		return nil, err
	}
	log.Info("training", "backend", backend.Name(), "classes", len(ds.Labels), "train", len(ds.Train),
		"validation", len(ds.Validation), "batch", bs, "steps_per_epoch", stepsPerEpoch, "epochs", cfg.Train.Epochs,
		"input_size", cfg.Model.InputSize, "conv", cfg.Model.Conv, "gomaxprocs", runtime.GOMAXPROCS(0))

	// Resume from a matching checkpoint.
	st := State{Fingerprint: fingerprint(cfg, digest), BestAcc: -1, BestLoss: math.Inf(1)}
	var best []savedVar
	if b, _, err := ckptStore.Read(ctx, CheckpointFile, 0); err == nil {
		h, err := decodeCheckpoint(b)
		switch {
		case err != nil:
			log.Warn("ignoring unreadable checkpoint", "uri", ckptStore.URI(CheckpointFile), "err", err)
		case h.State.Fingerprint != st.Fingerprint:
			log.Warn("ignoring checkpoint of a different config or dataset", "uri", ckptStore.URI(CheckpointFile))
		default:
			if err := restoreVars(eng.Store, h.Vars); err != nil {
				return nil, err
			}
			st, best = h.State, h.Best
			log.Info("resumed from checkpoint", "uri", ckptStore.URI(CheckpointFile), "epochs_done", st.Epoch, "done", st.Done)
		}
	} else if !errors.Is(err, blob.ErrNotFound) {
		return nil, fmt.Errorf("reading checkpoint: %w", err)
	}
	if cfg.Version != "" {
		st.Version = cfg.Version
	} else if st.Version == "" {
		st.Version = runStart.UTC().Format("20060102-150405")
	}

	aug := &dataset.Augmenter{Cfg: cfg.Augment, Spec: spec}
	valX, valY := stack(ds.Validation, spec.TensorLen())
	workers := cfg.Data.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	writeMetrics := func() error {
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		for _, m := range st.History {
			_ = enc.Encode(m)
		}
		if _, err := modelStore.Write(ctx, MetricsFile, b.Bytes(), blob.WriteOptions{ContentType: "application/x-ndjson"}); err != nil {
			return err
		}
		if metricsStore != nil {
			if _, err := metricsStore.Write(ctx, MetricsFile, b.Bytes(), blob.WriteOptions{ContentType: "application/x-ndjson"}); err != nil {
				return err
			}
			if _, err := metricsStore.Write(ctx, TFEventsFile(st.Version), TFEvents(st.History, runStart), blob.WriteOptions{}); err != nil {
				return err
			}
		}
		return nil
	}

	epochsThisRun := 0
	var steps []StepSample
	for !st.Done && st.Epoch < cfg.Train.Epochs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		epoch := st.Epoch + 1
		m, samples, err := runEpoch(ctx, eng, ds, aug, cfg, epoch, bs, stepsPerEpoch, workers, opt.Progress)
		if err != nil {
			return nil, err
		}
		steps = append(steps, samples...)
		// Validation with the GoMLX model (inference-mode batch norm).
		logits, err := eng.Logits(valX, len(valY), cfg.Train.EvalBatchSize)
		if err != nil {
			return nil, err
		}
		m.ValLoss, m.ValAccuracy = lossAccuracy(logits, valY, len(ds.Labels))
		improved := m.ValAccuracy > st.BestAcc+cfg.Train.EarlyStoppingMinDelta ||
			(m.ValAccuracy >= st.BestAcc && m.ValLoss < st.BestLoss)
		if improved {
			m.Best = true
			st.BestEpoch, st.BestAcc, st.BestLoss, st.BadEpochs = epoch, m.ValAccuracy, m.ValLoss, 0
			if best, err = snapshot(eng.Store, modelPrefix); err != nil {
				return nil, err
			}
		} else {
			st.BadEpochs++
		}
		st.History = append(st.History, m)
		st.Epoch = epoch
		log.Info("epoch", "epoch", epoch, "of", cfg.Train.Epochs, "step", m.Step, "train_loss", round(m.TrainLoss),
			"train_accuracy", round(m.TrainAccuracy), "val_loss", round(m.ValLoss), "val_accuracy", round(m.ValAccuracy),
			"lr", sig(m.LearningRate), "images_per_sec", math.Round(m.ImagesPerSec), "seconds", round(m.Seconds), "best", m.Best)
		switch {
		case cfg.Train.TargetAccuracy > 0 && m.ValAccuracy >= cfg.Train.TargetAccuracy:
			log.Info("target accuracy reached", "val_accuracy", round(m.ValAccuracy))
			st.Done = true
		case cfg.Train.EarlyStoppingPatience > 0 && st.BadEpochs >= cfg.Train.EarlyStoppingPatience:
			log.Info("early stopping", "best_epoch", st.BestEpoch, "best_val_accuracy", round(st.BestAcc))
			st.Done = true
		}
		if st.Epoch >= cfg.Train.Epochs {
			st.Done = true
		}
		all, err := snapshot(eng.Store, "")
		all = slices.DeleteFunc(all, func(v savedVar) bool { return strings.HasPrefix(v.Path, metricsPrefix) })
		if err != nil {
			return nil, err
		}
		if _, err := ckptStore.Write(ctx, CheckpointFile, encodeCheckpoint(st, all, best), blob.WriteOptions{ContentType: "application/octet-stream"}); err != nil {
			return nil, fmt.Errorf("writing checkpoint: %w", err)
		}
		if err := writeMetrics(); err != nil {
			return nil, fmt.Errorf("writing metrics: %w", err)
		}
		epochsThisRun++
		if opt.StopAfterEpochs > 0 && epochsThisRun >= opt.StopAfterEpochs && !st.Done {
			return &Result{History: st.History, Dataset: ds, Interrupted: true}, ErrInterrupted
		}
	}
	if len(best) == 0 {
		return nil, errors.New("no epoch was trained (checkpoint without a best model?)")
	}
	if err := restoreVars(eng.Store, best); err != nil {
		return nil, err
	}

	// Export the best model and verify it with onnxruntime.
	goLogits, err := eng.Logits(valX, len(valY), cfg.Train.EvalBatchSize)
	if err != nil {
		return nil, err
	}
	net, err := cnn.Net(eng.Store, arch, InputName, OutputName)
	if err != nil {
		return nil, err
	}
	onnxBytes, err := onnxexport.Export(net, onnxexport.Options{
		FoldBatchNorm: cfg.Export.FoldBatchNorm, Opset: cfg.Export.Opset,
		ProducerVersion: revision(), DocString: cfg.Name + " " + st.Version,
		Metadata: map[string]string{"labels": strings.Join(ds.Labels, "\n"), "dataset_digest": digest},
	})
	if err != nil {
		return nil, err
	}
	last := st.History[len(st.History)-1]
	bestM := st.History[0]
	for _, h := range st.History {
		if h.Epoch == st.BestEpoch {
			bestM = h
		}
	}
	meta := &model.Metadata{
		FormatVersion: model.FormatVersion,
		Name:          cfg.Name,
		Version:       st.Version,
		Labels:        ds.Labels,
		Input:         model.TensorSpec{Name: InputName, Shape: spec.Shape(-1)},
		Output:        model.TensorSpec{Name: OutputName, Shape: []int64{-1, int64(len(ds.Labels))}},
		Preprocessing: spec,
		Dataset: model.Dataset{URI: ds.Manifest.URI, ManifestDigest: digest,
			Images: len(ds.Train) + len(ds.Validation), Skipped: len(ds.Skipped)},
		TrainingConfig: cfg.JSON(),
		CreatedAt:      now().UTC().Truncate(time.Second),
		SourceRevision: revision(),
	}
	ver, ortLogits, err := Verify(&model.Model{Metadata: *meta, ONNX: onnxBytes, URI: opt.ModelURI},
		valX, goLogits, len(valY), cfg.Train.EvalBatchSize, cfg.Export.Tolerance)
	if err != nil {
		return nil, err
	}
	valLoss, valAcc := lossAccuracy(ortLogits, valY, len(ds.Labels))
	meta.Metrics = model.Metrics{
		ValidationAccuracy: valAcc,
		ValidationLoss:     valLoss,
		TrainAccuracy:      bestM.TrainAccuracy,
		TrainLoss:          bestM.TrainLoss,
		Epochs:             last.Epoch,
		ValidationImages:   len(valY),
		Extra: map[string]float64{
			"best_epoch":             float64(st.BestEpoch),
			"gomlx_val_accuracy":     bestM.ValAccuracy,
			"ort_max_abs_logit_diff": ver.MaxAbsDiff,
			"train_images":           float64(len(ds.Train)),
			"images_per_sec":         meanIPS(st.History),
		},
	}
	log.Info("onnx verified", "images", len(valY), "max_abs_logit_diff", sig(ver.MaxAbsDiff), "top1_mismatches", ver.Top1Mismatches,
		"near_ties", ver.NearTies, "ort_val_accuracy", round(valAcc))

	// Write the model directory: graph and metadata last-but-one, so a
	// reader finding model.json finds everything it refers to.
	if _, err := modelStore.Write(ctx, ConfigFile, cfg.YAML(), blob.WriteOptions{ContentType: "application/yaml"}); err != nil {
		return nil, err
	}
	if _, err := modelStore.Write(ctx, ManifestFile, ds.Manifest.JSONL(), blob.WriteOptions{ContentType: "application/x-ndjson"}); err != nil {
		return nil, err
	}
	if err := writeConfusion(ctx, modelStore, ds.Labels, Confusion(ortLogits, valY, len(ds.Labels))); err != nil {
		return nil, err
	}
	res := &Result{Metadata: meta, History: st.History, Steps: steps, Verification: ver, BestEpoch: st.BestEpoch, Dataset: ds,
		GoLogits: goLogits, ORTLogits: ortLogits, ONNX: onnxBytes}
	if cfg.Report.Enabled {
		if err := writeReport(ctx, modelStore, cfg, res, runStart, now()); err != nil {
			return nil, fmt.Errorf("writing report: %w", err)
		}
	}
	vb := VerificationBatch(valX, ortLogits, len(valY), spec.TensorLen(), len(ds.Labels), cfg.Export.Tolerance)
	if err := (&model.Model{Metadata: *meta, ONNX: onnxBytes, Verification: vb}).Save(ctx, modelStore); err != nil {
		return nil, err
	}
	if err := writeMetrics(); err != nil {
		return nil, err
	}
	log.Info("model written", "uri", modelStore.URI(""), "version", st.Version,
		"val_accuracy_ort", round(valAcc), "seconds", round(now().Sub(runStart).Seconds()))
	return res, nil
}

// runEpoch trains one epoch. Batches are augmented in parallel, one batch
// ahead of the training step.
func runEpoch(ctx context.Context, eng *Engine, ds *dataset.Dataset, aug *dataset.Augmenter, cfg *config.Config,
	epoch, bs, steps, workers int, progress io.Writer) (EpochMetrics, []StepSample, error) {
	start := time.Now()
	per := ds.Spec.TensorLen()
	perm := rand.New(rand.NewPCG(uint64(cfg.Seed), uint64(epoch))).Perm(len(ds.Train))
	type batch struct {
		x []float32
		y []int32
	}
	batches := make(chan batch, 1)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
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
						aug.Apply(smp, x[j*per:(j+1)*per], dataset.SampleRNG(cfg.Seed, epoch, idx))
						y[j] = int32(smp.Class)
					}
				}()
			}
			wg.Wait()
			select {
			case batches <- batch{x, y}:
			case <-ctx.Done():
				return
			}
		}
	}()
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
