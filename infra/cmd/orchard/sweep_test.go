package main

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/orchard-mlops/orchard/infra/vertexlocal"
	"github.com/orchard-mlops/orchard/shared/model"
	"github.com/orchard-mlops/orchard/shared/onnxrt"
	"github.com/orchard-mlops/orchard/shared/onnxrt/onnxrttest"
	"github.com/orchard-mlops/orchard/shared/registry"
	"github.com/orchard-mlops/orchard/trainer/trainertest"
)

// TestSweepThroughVertexStandIn submits a 2x2 grid as a
// HyperparameterTuningJob to the Vertex AI stand-in, whose trials run the
// real trainer binary on a tiny dataset; the best trial is published
// through the gate and the trials' comparison page is written.
func TestSweepThroughVertexStandIn(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping real training in -short mode")
	}
	onnxrttest.Init(t)
	bin := trainertest.Build(t)
	data := t.TempDir()
	if out, err := exec.Command(bin, "gen-data", "-out", data, "-classes", "3", "-per-class", "12", "-size", "32").CombinedOutput(); err != nil {
		t.Fatalf("gen-data: %v\n%s", err, out)
	}
	t.Setenv("ORT_LIB", onnxrt.Path())
	t.Setenv("GOMAXPROCS", "1") // two trials at once on a small machine
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() {
		served <- vertexlocal.Serve(ctx, lis, vertexlocal.Config{LogDir: t.TempDir(), MaxConcurrent: 2,
			Images: map[string][]string{"europe-docker.pkg.dev/p/orchard/trainer*": {bin}}})
	}()
	t.Cleanup(func() { stop(); <-served })

	dir := t.TempDir()
	spec := filepath.Join(dir, "sweep.yaml")
	if err := os.WriteFile(spec, []byte(`name: shapes
algorithm: grid
parallel: 2
set: ["model.input_size=16", "model.widths=[8, 16]", "train.batch_size=8", "train.eval_batch_size=16",
      "train.early_stopping_patience=0", "augment.enabled=false", "report.enabled=false", "data.validation_fraction=0.3"]
params:
  - {key: train.learning_rate, values: [0.02, 0.0001]}
  - {key: train.epochs, values: [1, 2]}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	runs, reg := filepath.Join(dir, "runs"), filepath.Join(dir, "registry")
	out, err := runCLI(t, "sweep", "-spec", spec, "-data", data, "-image", "europe-docker.pkg.dev/p/orchard/trainer:v1",
		"-output", runs, "-project", "p", "-region", "europe-west1", "-endpoint", lis.Addr().String(),
		"-version", "v1", "-poll", "100ms", "-publish", reg)
	t.Logf("orchard sweep:\n%s", out)
	if err != nil {
		t.Fatal(err)
	}
	// Four trials, each a real model directory where Vertex AI would put
	// it; the best by validation accuracy is production now.
	best, bestAcc := "", -1.0
	for id := 1; id <= 4; id++ {
		m, err := model.Load(t.Context(), nil, filepath.Join(runs, "shapes-v1", strconv.Itoa(id), "model"))
		if err != nil {
			t.Fatalf("trial %d: %v", id, err)
		}
		if acc := m.Metadata.Metrics.ValidationAccuracy; acc > bestAcc {
			best, bestAcc = m.Metadata.Version, acc
		}
	}
	r, err := registry.Open(t.Context(), reg, registry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if a, err := r.Alias(t.Context(), "shapes", registry.Production); err != nil || a.Version != best {
		t.Fatalf("production %+v, %v; want the best trial %s (%.4f)", a, err, best, bestAcc)
	}
	page, err := os.ReadFile(filepath.Join(runs, "shapes-v1", "compare", "index.html"))
	if err != nil || strings.Count(string(page), "<td>trial ") < 4 || !strings.Contains(string(page), "<td>trial 4<") {
		t.Errorf("comparison page of the 4 trials: %v", err)
	}
	if out, err := runCLI(t, "versions", "-registry", reg, "-name", "shapes"); err != nil || !strings.Contains(out, best) {
		t.Errorf("versions: %v\n%s", err, out)
	}
}
