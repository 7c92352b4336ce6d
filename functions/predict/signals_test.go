package predict

import (
	"encoding/json"
	"net/http/httptest"
	"testing"

	"github.com/orchard-mlops/orchard/shared/model/modeltest"
	"github.com/orchard-mlops/orchard/shared/modelsource"
	"github.com/orchard-mlops/orchard/shared/onnxrt"
	"github.com/orchard-mlops/orchard/shared/onnxrt/onnxrttest"
	"github.com/orchard-mlops/orchard/shared/preprocess"
)

// TestPredictCarriesSignals: every prediction carries its image's input
// statistics; with a baseline, the OOD flag says whether (and why) the
// image is unlike the validation set.
func TestPredictCarriesSignals(t *testing.T) {
	onnxrttest.Init(t)
	cfg := testConfig()
	m := modeltest.Colour(t, modeltest.Options{Version: "v3"})
	plain, err := onnxrt.NewClassifier(m, onnxrt.Options{Limits: cfg.Limits()})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	red := redJPEG(t)
	m.Baseline = redBaseline(t, plain)
	withBase, err := onnxrt.NewClassifier(m, onnxrt.Options{Limits: cfg.Limits()})
	if err != nil {
		t.Fatal(err)
	}
	defer withBase.Close()
	dark := modeltest.JPEG(t, modeltest.Solid(modeltest.Green, 100, 100))

	for _, tc := range []struct {
		name    string
		c       *onnxrt.Classifier
		img     []byte
		wantOOD string // "": no OOD field; else "true"/"false"
	}{
		{"no baseline", plain, red, ""},
		{"like the baseline", withBase, red, "false"},
		{"unlike the baseline", withBase, dark, "true"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &Server{&Service{Config: cfg, Provider: modelsource.Static{C: tc.c}, Log: quietLog()}}
			w := httptest.NewRecorder()
			s.ServeHTTP(w, post("/", "image/jpeg", tc.img))
			var pr PredictResponse
			if err := json.Unmarshal(w.Body.Bytes(), &pr); err != nil || w.Code != 200 {
				t.Fatalf("%d %s", w.Code, w.Body)
			}
			if pr.Input == nil || pr.Input.Width != 100 || pr.Input.Format != string(preprocess.JPEG) || pr.Input.Luminance <= 0 {
				t.Errorf("input statistics %+v", pr.Input)
			}
			switch {
			case tc.wantOOD == "" && pr.OOD != nil:
				t.Errorf("OOD without a baseline: %+v", pr.OOD)
			case tc.wantOOD == "true" && (pr.OOD == nil || !pr.OOD.Flag || pr.OOD.Reason == ""):
				t.Errorf("green under a red baseline: OOD %+v", pr.OOD)
			case tc.wantOOD == "false" && (pr.OOD == nil || pr.OOD.Flag):
				t.Errorf("red under a red baseline: OOD %+v", pr.OOD)
			}
		})
	}
}
