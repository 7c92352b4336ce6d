package demo

import (
	"context"
	"encoding/json"
	"errors"
	"image/color"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/orchard-mlops/orchard/infra/local/eventarc"
	"github.com/orchard-mlops/orchard/infra/local/stack"
	"github.com/orchard-mlops/orchard/shared/emulators"
	"github.com/orchard-mlops/orchard/shared/model"
	"github.com/orchard-mlops/orchard/shared/model/modeltest"
	"github.com/orchard-mlops/orchard/shared/monitor"
	"github.com/orchard-mlops/orchard/shared/onnxrt"
)

var binDir string

func TestMain(m *testing.M) {
	d, err := os.MkdirTemp("", "orchard-demo-test-bin-")
	if err != nil {
		panic(err)
	}
	binDir = d
	code := m.Run()
	os.RemoveAll(d)
	os.Exit(code)
}

func options(t *testing.T) Options {
	t.Helper()
	if _, err := onnxrt.Find(); err != nil {
		if emulators.InCI() {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	return Options{
		Out:     testWriter{t, &strings.Builder{}},
		SaveDir: t.TempDir(),
		Stack: stack.Config{
			Project: emulators.UniqueName(t), BinDir: binDir,
			Bridge: eventarc.Options{MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second},
		},
		ResultTimeout: 2 * time.Minute,
	}
}

// testWriter logs whole lines.
type testWriter struct {
	t   *testing.T
	buf *strings.Builder
}

func (w testWriter) Write(p []byte) (int, error) {
	w.buf.Write(p)
	s := w.buf.String()
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		w.t.Log(s[:i])
		w.buf.Reset()
		w.buf.WriteString(s[i+1:])
	}
	return len(p), nil
}

func run(t *testing.T, o Options) *Report {
	t.Helper()
	rep, err := Run(t.Context(), o)
	if errors.Is(err, emulators.ErrNotInstalled) && !emulators.InCI() {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// TestDemoWithProvidedModel is the flow without training: register the
// colour model (quality gate → production), serve it, upload photos in
// class folders, and get every result right.
func TestDemoWithProvidedModel(t *testing.T) {
	o := options(t)
	o.Train = TrainNone
	o.ModelDir = modeltest.Dir(t, modeltest.Options{})
	photos := t.TempDir()
	for class, c := range map[string]color.RGBA{"red": modeltest.Red, "green": modeltest.Green, "blue": modeltest.Blue} {
		if err := os.MkdirAll(filepath.Join(photos, class), 0o755); err != nil {
			t.Fatal(err)
		}
		for i, size := range []int{12, 30} {
			p := filepath.Join(photos, class, "photo "+string(rune('a'+i))+".jpg")
			if err := os.WriteFile(p, modeltest.JPEG(t, modeltest.Solid(c, size, size)), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	o.Photos, o.Data = photos, photos // Data is unused without training
	writeBaseline(t, o.ModelDir, photos)
	// Six photos a batch: let them alert, to see the drifted batch do so.
	o.Stack.FunctionsEnv = []string{"MONITOR_MIN_PREDICTIONS=3"}
	rep := run(t, o)
	if !rep.OK() || len(rep.Rows) != 6 || rep.Correct != 6 || rep.Accuracy() != 1 {
		t.Fatalf("report: %+v", rep)
	}
	for _, r := range rep.Rows {
		if r.Predicted != r.Expected || !strings.HasSuffix(r.Result, r.File+".json") {
			t.Errorf("row %+v", r)
		}
	}
	if rep.ModelVersion != "v1" || !strings.Contains(rep.ModelURI, "/models/colours/versions/v1") {
		t.Errorf("model %s %s", rep.ModelURI, rep.ModelVersion)
	}
	for _, p := range []string{"results/red/photo a.jpg.json", "model/model.json", "model/model.onnx"} {
		if _, err := os.Stat(filepath.Join(rep.SavedTo, p)); err != nil {
			t.Errorf("not saved: %v", err)
		}
	}
	// The second batch under zoom_out and dark, and the Monitor function's
	// report on each batch: the clean one like the baseline, the drifted
	// one far from it.
	if len(rep.Monitor) != 2 {
		t.Fatalf("%d monitor reports, want the clean and the drifted batch's", len(rep.Monitor))
	}
	clean, drifted := rep.Monitor[0].Report, rep.Monitor[1].Report
	if clean.Predictions != 6 || drifted.Predictions != 6 || !clean.Baseline || len(clean.Alerts) != 0 {
		t.Errorf("clean window: %d predictions, baseline %v, alerts %v; drifted: %d", clean.Predictions, clean.Baseline, clean.Alerts, drifted.Predictions)
	}
	var moved []string
	for _, a := range drifted.Alerts {
		moved = append(moved, a.Feature)
	}
	if !strings.Contains(strings.Join(moved, ","), "luminance") || drifted.Live == nil || drifted.Live.Labelled != 6 {
		t.Errorf("drifted window: alerts %v, live %+v", drifted.Alerts, drifted.Live)
	}
}

// writeBaseline gives the model directory the baseline of the clean
// photos as serving sees them, as the trainer would of its validation set.
func writeBaseline(t *testing.T, dir, photos string) {
	m, err := model.Load(t.Context(), nil, dir)
	if err != nil {
		t.Fatal(err)
	}
	c, err := onnxrt.NewClassifier(m, onnxrt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	bb := monitor.NewBaselineBuilder()
	files, _ := filepath.Glob(filepath.Join(photos, "*", "*.jpg"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		p, st, err := c.ClassifyStats(b, 1)
		if err != nil {
			t.Fatal(err)
		}
		bb.Add(st, p[0].Label, p[0].Score)
	}
	data, _ := json.Marshal(bb.Baseline())
	if err := os.WriteFile(filepath.Join(dir, monitor.BaselineFile), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestDemoTrainsOnGeneratedData is `make demo` on a tiny generated dataset:
// a training request on the training topic reaches SubmitTraining through
// the bridge, the Vertex AI stand-in runs the trainer, the model passes the
// gate and becomes production, the running functions pick it up, and every
// generated photo gets a prediction.
func TestDemoTrainsOnGeneratedData(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a model (about a minute on 2 cores)")
	}
	o := options(t)
	o.Train = TrainSubmit
	o.PerClass = 2
	o.TrainerSets = []string{"train.epochs=4", "train.early_stopping_patience=0", "report.enabled=false"}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	rep, err := Run(ctx, o)
	if errors.Is(err, emulators.ErrNotInstalled) && !emulators.InCI() {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || len(rep.Rows) < 8 || rep.ModelVersion == "" || rep.JobLog == "" {
		t.Fatalf("report %+v", rep)
	}
	if !strings.Contains(rep.ModelURI, "/models/"+model.DefaultName+"/versions/"+rep.ModelVersion) {
		t.Errorf("model %s", rep.ModelURI)
	}
	var names []string
	for _, s := range rep.Steps {
		names = append(names, s.Name)
	}
	if steps := strings.Join(names, "\n"); !strings.Contains(steps, "SubmitTraining") {
		t.Errorf("the training request did not go through SubmitTraining; steps:\n%s", steps)
	}
	// Tiny data and few epochs: only require clearly better than chance.
	if acc := rep.Accuracy(); acc < 0.5 {
		t.Errorf("accuracy %.2f on generated photos", acc)
	}
}
