package sweep_test

import (
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"cloud.google.com/go/aiplatform/apiv1/aiplatformpb"

	"github.com/orchard-mlops/orchard/trainer/sweep"
	"github.com/orchard-mlops/orchard/trainer/sweep/vertexspec"
)

func jobOf(s *sweep.Spec) *aiplatformpb.HyperparameterTuningJob {
	return &aiplatformpb.HyperparameterTuningJob{StudySpec: vertexspec.StudySpec(s), MaxTrialCount: int32(s.Trials),
		ParallelTrialCount: int32(s.Parallel)}
}

func TestGridAndRandom(t *testing.T) {
	s, err := sweep.Parse([]byte(`name: fruit
params:
  - {key: train.learning_rate, values: [0.01, 0.003]}
  - {key: model.widths, values: ["[8, 16]", "[16, 32]"]}
  - {key: train.epochs, min: 1, max: 2, type: integer}
`))
	if err != nil {
		t.Fatal(err)
	}
	if s.Trials != 8 || s.Metric != sweep.DefaultMetric || s.Goal != sweep.Maximize || s.Parallel != 1 {
		t.Fatalf("defaults: %+v", s)
	}
	trials := s.Expand()
	if len(trials) != 8 || trials[0].String() != "train.learning_rate=0.01 model.widths=[8, 16] train.epochs=1" ||
		trials[7].String() != "train.learning_rate=0.003 model.widths=[16, 32] train.epochs=2" {
		t.Fatalf("grid: %v", trials)
	}
	if got := trials[1].Args(); !reflect.DeepEqual(got, []string{"--train.learning_rate=0.01", "--model.widths=[8, 16]", "--train.epochs=2"}) {
		t.Errorf("args %q", got)
	}
	// The Vertex AI study round-trips to the same trials.
	back, err := vertexspec.FromJob(jobOf(s))
	if err != nil {
		t.Fatal(err)
	}
	if b := back.Expand(); !reflect.DeepEqual(b, trials) {
		t.Errorf("via StudySpec: %v", b)
	}

	r, err := sweep.Parse([]byte(`name: fruit
algorithm: random
trials: 5
seed: 3
params:
  - {key: train.learning_rate, min: 0.0001, max: 0.1, scale: log}
  - {key: train.batch_size, min: 8, max: 64, type: integer}
`))
	if err != nil {
		t.Fatal(err)
	}
	a, b := r.Expand(), r.Expand()
	if len(a) != 5 || !reflect.DeepEqual(a, b) {
		t.Fatalf("random search is not reproducible: %v / %v", a, b)
	}
	for _, tr := range a {
		lr, _ := strconv.ParseFloat(tr.Params[0].Value, 64)
		bs, err := strconv.Atoi(tr.Params[1].Value)
		if lr < 0.0001 || lr > 0.1 || err != nil || bs < 8 || bs > 64 {
			t.Errorf("trial %v is out of range", tr)
		}
	}
}

func TestSpecErrors(t *testing.T) {
	for _, tt := range []struct{ spec, want string }{
		{"params: [{key: train.epochs, values: [1]}]", "name"},
		{"name: x\nparams: [{key: train.epoch, values: [1]}]", `unknown key "train.epoch"`},
		{"name: x\nparams: [{key: train.epochs, values: [-1]}]", "train.epochs"},
		{"name: x\nparams: [{key: train.learning_rate, min: 0.1, max: 0.2}]", "grid search needs values"},
		{"name: x\nalgorithm: random\nparams: [{key: train.epochs, values: [1]}]", "trials is required"},
		{"name: x\nalgo: grid\nparams: [{key: train.epochs, values: [1]}]", "field algo not found"},
		{"name: x\nparams: [{key: train.learning_rate, min: 0, max: 1, scale: log}]", "min > 0"},
	} {
		_, err := sweep.Parse([]byte(tt.spec))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: %v, want %q", tt.spec, err, tt.want)
		}
	}
}

func TestHypertuneFormat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hypertune", "output.metrics")
	t.Setenv(sweep.TrialIDEnv, "3")
	for i := range 120 {
		if err := sweep.Report(path, "validation_accuracy", float64(i)/1000, int64(i)); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != sweep.MaxMetricEntries {
		t.Errorf("%d lines kept, want %d", len(lines), sweep.MaxMetricEntries)
	}
	// cloudml-hypertune's shape: sorted keys, string values, float timestamp.
	if !strings.HasPrefix(lines[99], `{"global_step":"119","timestamp":`) || !strings.HasSuffix(lines[99], `"trial":"3","validation_accuracy":"0.119"}`) {
		t.Errorf("last line %s", lines[99])
	}
	m, err := sweep.ReadMetric(b, "validation_accuracy")
	if err != nil || m.Value != 0.119 || m.Step != 119 {
		t.Errorf("ReadMetric: %+v, %v", m, err)
	}
	// What the Python library writes reads back too.
	py := `{"global_step": "1000", "my_metric_tag": "0.987", "timestamp": 1525851440.123456, "trial": "0"}`
	if m, err := sweep.ReadMetric([]byte(py), "my_metric_tag"); err != nil || m.Value != 0.987 || m.Step != 1000 {
		t.Errorf("python line: %+v, %v", m, err)
	}
	if _, err := sweep.ReadMetric([]byte(py), "other"); err == nil {
		t.Error("a missing tag was accepted")
	}
	if _, err := sweep.ReadMetric([]byte("{not json\n"), "x"); err == nil {
		t.Error("a corrupt file was accepted")
	}
}

func TestBest(t *testing.T) {
	s := &sweep.Spec{Goal: sweep.Maximize}
	rs := []sweep.Result{{Trial: sweep.Trial{ID: 2}, Metric: 0.9}, {Trial: sweep.Trial{ID: 1}, Metric: 0.9},
		{Trial: sweep.Trial{ID: 3}, Metric: 0.95, Err: os.ErrClosed}, {Trial: sweep.Trial{ID: 4}, Metric: 0.5}}
	if b, ok := sweep.Best(s, rs); !ok || b.Trial.ID != 1 {
		t.Errorf("best %+v: failed trials do not count, ties go to the lower ID", b)
	}
	s.Goal = sweep.Minimize
	if b, _ := sweep.Best(s, rs); b.Trial.ID != 4 {
		t.Errorf("minimise: %+v", b)
	}
}
