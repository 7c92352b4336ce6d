package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/shared/model/modeltest"
	"github.com/orchard-mlops/orchard/shared/monitor"
	"github.com/orchard-mlops/orchard/shared/registry"
	"github.com/orchard-mlops/orchard/shared/signals"
)

// TestMonitorCommand runs `orchard monitor` over local stores: a bright
// baseline, a window of dark predictions, and the table naming the alerts.
func TestMonitorCommand(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	results, _ := blob.NewDir(filepath.Join(root, "results"))
	models, _ := blob.NewDir(filepath.Join(root, "models"))
	bb := monitor.NewBaselineBuilder()
	for i := range 300 {
		v := float64(i%30) / 300
		bb.Add(signals.Stats{Luminance: 0.7 + v, Contrast: 0.2 + v/3, Saturation: 0.3 + v, Foreground: 0.4 + v, Width: 100, Height: 100, Aspect: 1, Format: "jpeg"},
			modeltest.Colours[i%3], 0.9+v)
	}
	base, _ := json.Marshal(bb.Baseline())
	dir, _ := blob.NewDir(t.TempDir())
	modeltest.Save(t, modeltest.Colour(t, modeltest.Options{}), dir)
	if _, err := dir.Write(ctx, monitor.BaselineFile, base, blob.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := registry.New(models, registry.Options{}).PutVersion(ctx, "colours", "v1", dir); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	for i := range 60 {
		rec := fmt.Sprintf(`{"name":"red/%d.jpg","model":{"name":"colours","version":"v1"},"label":"red","score":0.95,`+
			`"input":{"luminance":0.3,"contrast":0.1,"saturation":0.35,"foreground":0.45,"width":100,"height":100,"aspect":1,"format":"jpeg"},"time":%q}`, i, now.Format(time.RFC3339Nano))
		if _, err := results.Write(ctx, fmt.Sprintf("red/%d.jpg.json", i), []byte(rec), blob.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var out, errOut bytes.Buffer
	err := run(ctx, []string{"monitor", "-results", results.URI(""), "-registry", models.URI(""), "-window", "10m",
		"-end", now.Add(time.Minute).Format(time.RFC3339)}, &out, &errOut)
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut.String())
	}
	for _, want := range []string{"60 results read", "colours v1", "luminance", "js 1.000 !", "alerts", "luminance,contrast", "monitoring/colours/v1/"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if !strings.Contains(errOut.String(), `"drift_alert":"luminance"`) {
		t.Errorf("no WARNING line on stderr:\n%s", errOut.String())
	}
}
