package compare_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/shared/emulators"
	"github.com/orchard-mlops/orchard/shared/model"
	"github.com/orchard-mlops/orchard/trainer/compare"
)

func TestMain(m *testing.M) { os.Exit(emulators.RunTests(m)) }

func writeRun(t *testing.T, version, digest, cfg string, confusion bool) string {
	t.Helper()
	dir := t.TempDir()
	meta := model.Metadata{Name: "fruit", Version: version, Labels: []string{"apple", "pear"},
		Metrics:        model.Metrics{ValidationAccuracy: 0.75, Epochs: 2, Extra: map[string]float64{"best_epoch": 2}},
		Dataset:        model.Dataset{URI: "gs://d/fruit", ManifestDigest: digest, Images: 40},
		TrainingConfig: json.RawMessage(cfg)}
	files := map[string]any{model.MetadataFile: meta}
	if confusion {
		files[compare.ConfusionFile] = compare.Confusion{Labels: []string{"apple", "pear"}, Matrix: [][]int{{3, 1}, {0, 4}}}
	}
	for name, v := range files {
		b, _ := json.Marshal(v)
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	lines := `{"epoch":1,"train_loss":1.2,"val_loss":1.0,"val_accuracy":0.5}` + "\n" + `{"epoch":2,"train_loss":0.8,"val_loss":0.7,"val_accuracy":0.75}` + "\n"
	if err := os.WriteFile(filepath.Join(dir, compare.MetricsFile), []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestPage(t *testing.T) {
	ctx := context.Background()
	a := writeRun(t, "v1", "sha256:aaa", `{"seed":1,"train":{"epochs":2,"learning_rate":0.01}}`, true)
	b := writeRun(t, "v1", "sha256:bbb", `{"seed":1,"train":{"epochs":2,"learning_rate":0.003}}`, false)
	var runs []*compare.Run
	for _, d := range []string{a, b} {
		r, err := compare.Load(ctx, nil, d)
		if err != nil {
			t.Fatal(err)
		}
		runs = append(runs, r)
	}
	if len(runs[0].History) != 2 || runs[0].Confusion == nil || runs[1].Confusion != nil {
		t.Fatalf("loaded %+v", runs[0])
	}
	out := t.TempDir()
	if err := compare.Write(ctx, nil, out, "two", runs); err != nil {
		t.Fatal(err)
	}
	b2, err := os.ReadFile(filepath.Join(out, "index.html"))
	if err != nil {
		t.Fatal(err)
	}
	page := string(b2)
	for _, want := range []string{`id="different-data"`, "<td>train.learning_rate</td><td>0.01</td><td>0.003</td>",
		"<td>v1#1</td>", "<td>v1#2</td>", "<td>apple</td><td>1.0000</td><td>0.7500</td>", "Not recorded for: v1#2", "<td>best_epoch</td>"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(page, "<td>seed</td>") || strings.Contains(page, "<td>train.epochs</td>") {
		t.Error("page shows config keys that do not differ")
	}
	if _, err := compare.Load(ctx, nil, t.TempDir()); err == nil {
		t.Error("a directory without model.json was accepted")
	}
	if _, err := compare.Resolve(ctx, nil, "fruit@v1", ""); err == nil || !strings.Contains(err.Error(), "-registry") {
		t.Errorf("NAME@VERSION without a registry: %v", err)
	}
	if u, err := compare.Resolve(ctx, nil, a, ""); err != nil || u != a {
		t.Errorf("a directory resolves to itself: %q %v", u, err)
	}
}

// TestGCSRuns reads runs from gs:// and writes the page there
// (fake-gcs-server).
func TestGCSRuns(t *testing.T) {
	g := emulators.GCSForTest(t)
	g.Setenv(t)
	ctx := context.Background()
	stores := blob.NewOpener(g.ClientForTest(t))
	if err := g.ClientForTest(t).Bucket("runs").Create(ctx, "test", nil); err != nil {
		t.Fatal(err)
	}
	var runs []*compare.Run
	for i, cfg := range []string{`{"train":{"epochs":2}}`, `{"train":{"epochs":3}}`} {
		dir := writeRun(t, fmt.Sprintf("v%d", i+1), "sha256:same", cfg, true)
		uri := fmt.Sprintf("gs://runs/job-%d/model", i)
		dst, err := stores.Open(ctx, uri)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{model.MetadataFile, compare.MetricsFile, compare.ConfusionFile} {
			b, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := dst.Write(ctx, name, b, blob.WriteOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		r, err := compare.Load(ctx, stores, uri)
		if err != nil {
			t.Fatal(err)
		}
		runs = append(runs, r)
	}
	if err := compare.Write(ctx, stores, "gs://runs/cmp", "gcs", runs); err != nil {
		t.Fatal(err)
	}
	st, _ := stores.Open(ctx, "gs://runs/cmp")
	b, attrs, err := st.Read(ctx, "index.html", 0)
	if err != nil || !strings.HasPrefix(attrs.ContentType, "text/html") {
		t.Fatalf("index.html: %v %+v", err, attrs)
	}
	if page := string(b); !strings.Contains(page, `id="same-data"`) || !strings.Contains(page, "<td>train.epochs</td><td>2</td><td>3</td>") {
		t.Error("gs:// page lacks the verdict or the difference")
	}
	if _, err := st.Attributes(ctx, "val_accuracy.png"); err != nil {
		t.Error(err)
	}
}
