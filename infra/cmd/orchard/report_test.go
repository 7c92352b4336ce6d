package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/shared/model/modeltest"
	"github.com/orchard-mlops/orchard/shared/registry"
)

func TestVersionsLinkReports(t *testing.T) {
	dir := t.TempDir()
	reg, err := registry.Open(t.Context(), dir, registry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"v1", "v2"} {
		srcDir := t.TempDir()
		src, _ := blob.NewDir(srcDir)
		modeltest.Save(t, modeltest.Colour(t, modeltest.Options{Version: v}), src)
		if v == "v2" {
			if err := os.MkdirAll(filepath.Join(srcDir, "report"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(srcDir, "report", "index.html"), []byte("<html>"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := registry.PublishFrom(t.Context(), reg, src, registry.PublishOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	out, err := runCLI(t, "versions", "-registry", dir, "-name", "colours")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasSuffix(lines[0], "REPORT") || !strings.HasSuffix(lines[1], " -") ||
		!strings.HasSuffix(lines[2], "/models/colours/versions/v2/report/index.html") || !strings.Contains(lines[2], "file://") {
		t.Errorf("versions:\n%s", out)
	}
	if got := browserURL("gs://b/reg/models/m/versions/v1/report/index.html"); got != "https://storage.cloud.google.com/b/reg/models/m/versions/v1/report/index.html" {
		t.Errorf("browserURL = %s", got)
	}
}

func TestSweepFlags(t *testing.T) {
	t.Setenv("TRAINER_IMAGE", "")
	t.Setenv("TRAINING_OUTPUT_URI", "")
	t.Setenv("VERTEX_REGION", "")
	out, err := runCLI(t, "sweep", "-project", "p")
	if err == nil || !strings.Contains(err.Error(), "required: -data, -image, -output, -region, -spec") {
		t.Errorf("missing flags: %v\n%s", err, out)
	}
	spec := filepath.Join(t.TempDir(), "s.yaml")
	os.WriteFile(spec, []byte("name: x\nparams: [{key: train.epoch, values: [1]}]\n"), 0o644)
	_, err = runCLI(t, "sweep", "-spec", spec, "-data", "gs://d/x", "-image", "i", "-output", "gs://o", "-project", "p", "-region", "r")
	if err == nil || !strings.Contains(err.Error(), `unknown key "train.epoch"`) {
		t.Errorf("bad spec: %v", err)
	}
}
