package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/orchard-mlops/orchard/shared/model"
	"github.com/orchard-mlops/orchard/shared/onnxrt"
	"github.com/orchard-mlops/orchard/shared/onnxrt/onnxrttest"
	"github.com/orchard-mlops/orchard/shared/registry"
	"github.com/orchard-mlops/orchard/trainer/gendata"
	"github.com/orchard-mlops/orchard/trainer/internal/racecheck"
	"github.com/orchard-mlops/orchard/trainer/sweep"
)

// childEnv makes the test binary act as the trainer binary, so that
// `trainer sweep` can start trials as processes without a go build.
const childEnv = "ORCHARD_TRAINER_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// tinySets train a very small network in seconds (as trainer/train's tests).
var tinySets = []string{"model.input_size=16", "model.widths=[8, 16]", "train.batch_size=8",
	"train.eval_batch_size=16", "train.early_stopping_patience=0", "augment.enabled=false", "report.enabled=false", "data.validation_fraction=0.3"}

func tinyDataset(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if _, err := gendata.Generate(dir, gendata.Options{Classes: 3, PerClass: 12, Size: 32, Seed: 3}); err != nil {
		t.Fatal(err)
	}
	return dir
}

const gridSpec = `name: shapes
algorithm: grid
metric: validation_accuracy
parallel: 2
set: [%s]
params:
  - key: train.learning_rate
    values: [0.02, 0.0001]
  - key: train.epochs
    values: [1, 2]
`

// TestSweepLocalGrid runs a 2x2 grid as trainer processes, two at a time,
// then compares two of the trials with trainer compare and one of them as
// the registry version the sweep published.
func TestSweepLocalGrid(t *testing.T) {
	racecheck.Require(t)
	onnxrttest.Init(t)
	t.Setenv(childEnv, "1")
	t.Setenv("ORT_LIB", onnxrt.Path())
	data := tinyDataset(t)
	dir := t.TempDir()
	specPath := filepath.Join(dir, "sweep.yaml")
	quoted := make([]string, len(tinySets))
	for i, s := range tinySets {
		quoted[i] = strconv.Quote(s)
	}
	if err := os.WriteFile(specPath, []byte(strings.Replace(gridSpec, "%s", strings.Join(quoted, ", "), 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, reg := filepath.Join(dir, "sweep"), filepath.Join(dir, "registry")
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"sweep", "-spec", specPath, "-data", data, "-out", out,
		"-version", "s1", "-publish", reg}, &stdout, &stderr)
	t.Logf("trainer sweep:\n%s", stdout.String())
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	// Every trial ran with its own parameters and reported the metric its
	// model.json holds; the best is the one with the highest.
	best, bestAcc := "", -1.0
	for id := 1; id <= 4; id++ {
		m, err := model.Load(context.Background(), nil, filepath.Join(out, strconv.Itoa(id), "model"))
		if err != nil {
			t.Fatalf("trial %d: %v", id, err)
		}
		if want := "s1-t" + strconv.Itoa(id); m.Metadata.Version != want {
			t.Errorf("trial %d version %q, want %q", id, m.Metadata.Version, want)
		}
		b, err := os.ReadFile(filepath.Join(out, "logs", "trial-"+strconv.Itoa(id)+".metrics"))
		if err != nil {
			t.Fatal(err)
		}
		rep, err := sweep.ReadMetric(b, "validation_accuracy")
		if err != nil || rep.Value != m.Metadata.Metrics.ValidationAccuracy {
			t.Errorf("trial %d reported %+v (%v), model.json %v", id, rep, err, m.Metadata.Metrics.ValidationAccuracy)
		}
		if acc := m.Metadata.Metrics.ValidationAccuracy; acc > bestAcc {
			best, bestAcc = m.Metadata.Version, acc
		}
	}
	if !strings.Contains(stdout.String(), "best: trial "+strings.TrimPrefix(best, "s1-t")+" ") {
		t.Errorf("best should be %s (%.4f)", best, bestAcc)
	}
	r, err := registry.Open(context.Background(), reg, registry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	a, err := r.Alias(context.Background(), "shapes", registry.Production)
	if err != nil || a.Version != best {
		t.Fatalf("production %+v, %v; want the best trial %s", a, err, best)
	}
	if d, err := r.Decision(context.Background(), "shapes", best); err != nil || !d.Accepted {
		t.Errorf("gate decision %+v, %v", d, err)
	}
	page, err := os.ReadFile(filepath.Join(out, "compare", "index.html"))
	if err != nil || strings.Count(string(page), "<td>trial ") < 4 {
		t.Errorf("sweep comparison page lacks the 4 trials (%v)", err)
	}

	// trainer compare: a trial directory beside the registry version.
	other := "1"
	if best == "s1-t1" {
		other = "4"
	}
	cmpDir := filepath.Join(dir, "cmp")
	stdout.Reset()
	err = run(context.Background(), []string{"compare", "-out", cmpDir, "-registry", reg,
		filepath.Join(out, other, "model"), "shapes@" + best}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("compare: %v\n%s", err, stderr.String())
	}
	checkComparePage(t, cmpDir)
}

func checkComparePage(t *testing.T, dir string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "index.html"))
	if err != nil {
		t.Fatal(err)
	}
	page := string(b)
	for _, want := range []string{`id="same-data"`, "<td>version</td>", "validation accuracy (onnxruntime)",
		gendata.ClassName(0) + "</td>", "precision</th>"} {
		if !strings.Contains(page, want) {
			t.Errorf("comparison page lacks %q", want)
		}
	}
	// Only differing keys: the learning rate or the epochs differ, the
	// shared model widths do not appear.
	if !regexp.MustCompile(`<td>train\.(learning_rate|epochs)</td>`).MatchString(page) {
		t.Error("comparison page does not show the differing hyperparameter")
	}
	if strings.Contains(page, "<td>model.widths</td>") || strings.Contains(page, "<td>seed</td>") {
		t.Error("comparison page lists config keys that are the same in both runs")
	}
	for _, png := range []string{"val_loss.png", "val_accuracy.png", "train_loss.png", "train_accuracy.png"} {
		if b, err := os.ReadFile(filepath.Join(dir, png)); err != nil || !bytes.HasPrefix(b, []byte("\x89PNG")) {
			t.Errorf("%s: %v", png, err)
		}
	}
}

// TestTrainProfiles: the profiling flags write their files into the model
// directory, and a tuning trial's --key=value arguments and metric report
// follow Vertex AI's conventions.
func TestTrainProfiles(t *testing.T) {
	racecheck.Require(t)
	onnxrttest.Init(t)
	out := t.TempDir()
	metricFile := filepath.Join(t.TempDir(), "hypertune", "output.metrics")
	t.Setenv(sweep.MetricFileEnv, metricFile)
	t.Setenv(sweep.TrialIDEnv, "7")
	args := []string{"train", "-data", tinyDataset(t), "-out", out, "-cpuprofile", "cpu.pprof",
		"-memprofile", "mem.pprof", "-trace", "trace.out", "-hypertune-metric", "validation_accuracy",
		"-set", "version=p", "-set", "train.epochs=1", "--train.learning_rate=0.01", "--seed", "9"}
	for _, s := range tinySets {
		args = append(args, "-set", s)
	}
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), args, &stdout, &stderr); err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	for name, magic := range map[string]string{"cpu.pprof": "\x1f\x8b", "mem.pprof": "\x1f\x8b", "trace.out": "go 1."} {
		b, err := os.ReadFile(filepath.Join(out, name))
		if err != nil || !bytes.HasPrefix(b, []byte(magic)) || len(b) < 100 {
			t.Errorf("%s: %d bytes, %v", name, len(b), err)
		}
	}
	m, err := model.Load(context.Background(), nil, out)
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(m.Metadata.TrainingConfig)
	if m.Metadata.Version != "p-t7" || !strings.Contains(cfg, `"learning_rate": 0.01`) || !strings.Contains(cfg, `"seed": 9`) {
		t.Errorf("version %q, config %s", m.Metadata.Version, cfg)
	}
	b, err := os.ReadFile(metricFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(`"trial":"7"`)) {
		t.Errorf("metric file %s", b)
	}
	if rep, err := sweep.ReadMetric(b, "validation_accuracy"); err != nil || rep.Value != m.Metadata.Metrics.ValidationAccuracy {
		t.Errorf("reported %+v, %v; model.json %v", rep, err, m.Metadata.Metrics.ValidationAccuracy)
	}
}
