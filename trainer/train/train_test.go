package train

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/shared/model"
	"github.com/orchard-mlops/orchard/shared/monitor"
	"github.com/orchard-mlops/orchard/shared/onnx"
	"github.com/orchard-mlops/orchard/shared/onnxrt"
	"github.com/orchard-mlops/orchard/shared/onnxrt/onnxrttest"
	"github.com/orchard-mlops/orchard/trainer/config"
	"github.com/orchard-mlops/orchard/trainer/dataset"
	"github.com/orchard-mlops/orchard/trainer/evaluate"
	"github.com/orchard-mlops/orchard/trainer/gendata"
	"github.com/orchard-mlops/orchard/trainer/internal/racecheck"
)

// tinyConfig trains a very small network in a few seconds, also under -race.
func tinyConfig(t *testing.T, sets ...string) *config.Config {
	t.Helper()
	racecheck.Require(t)
	base := []string{
		"model.input_size=16", "model.widths=[8, 16]", "train.batch_size=8", "train.epochs=2",
		"train.eval_batch_size=16", "train.early_stopping_patience=0", "data.validation_fraction=0.25",
		"train.learning_rate=0.01", "version=test",
	}
	cfg, err := config.Load(nil, append(base, sets...))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

var (
	dataOnce sync.Once
	dataDir  string
	dataErr  error
)

// tinyData is a shared 3-class synthetic dataset (class names have spaces).
func tinyData(t *testing.T) string {
	t.Helper()
	dataOnce.Do(func() {
		dataDir, dataErr = os.MkdirTemp("", "orchard-trainer-test-")
		if dataErr == nil {
			_, dataErr = gendata.Generate(dataDir, gendata.Options{Classes: 3, PerClass: 16, Size: 32, Seed: 5})
		}
	})
	if dataErr != nil {
		t.Fatal(dataErr)
	}
	return dataDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if dataDir != "" {
		os.RemoveAll(dataDir)
	}
	os.Exit(code)
}

func loadTiny(t *testing.T, cfg *config.Config) *dataset.Dataset {
	t.Helper()
	ds, err := dataset.Load(context.Background(), dataset.Options{URI: tinyData(t), Mode: cfg.Data.Split,
		TrainDir: cfg.Data.TrainDir, TestDir: cfg.Data.TestDir, ValidationFraction: cfg.Data.ValidationFraction,
		Seed: cfg.Seed, Spec: cfg.Model.Spec(), KeepRaw: cfg.Augment.FromPhoto(cfg.Model.Spec())})
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

// TestPhotoSourceNeedsRaw: augmenting the photo with a dataset loaded
// without its Raw pictures is an error naming the key, not a panic in an
// augmenting goroutine.
func TestPhotoSourceNeedsRaw(t *testing.T) {
	cfg := tinyConfig(t, "augment.source=canvas", "model.framing=") // a canonical spec keeps Raw anyway
	ds := loadTiny(t, cfg)
	cfg.Augment.Source = config.SourcePhoto
	_, err := Run(context.Background(), Options{Config: cfg, Dataset: ds, ModelURI: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "augment.source") {
		t.Fatalf("Run = %v, want an error naming augment.source", err)
	}
}

// TestEndToEnd: gen-data -> train -> ONNX export -> onnxruntime verification
// -> model directory that shared/model loads and serves.
func TestEndToEnd(t *testing.T) {
	onnxrttest.Init(t)
	cfg := tinyConfig(t, "data.uri="+tinyData(t), "train.epochs=4", "augment.enabled=false", "export.opset=18")
	out := t.TempDir()
	metricsDir := t.TempDir()
	res, err := Run(context.Background(), Options{Config: cfg, ModelURI: out, MetricsURI: metricsDir})
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Metadata.Validate(); err != nil {
		t.Fatal(err)
	}
	requireVerified(t, cfg, res)
	for _, f := range []string{model.ONNXFile, model.MetadataFile, model.VerificationFile, MetricsFile, ConfigFile, ManifestFile, ConfusionFile,
		ReportDir + "/index.html", "checkpoints/" + CheckpointFile} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("missing %s: %v", f, err)
		}
	}
	for _, f := range []string{MetricsFile, TFEventsFile("test")} {
		if _, err := os.Stat(filepath.Join(metricsDir, f)); err != nil {
			t.Errorf("metrics dir: missing %s: %v", f, err)
		}
	}
	// The prediction functions' loader accepts the directory unchanged and
	// its classifier reproduces the validation accuracy in model.json.
	m, err := model.Load(context.Background(), nil, out)
	if err != nil {
		t.Fatal(err)
	}
	if m.Metadata.Dataset.ManifestDigest != res.Dataset.Manifest.Digest() || m.Metadata.Version != "test" {
		t.Fatalf("metadata %+v", m.Metadata.Dataset)
	}
	// The export recorded what the registry's gate checks: the graph's
	// sha256 and a verification batch the stored graph reproduces.
	if m.Metadata.ONNXSHA256 != model.SHA256(m.ONNX) || m.Verification == nil || m.Verification.Images != VerificationImages {
		t.Fatalf("integrity records: sha %q, verification %v", m.Metadata.ONNXSHA256, m.Verification != nil)
	}
	if err := onnxrt.CheckIntegrity(m, onnxrt.Options{}); err != nil {
		t.Fatalf("the exported model fails its own integrity check: %v", err)
	}
	clf, err := onnxrt.NewClassifier(m, onnxrt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer clf.Close()
	correct := 0
	base := monitor.NewBaselineBuilder() // what serving would see of the validation set
	for _, s := range res.Dataset.Validation {
		b, err := os.ReadFile(filepath.Join(tinyData(t), filepath.FromSlash(s.Path)))
		if err != nil {
			t.Fatal(err)
		}
		p, st, err := clf.ClassifyStats(b, 1)
		if err != nil {
			t.Fatal(err)
		}
		if p[0].Label == m.Metadata.Labels[s.Class] {
			correct++
		}
		if st != s.Stats {
			t.Fatalf("%s: serving's input statistics %+v, the trainer's %+v", s.Path, st, s.Stats)
		}
		base.Add(st, p[0].Label, p[0].Score)
	}
	// The stored baseline is the serving path's view of the validation set.
	dir, err := blob.NewDir(out)
	if err != nil {
		t.Fatal(err)
	}
	stored, err := monitor.LoadBaseline(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	// Confidence may differ in the last bits between batched and single
	// runs; everything else is exact.
	served := base.Baseline()
	if math.Abs(stored.ConfidenceLow-served.ConfidenceLow) > 1e-5 {
		t.Errorf("stored confidence percentile %v, served %v", stored.ConfidenceLow, served.ConfidenceLow)
	}
	stored.ConfidenceLow, served.ConfidenceLow = 0, 0
	stored.Numeric[monitor.Confidence], served.Numeric[monitor.Confidence] = nil, nil
	want, _ := json.Marshal(served)
	if got, _ := json.Marshal(stored); string(got) != string(want) {
		t.Errorf("stored baseline\n%s\nserving's view of the validation set\n%s", got, want)
	}
	if page, err := os.ReadFile(filepath.Join(out, ReportDir, "index.html")); err != nil || !strings.Contains(string(page), "Monitoring baseline") ||
		!strings.Contains(string(page), "Drift suite") {
		t.Errorf("the training report does not show the baseline and the drift suite (%v)", err)
	}
	checkDriftSuite(t, res, m.Metadata.Metrics)
	acc := float64(correct) / float64(len(res.Dataset.Validation))
	if acc != m.Metadata.Metrics.ValidationAccuracy {
		t.Fatalf("served accuracy %v, model.json says %v", acc, m.Metadata.Metrics.ValidationAccuracy)
	}
	t.Logf("validation accuracy %.3f, max |logit diff| %.2g", acc, res.Verification.MaxAbsDiff)
	if acc < 0.75 { // the synthetic classes are easy; 4 epochs reach 1.0 here
		t.Errorf("validation accuracy %.3f: the tiny model did not learn", acc)
	}

	// The robustness evaluation runs every corruption through the model.
	results, skipped, err := evaluate.Run(context.Background(), clf, evaluate.Options{DataURI: tinyData(t),
		Mode: "auto", TrainDir: "Training", TestDir: "Test", Corruptions: evaluate.Corruptions, Seed: 1,
		Baseline: stored, Thresholds: monitor.DefaultThresholds()})
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 1+len(evaluate.Corruptions) || skipped != 0 || results[0].Images != 48 {
		t.Fatalf("evaluate: %+v, skipped %d", results, skipped)
	}
	// Each condition is also a monitor window; "dark" moves luminance.
	for _, r := range results {
		if r.Monitor == nil || (r.Condition == "dark" && r.Monitor.Divergence[monitor.Luminance] < 0.5) {
			t.Errorf("%s: monitor %+v", r.Condition, r.Monitor)
		}
	}
}

// checkDriftSuite: the default report.drift ran every corruption on the
// validation split, clean first and equal to the validation accuracy, and
// model.json carries each condition's accuracy.
func checkDriftSuite(t *testing.T, res *Result, m model.Metrics) {
	t.Helper()
	if len(res.Drift) != 1+len(evaluate.Corruptions) || res.Drift[0].Condition != evaluate.Clean {
		t.Fatalf("drift suite: %d conditions, want clean and %d corruptions", len(res.Drift), len(evaluate.Corruptions))
	}
	if res.Drift[0].Accuracy != m.ValidationAccuracy {
		t.Errorf("drift suite clean accuracy %v, validation accuracy %v", res.Drift[0].Accuracy, m.ValidationAccuracy)
	}
	low := 1.0
	for _, c := range res.Drift[1:] {
		if c.Images != len(res.Dataset.Validation) || m.Extra["drift_"+c.Condition] != c.Accuracy {
			t.Errorf("%s: %d images (validation %d), model.json %v, suite %v", c.Condition, c.Images, len(res.Dataset.Validation),
				m.Extra["drift_"+c.Condition], c.Accuracy)
		}
		low = min(low, c.Accuracy)
	}
	if m.Extra["drift_min_accuracy"] != low {
		t.Errorf("drift_min_accuracy %v, want %v", m.Extra["drift_min_accuracy"], low)
	}
}

// checkpointVars trains until StopAfterEpochs and returns the checkpoint's
// variables (optimizer state included) as one byte string per variable.
func checkpointVars(t *testing.T, dir string) (State, map[string][]byte) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, CheckpointFile))
	if err != nil {
		t.Fatal(err)
	}
	h, err := decodeCheckpoint(b)
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string][]byte{}
	for _, v := range h.Vars {
		vars[v.Path] = v.data
	}
	for _, v := range h.Best {
		vars["best:"+v.Path] = v.data
	}
	return h.State, vars
}

func interruptedRun(t *testing.T, cfg *config.Config, ds *dataset.Dataset, ckpt string, epochs int) {
	t.Helper()
	_, err := Run(context.Background(), Options{Config: cfg, Dataset: ds, ModelURI: t.TempDir(), CheckpointURI: ckpt, StopAfterEpochs: epochs})
	if !errors.Is(err, ErrInterrupted) {
		t.Fatalf("err = %v, want ErrInterrupted", err)
	}
}

func sameVars(t *testing.T, a, b map[string][]byte) {
	t.Helper()
	if len(a) != len(b) || len(a) == 0 {
		t.Fatalf("%d vs %d variables", len(a), len(b))
	}
	for k, v := range a {
		if !bytes.Equal(v, b[k]) {
			t.Errorf("variable %s differs", k)
		}
	}
}

// TestSeedReproducible: two runs with the same seed give bit-identical
// weights and optimizer state; another seed does not.
func TestSeedReproducible(t *testing.T) {
	cfg := tinyConfig(t, "train.epochs=3")
	ds := loadTiny(t, cfg)
	a, b, c := t.TempDir(), t.TempDir(), t.TempDir()
	interruptedRun(t, cfg, ds, a, 2)
	interruptedRun(t, cfg, ds, b, 2)
	_, va := checkpointVars(t, a)
	_, vb := checkpointVars(t, b)
	sameVars(t, va, vb)
	cfg2 := tinyConfig(t, "train.epochs=3", "seed=43")
	interruptedRun(t, cfg2, ds, c, 2)
	_, vc := checkpointVars(t, c)
	if bytes.Equal(va["/model/head/weights"], vc["/model/head/weights"]) {
		t.Fatal("another seed gave the same weights")
	}
}

// TestCheckpointResume: interrupting after epoch 1 and resuming gives
// exactly the weights of an uninterrupted run.
func TestCheckpointResume(t *testing.T) {
	cfg := tinyConfig(t, "train.epochs=3")
	ds := loadTiny(t, cfg)
	straight, resumed := t.TempDir(), t.TempDir()
	interruptedRun(t, cfg, ds, straight, 2)
	interruptedRun(t, cfg, ds, resumed, 1)
	st, _ := checkpointVars(t, resumed)
	if st.Epoch != 1 || len(st.History) != 1 {
		t.Fatalf("after one epoch: %+v", st)
	}
	interruptedRun(t, cfg, ds, resumed, 1) // resumes at epoch 2
	st1, v1 := checkpointVars(t, straight)
	st2, v2 := checkpointVars(t, resumed)
	if st2.Epoch != 2 || len(st2.History) != 2 || st1.BestEpoch != st2.BestEpoch {
		t.Fatalf("resumed state %+v vs %+v", st2, st1)
	}
	sameVars(t, v1, v2)
	for i := range st1.History {
		if st1.History[i].ValLoss != st2.History[i].ValLoss || st1.History[i].Step != st2.History[i].Step {
			t.Fatalf("epoch %d metrics differ: %+v vs %+v", i+1, st1.History[i], st2.History[i])
		}
	}
	// A checkpoint of another config is not resumed.
	cfg2 := tinyConfig(t, "train.epochs=3", "train.learning_rate=0.02")
	interruptedRun(t, cfg2, ds, resumed, 1)
	st3, _ := checkpointVars(t, resumed)
	if st3.Epoch != 1 {
		t.Fatalf("checkpoint of another config was resumed: epoch %d", st3.Epoch)
	}
}

func TestSmoothedLossAndAccuracy(t *testing.T) {
	logits := []float32{2, 0, 0, 0, 3, 0}
	loss, acc := lossAccuracy(logits, []int32{0, 0}, 3)
	if acc != 0.5 || !(loss > 0) {
		t.Fatalf("loss %v acc %v", loss, acc)
	}
	if m := margin([]float32{1, 3, 2.5}); m != 0.5 {
		t.Fatalf("margin %v", m)
	}
	if !slices.Equal(TFEvents(nil, testTime)[:8], []byte{24, 0, 0, 0, 0, 0, 0, 0}) {
		t.Fatal("tfevents framing")
	}
}

var testTime = time.Unix(1700000000, 0)

// TestDriftSuiteFailureKeepsModel: when the validation images cannot be
// read again for the drift suite (the dataset was removed after loading),
// the run still writes its verified model, without the suite.
func TestDriftSuiteFailureKeepsModel(t *testing.T) {
	onnxrttest.Init(t)
	data := t.TempDir()
	if err := os.CopyFS(data, os.DirFS(tinyData(t))); err != nil {
		t.Fatal(err)
	}
	cfg := tinyConfig(t, "train.epochs=1", "augment.enabled=false")
	ds, err := dataset.Load(context.Background(), dataset.Options{URI: data, Mode: cfg.Data.Split,
		ValidationFraction: cfg.Data.ValidationFraction, Seed: cfg.Seed, Spec: cfg.Model.Spec(), KeepRaw: cfg.Augment.FromPhoto(cfg.Model.Spec())})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(data); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	res, err := Run(context.Background(), Options{Config: cfg, Dataset: ds, ModelURI: out})
	if err != nil {
		t.Fatalf("the run failed with its drift suite: %v", err)
	}
	if res.Drift != nil || res.Metadata.Metrics.Extra["drift_min_accuracy"] != 0 {
		t.Errorf("drift suite %v, metrics %v: want none", res.Drift, res.Metadata.Metrics.Extra)
	}
	if _, err := model.Load(context.Background(), nil, out); err != nil {
		t.Fatalf("no model written: %v", err)
	}
}

// TestArchitecturesExportVerified trains and exports the layouts the
// default config does not use: two convolutions per block (the graph goes
// back to NHWC between them), no batch norm (conv biases) and GoMLX's
// native convolution; onnxruntime must reproduce each.
func TestArchitecturesExportVerified(t *testing.T) {
	onnxrttest.Init(t)
	for _, arch := range [][]string{
		{"model.convs_per_block=2"},
		{"model.batch_norm=false"},
		{"model.conv=native", "model.widths=[4,8]"},
	} {
		t.Run(strings.Join(arch, ","), func(t *testing.T) { trainVerified(t, arch...) })
	}
}

// trainVerified trains a tiny model for one epoch with sets on top, and
// fails unless it passes requireVerified.
func trainVerified(t *testing.T, sets ...string) *Result {
	t.Helper()
	cfg := tinyConfig(t, append([]string{"train.epochs=1", "augment.enabled=false", "report.enabled=false"}, sets...)...)
	res, err := Run(context.Background(), Options{Config: cfg, Dataset: loadTiny(t, cfg), ModelURI: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	requireVerified(t, cfg, res)
	return res
}

// requireVerified fails unless onnxruntime reproduced the run's logits
// within the export tolerance on every validation image.
func requireVerified(t *testing.T, cfg *config.Config, res *Result) {
	t.Helper()
	if v := res.Verification; v.MaxAbsDiff > cfg.Export.Tolerance || v.Images != len(res.Dataset.Validation) {
		t.Fatalf("verification %+v", v)
	}
}

// TestInputSpacesExportVerified: a model standardising in each log input
// space, and in a stack of all the spaces (at both ReduceMean and ReduceMin
// forms, opset 17 attributes and 18 inputs), exports a graph onnxruntime
// runs with GoMLX's logits.
func TestInputSpacesExportVerified(t *testing.T) {
	onnxrttest.Init(t)
	stack := strings.Join(append([]string{onnx.InputLinear}, onnx.InputSpaces()...), "+")
	for i, space := range append(onnx.InputSpaces(), stack) {
		opset := []string{"17", "18"}[i%2]
		t.Run(space, func(t *testing.T) {
			res := trainVerified(t, "model.input_space="+space, "export.opset="+opset)
			logNode := "norm_log"
			if space == stack {
				logNode = "norm1_log" // the stack's second space
			}
			if !bytes.Contains(res.ONNX, []byte(logNode)) {
				t.Fatalf("the exported graph has no %s node", logNode)
			}
			if black := bytes.Contains(res.ONNX, []byte("_black")); black != strings.Contains(space, onnx.InputLogChromaBlack) {
				t.Fatalf("black-level node in the graph: %v", black)
			}
			if stacked := bytes.Contains(res.ONNX, []byte("norm_concat")); stacked != (space == stack) {
				t.Fatalf("concat node in the graph: %v", stacked)
			}
		})
	}
}
