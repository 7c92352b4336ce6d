package results

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
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
