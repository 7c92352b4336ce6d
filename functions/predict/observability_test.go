package predict

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/orchard-mlops/orchard/functions/telemetry"
	"github.com/orchard-mlops/orchard/shared/logging"
	"github.com/orchard-mlops/orchard/shared/preprocess/preprocesstest"
)

// collect reads every metric from a ManualReader into name → data.
func collect(t *testing.T, r *sdkmetric.ManualReader) map[string]metricdata.Aggregation {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]metricdata.Aggregation{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			out[m.Name] = m.Data
		}
	}
	return out
}

// sumBy adds up an Int64 counter's points whose attributes include kv.
func sumBy(t *testing.T, data metricdata.Aggregation, kvs ...attribute.KeyValue) int64 {
	t.Helper()
	s, ok := data.(metricdata.Sum[int64])
	if !ok {
		t.Fatalf("metric is %T, want an int64 sum", data)
	}
	var n int64
	for _, dp := range s.DataPoints {
		match := true
		for _, kv := range kvs {
			if v, ok := dp.Attributes.Value(kv.Key); !ok || v != kv.Value {
				match = false
			}
		}
		if match {
			n += dp.Value
		}
	}
	return n
}

func TestMetrics(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { mp.Shutdown(context.Background()) })
	metrics, err := telemetry.New(mp)
	if err != nil {
		t.Fatal(err)
	}
	s := newServer(t, testConfig(), nil, metrics)
	for _, r := range []*http.Request{
		post("/", "image/jpeg", redJPEG(t)),
		post("/", "image/jpeg", redJPEG(t)),
		post("/", "image/png", bluePNG(t)),
		post("/", "image/jpeg", []byte{0xFF, 0xD8, 0xFF, 0, 0}),
		post("/", "image/png", preprocesstest.HostilePNG(20000, 20000)),
		post("/", "text/plain", []byte("x")),
	} {
		do(t, s, r)
	}
	body, ct := multipartBody(t, []part{{"file", "a.jpg", "", greenJPEG(t)}, {"file", "b.jpg", "", []byte("junk")}})
	do(t, s, post("/", ct, body))

	got := collect(t, reader)
	preds := got[telemetry.PredictionsName]
	for label, want := range map[string]int64{"red": 2, "blue": 1, "green": 1} {
		if n := sumBy(t, preds, telemetry.KeyLabel.String(label), telemetry.KeySource.String("http"), telemetry.KeyModelVersion.String("v3")); n != want {
			t.Errorf("predictions{label=%s} = %d, want %d", label, n, want)
		}
	}
	errs := got[telemetry.ErrorsName]
	for kind, want := range map[string]int64{KindCorrupt: 1, KindTooLarge: 1, KindUnsupported: 2} {
		if n := sumBy(t, errs, telemetry.KeyKind.String(kind)); n != want {
			t.Errorf("errors{kind=%s} = %d, want %d", kind, n, want)
		}
	}
	h, ok := got[telemetry.LatencyName].(metricdata.Histogram[float64])
	if !ok || len(h.DataPoints) != 1 {
		t.Fatalf("latency histogram = %#v", got[telemetry.LatencyName])
	}
	if dp := h.DataPoints[0]; dp.Count != 4 || dp.Sum <= 0 {
		t.Errorf("latency histogram: count %d sum %v, want 4 positive samples", dp.Count, dp.Sum)
	}
}

func TestMetricsUpload(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { mp.Shutdown(context.Background()) })
	metrics, _ := telemetry.New(mp)
	e := newUploadEnv(t, testConfig())
	e.u.Metrics = metrics
	img := redJPEG(t)
	gen := e.put(t, "uploads", "a.jpg", "image/jpeg", img)
	genBad := e.put(t, "uploads", "b.jpg", "image/jpeg", img[:100])
	e.send(t, finalizeRequest("1", "uploads", "a.jpg", gen, int64(len(img)), "image/jpeg", nil))
	e.send(t, finalizeRequest("2", "uploads", "b.jpg", genBad, 100, "image/jpeg", nil))
	got := collect(t, reader)
	if n := sumBy(t, got[telemetry.PredictionsName], telemetry.KeyLabel.String("red"), telemetry.KeySource.String("upload")); n != 1 {
		t.Errorf("upload predictions{red} = %d, want 1", n)
	}
	if n := sumBy(t, got[telemetry.ErrorsName], telemetry.KeyKind.String(KindCorrupt), telemetry.KeySource.String("upload")); n != 1 {
		t.Errorf("upload errors{corrupt} = %d, want 1", n)
	}
}

// logLines decodes JSON log lines.
func logLines(t *testing.T, b *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", line)
		}
		out = append(out, m)
	}
	return out
}

// TestRequestLogLine: each request logs exactly one Cloud Logging line with
// the prediction, the model version, the latency and the request's trace.
func TestRequestLogLine(t *testing.T) {
	var buf bytes.Buffer
	s := newServer(t, testConfig(), nil, nil)
	s.Log = logging.New(&buf, logging.WithProjectID("proj"))
	h := logging.HTTPMiddleware(s)
	r := post("/", "image/jpeg", redJPEG(t))
	r.Header.Set("X-Cloud-Trace-Context", "105445aa7843bc8bf206b12000100000/1;o=1")
	do(t, h, r)
	lines := logLines(t, &buf)
	if len(lines) != 1 {
		t.Fatalf("%d log lines, want 1: %s", len(lines), buf.String())
	}
	l := lines[0]
	for k, want := range map[string]any{
		"severity": "INFO", "function": "Predict", "mode": "raw", "status": float64(200),
		"label": "red", "model_version": "v3", "logging.googleapis.com/trace": "projects/proj/traces/105445aa7843bc8bf206b12000100000",
	} {
		if l[k] != want {
			t.Errorf("log %s = %v, want %v", k, l[k], want)
		}
	}
	if _, ok := l["latency_ms"].(float64); !ok {
		t.Errorf("no latency_ms in %v", l)
	}
	if sc, _ := l["score"].(float64); sc < 0.9 {
		t.Errorf("score %v", l["score"])
	}
	// Errors log at WARNING with the kind.
	buf.Reset()
	do(t, h, post("/", "image/jpeg", []byte("junk")))
	if l := logLines(t, &buf)[0]; l["severity"] != "WARNING" || l["error_kind"] != KindUnsupported || l["status"] != float64(400) {
		t.Errorf("error log line %v", l)
	}
}

func TestUploadLogLine(t *testing.T) {
	var buf bytes.Buffer
	e := newUploadEnv(t, testConfig())
	e.u.Log = logging.New(&buf)
	img := redJPEG(t)
	gen := e.put(t, "uploads", "a.jpg", "image/jpeg", img)
	e.send(t, finalizeRequest("ev-42", "uploads", "a.jpg", gen, int64(len(img)), "image/jpeg", nil))
	lines := logLines(t, &buf)
	if len(lines) != 1 {
		t.Fatalf("%d log lines, want 1: %s", len(lines), buf.String())
	}
	l := lines[0]
	for k, want := range map[string]any{
		"function": "PredictOnUpload", "event_id": "ev-42", "object": "gs://uploads/a.jpg", "outcome": "written",
		"label": "red", "model_version": "v5", "logging.googleapis.com/trace": "4bf92f3577b34da6a3ce929d0e0e4736",
	} {
		if l[k] != want {
			t.Errorf("log %s = %v, want %v", k, l[k], want)
		}
	}
	lat, ok := l["latency_ms"].(float64)
	if !ok {
		t.Errorf("no latency_ms in %v", l)
	}
	// The event's ce-time is in the past: the time from upload to result
	// includes the handling time.
	if u2r, ok := l["upload_to_result_ms"].(float64); !ok || u2r < lat {
		t.Errorf("upload_to_result_ms = %v, want a number >= latency_ms %v", l["upload_to_result_ms"], lat)
	}
}
