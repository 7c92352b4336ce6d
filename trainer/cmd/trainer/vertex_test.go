package main

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/shared/emulators"
	"github.com/orchard-mlops/orchard/shared/model"
	"github.com/orchard-mlops/orchard/shared/onnxrt/onnxrttest"
	"github.com/orchard-mlops/orchard/shared/registry"
	"github.com/orchard-mlops/orchard/trainer/gendata"
	"github.com/orchard-mlops/orchard/trainer/internal/racecheck"
)

// TestVertexContract runs `trainer train` as Vertex AI would: the dataset on
// Cloud Storage (fake-gcs-server), AIP_MODEL_DIR, AIP_CHECKPOINT_DIR and
// AIP_TENSORBOARD_LOG_DIR pointing at gs://, then -publish to a registry.
func TestVertexContract(t *testing.T) {
	racecheck.Require(t)
	onnxrttest.Init(t)
	g := emulators.GCSForTest(t)
	g.Setenv(t)
	ctx := context.Background()
	c := g.ClientForTest(t)
	for _, b := range []string{"data", "aip"} {
		if err := c.Bucket(b).Create(ctx, "test-project", nil); err != nil {
			t.Fatal(err)
		}
	}
	local := t.TempDir()
	if _, err := gendata.Generate(local, gendata.Options{Classes: 3, PerClass: 12, Size: 32, Seed: 2}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(local, gendata.ClassName(0), "bad.jpg"), []byte("not a jpeg"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := filepath.WalkDir(local, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(local, p)
		w := c.Bucket("data").Object("shapes/" + filepath.ToSlash(rel)).NewWriter(ctx)
		if _, err := w.Write(b); err != nil {
			return err
		}
		return w.Close()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("AIP_MODEL_DIR", "gs://aip/model")
	t.Setenv("AIP_CHECKPOINT_DIR", "gs://aip/checkpoints")
	t.Setenv("AIP_TENSORBOARD_LOG_DIR", "gs://aip/tb")
	regDir := t.TempDir()
	var out, errb bytes.Buffer
	err = run(ctx, []string{"train", "-data", "gs://data/shapes", "-name", "shapes", "-publish", regDir,
		"-set", "model.input_size=16", "-set", "model.widths=[8,16]", "-set", "train.batch_size=8",
		"-set", "train.epochs=2", "-set", "version=v1", "-set", "augment.enabled=false"}, &out, &errb)
	if err != nil {
		t.Fatalf("%v\n%s", err, errb.String())
	}
	if !strings.Contains(out.String(), "published shapes v1") {
		t.Fatalf("output: %s", out.String())
	}
	stores := blob.NewOpener(c)
	m, err := model.Load(ctx, stores, "gs://aip/model")
	if err != nil {
		t.Fatal(err)
	}
	if m.Metadata.Name != "shapes" || m.Metadata.Dataset.Skipped != 1 || !strings.HasPrefix(m.Metadata.Dataset.URI, "gs://data/shapes") {
		t.Fatalf("metadata %+v", m.Metadata.Dataset)
	}
	st, err := stores.Open(ctx, "gs://aip")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"checkpoints/checkpoint.bin", "tb/metrics.jsonl", "tb/events.out.tfevents.v1.orchard",
		"model/report/index.html", "model/metrics.jsonl", "model/manifest.jsonl", "model/config.yaml"} {
		if _, err := st.Attributes(ctx, k); err != nil {
			t.Errorf("gs://aip/%s: %v", k, err)
		}
	}
	reg, err := registry.Open(ctx, regDir, registry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	a, err := reg.Alias(ctx, "shapes", registry.Production)
	if err != nil || a.Version != "v1" {
		t.Fatalf("production alias %+v, %v", a, err)
	}
}
