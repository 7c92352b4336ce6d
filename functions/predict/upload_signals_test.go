package predict

import (
	"testing"

	"github.com/orchard-mlops/orchard/shared/model/modeltest"
	"github.com/orchard-mlops/orchard/shared/modelsource"
	"github.com/orchard-mlops/orchard/shared/monitor"
	"github.com/orchard-mlops/orchard/shared/onnxrt"
	"github.com/orchard-mlops/orchard/shared/preprocess"
)

// redBaseline is a baseline of bright red photos as c classifies them: at
// high confidence, so that other colours fall outside it.
func redBaseline(t *testing.T, c *onnxrt.Classifier) *monitor.Baseline {
	t.Helper()
	bb := monitor.NewBaselineBuilder()
	red := redJPEG(t)
	for range 50 {
		p, st, err := c.ClassifyStats(red, 1)
		if err != nil {
			t.Fatal(err)
		}
		bb.Add(st, p[0].Label, p[0].Score)
	}
	return bb.Baseline()
}

// redBaselineClassifier is the colour model with redBaseline, closed when
// the test ends.
func redBaselineClassifier(t *testing.T, cfg Config) *onnxrt.Classifier {
	t.Helper()
	m := modeltest.Colour(t, modeltest.Options{Version: "v5"})
	m.Baseline = redBaseline(t, newClassifier(t, cfg, modeltest.Options{Version: "v5"}))
	c, err := onnxrt.NewClassifier(m, onnxrt.Options{Limits: cfg.Limits()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestPredictOnUploadStoresSignals: the result PredictOnUpload stores (what
// the monitor aggregates) carries the upload's input statistics and, with
// a baseline, its out-of-distribution flag and reason; without one, the
// statistics alone.
func TestPredictOnUploadStoresSignals(t *testing.T) {
	cfg := testConfig()
	e := newUploadEnv(t, cfg)
	plain := e.u.Service.Provider
	withBase := modelsource.Static{C: redBaselineClassifier(t, cfg)}
	for _, tc := range []struct {
		name     string
		provider modelsource.Provider
		img      []byte
		width    int
		format   preprocess.Format
		file     string // name and content type of the upload
		ctype    string
		wantOOD  string // "": no OOD field; else "true"/"false"
	}{
		{"no baseline", plain, redJPEG(t), 100, preprocess.JPEG, "plain/red.jpg", "image/jpeg", ""},
		{"like the baseline", withBase, redJPEG(t), 100, preprocess.JPEG, "base/red.jpg", "image/jpeg", "false"},
		{"unlike the baseline", withBase, bluePNG(t), 30, preprocess.PNG, "base/blue.png", "image/png", "true"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.u.Service.Provider = tc.provider
			name := "signals/" + tc.file
			gen := e.put(t, "uploads", name, tc.ctype, tc.img)
			if code := e.send(t, finalizeRequest("ev-"+tc.file, "uploads", name, gen, int64(len(tc.img)), tc.ctype, nil)); !acked(code) {
				t.Fatalf("HTTP %d", code)
			}
			res, _ := e.result(t, name+".json")
			if in := res.Input; in == nil || in.Width != tc.width || in.Format != string(tc.format) || in.Luminance <= 0 || in.Saturation <= 0 || in.Foreground < 0 {
				t.Errorf("stored input statistics %+v, want width %d, format %s, luminance and saturation above 0", in, tc.width, tc.format)
			}
			switch o := res.OOD; {
			case tc.wantOOD == "" && o != nil:
				t.Errorf("OOD without a baseline: %+v", o)
			case tc.wantOOD == "true" && (o == nil || !o.Flag || o.Reason == "" || len(o.Features) == 0):
				t.Errorf("blue under a red baseline: stored OOD %+v, want flagged with features and a reason", o)
			case tc.wantOOD == "false" && (o == nil || o.Flag):
				t.Errorf("red under a red baseline: stored OOD %+v, want present and not flagged", o)
			}
		})
	}
}
