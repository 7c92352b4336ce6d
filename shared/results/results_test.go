package results

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/orchard-mlops/orchard/shared/signals"
)

// TestUploadJSON pins the wire names readers depend on, including the
// generation as a string (JSON numbers lose int64 precision).
func TestUploadJSON(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	u := Upload{Bucket: "up", Name: "a/b.jpg", Generation: 1 << 60, URI: "gs://up/a/b.jpg", Model: &Model{Name: "fruits", Version: "v1"},
		Label: "apple", Score: 0.75, Predictions: []Prediction{{"apple", 0.75}, {"pear", 0.25}}, LatencyMS: 12.5, EventID: "42", EventTime: &at, Time: at}
	b, err := json.Marshal(u)
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	if raw["generation"] != "1152921504606846976" || raw["latency_ms"] != 12.5 || raw["event_id"] != "42" ||
		raw["model"].(map[string]any)["version"] != "v1" || raw["predictions"].([]any)[1].(map[string]any)["label"] != "pear" {
		t.Errorf("wire form %s", b)
	}
	if _, ok := raw["error"]; ok {
		t.Errorf("a result carries an empty error: %s", b)
	}
	var back Upload
	if err := json.Unmarshal(b, &back); err != nil || !reflect.DeepEqual(back, u) {
		t.Errorf("round trip = %+v, %v; want %+v", back, err, u)
	}
	if u.Failed() || ObjectName("a/b.jpg", false) != "a/b.jpg.json" || ObjectName("a/b.jpg", true) != "a/b.jpg.error.json" {
		t.Errorf("Failed = %v, names %q %q", u.Failed(), ObjectName("a/b.jpg", false), ObjectName("a/b.jpg", true))
	}
}

// TestSignalsJSON pins the wire names of the drift signals, which moved
// from shared/preprocess and shared/monitor to shared/signals: records
// written before the move decode unchanged, and records written now carry
// the same fields.
func TestSignalsJSON(t *testing.T) {
	const old = `{"bucket":"up","name":"a.jpg","generation":"7","uri":"gs://up/a.jpg","label":"red","score":0.9,` +
		`"input":{"luminance":0.3,"contrast":0.1,"saturation":0.35,"foreground":0.45,"width":100,"height":50,"aspect":2,"format":"jpeg"},` +
		`"ood":{"flag":true,"features":["luminance"],"reason":"luminance 0.300 outside"},"latency_ms":1,"time":"2026-01-02T03:04:05Z"}`
	var u Upload
	if err := json.Unmarshal([]byte(old), &u); err != nil {
		t.Fatal(err)
	}
	want := signals.Stats{Luminance: 0.3, Contrast: 0.1, Saturation: 0.35, Foreground: 0.45, Width: 100, Height: 50, Aspect: 2, Format: "jpeg"}
	if u.Input == nil || *u.Input != want {
		t.Errorf("input = %+v, want %+v", u.Input, want)
	}
	if u.OOD == nil || !u.OOD.Flag || !reflect.DeepEqual(u.OOD.Features, []string{"luminance"}) || u.OOD.Reason != "luminance 0.300 outside" {
		t.Errorf("ood = %+v", u.OOD)
	}
	b, err := json.Marshal(u)
	if err != nil {
		t.Fatal(err)
	}
	var got, exp map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(old), &exp); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"input", "ood"} {
		if !reflect.DeepEqual(got[k], exp[k]) {
			t.Errorf("%s written as %v, want %v", k, got[k], exp[k])
		}
	}
	var none map[string]any
	if b, _ := json.Marshal(Upload{}); json.Unmarshal(b, &none) != nil || none["input"] != nil || none["ood"] != nil {
		t.Errorf("a record without signals carries them: %s", b)
	}
}
