package functions

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/orchard-mlops/orchard/functions/predict"
	"github.com/orchard-mlops/orchard/shared/emulators"
	"github.com/orchard-mlops/orchard/shared/events"
	"github.com/orchard-mlops/orchard/shared/model/modeltest"
	"github.com/orchard-mlops/orchard/shared/onnxrt/onnxrttest"
	"github.com/orchard-mlops/orchard/shared/preprocess/preprocesstest"
	"github.com/orchard-mlops/orchard/shared/results"
)

// TestRegisteredFunctions serves the registered functions through the
// Functions Framework itself, configured only by the environment, as
// cmd/functions and Cloud Run do, and calls both over real HTTP.
func TestRegisteredFunctions(t *testing.T) {
	onnxrttest.Init(t)
	g := emulators.GCSForTest(t)
	g.Setenv(t) // the functions build their own storage client
	sc := g.ClientForTest(t)
	for _, b := range []string{"uploads", "results"} {
		if err := sc.Bucket(b).Create(t.Context(), "p", nil); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("MODEL_URI", "file://"+modeltest.Dir(t, modeltest.Options{Version: "v9"}))
	t.Setenv("RESULTS_BUCKET", "results")
	t.Setenv("UPLOAD_BUCKET", "uploads")
	t.Setenv("FUNCTION_TARGET", "")
	t.Setenv("OTEL_METRICS_EXPORTER", "none")

	base := serveForTest(t, DefaultTimeouts())
	var resp *http.Response
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if resp, err = http.Get(base + "/Predict"); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("server did not come up: %v", err)
	}
	var info predict.InfoResponse
	json.NewDecoder(resp.Body).Decode(&info)
	resp.Body.Close()
	if resp.StatusCode != 200 || !info.Ready || info.Model.Version != "v9" {
		t.Fatalf("GET /Predict: %d %+v", resp.StatusCode, info)
	}

	img := modeltest.JPEG(t, modeltest.Solid(modeltest.Red, 100, 100))
	resp, err = http.Post(base+"/Predict?top_k=1", "image/jpeg", bytes.NewReader(img))
	if err != nil {
		t.Fatal(err)
	}
	var pr predict.PredictResponse
	json.NewDecoder(resp.Body).Decode(&pr)
	resp.Body.Close()
	if resp.StatusCode != 200 || len(pr.Predictions) != 1 || pr.Predictions[0].Label != "red" || pr.Model.Version != "v9" {
		t.Fatalf("POST /Predict: %d %+v", resp.StatusCode, pr)
	}

	// PredictOnUpload through the framework: a good image, the same event
	// delivered again, and hostile objects that must be recorded as errors
	// and acknowledged (never retried, never a crash).
	put := func(name string, data []byte) int64 {
		w := sc.Bucket("uploads").Object(name).NewWriter(t.Context())
		w.ContentType = "image/jpeg"
		w.Write(data)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		return w.Attrs().Generation
	}
	deliver := func(id, name string, gen int64, size int) int {
		data, _ := json.Marshal(map[string]string{
			"bucket": "uploads", "name": name, "generation": strconv.FormatInt(gen, 10),
			"size": strconv.Itoa(size), "contentType": "image/jpeg", "metageneration": "1",
		})
		req, _ := http.NewRequest(http.MethodPost, base+"/PredictOnUpload", bytes.NewReader(data))
		for k, v := range map[string]string{
			"Content-Type": "application/json", "ce-specversion": "1.0", "ce-id": id,
			"ce-type": events.StorageFinalized, "ce-source": "//storage.googleapis.com/projects/_/buckets/uploads",
			"ce-subject": "objects/" + name, "ce-time": time.Now().UTC().Format(time.RFC3339),
		} {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	readResult := func(key string) (results.Upload, int64) {
		t.Helper()
		r, err := sc.Bucket("results").Object(key).NewReader(t.Context())
		if err != nil {
			t.Fatalf("no result %s: %v", key, err)
		}
		defer r.Close()
		var res results.Upload
		if err := json.NewDecoder(r).Decode(&res); err != nil {
			t.Fatal(err)
		}
		return res, r.Attrs.Generation
	}
	gen := put("in/x.jpg", img)
	if code := deliver("e1", "in/x.jpg", gen, len(img)); code/100 != 2 {
		t.Fatalf("POST /PredictOnUpload: HTTP %d", code)
	}
	res, resultGen := readResult("in/x.jpg.json")
	if res.Label != "red" || res.Generation != gen || res.Model.Version != "v9" {
		t.Errorf("result %+v", res)
	}
	if code := deliver("e1", "in/x.jpg", gen, len(img)); code/100 != 2 {
		t.Fatalf("duplicate delivery: HTTP %d, want 2xx (a no-op)", code)
	}
	if _, again := readResult("in/x.jpg.json"); again != resultGen {
		t.Errorf("duplicate delivery rewrote the result (generation %d → %d)", resultGen, again)
	}
	hostile := map[string][]byte{
		"in/text.jpg":      []byte("this is not an image"),
		"in/empty.jpg":     {},
		"in/truncated.jpg": img[:len(img)/2],
		"in/bomb.jpg":      preprocesstest.HostilePNG(20000, 20000), // 1.6 GB as RGBA; refused from its header
	}
	for i, bad := range hostile {
		g := put(i, bad)
		if code := deliver("bad-"+i, i, g, len(bad)); code/100 != 2 {
			t.Errorf("%s: HTTP %d, want 2xx (recorded, not retried)", i, code)
		}
		if res, _ := readResult(i + results.ErrorSuffix); res.Error == "" {
			t.Errorf("%s: error record %+v has no reason", i, res)
		}
	}

	// The same corpus posted to Predict: a 4xx with a reason each, and the
	// server keeps serving.
	for name, bad := range hostile {
		resp, err := http.Post(base+"/Predict", "image/jpeg", bytes.NewReader(bad))
		if err != nil {
			t.Fatal(err)
		}
		var e struct{ Error string }
		json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode/100 != 4 || e.Error == "" {
			t.Errorf("POST /Predict %s: HTTP %d %+v, want 4xx with a reason", name, resp.StatusCode, e)
		}
	}
	if resp, err := http.Get(base + "/Predict"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("Predict stopped serving after the hostile corpus: %v %v", resp, err)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}
