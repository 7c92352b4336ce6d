// Package results is the schema of PredictOnUpload's output: the result
// object (<name>.json) or the error record (<name>.error.json) it writes
// into the results bucket, the Pub/Sub message it publishes (the same JSON)
// and the metadata on the result objects. It is pure Go, so readers (the
// local stack, the demo, tools) do not link the serving runtime.
package results

import (
	"time"

	"github.com/orchard-mlops/orchard/shared/signals"
)

// Signals are a prediction's drift signals, carried by every upload result
// and HTTP prediction so one odd image shows at once: the input statistics
// (the same the trainer's baseline holds) and the out-of-distribution flag
// against the model's baseline (absent when the model has none).
type Signals struct {
	Input *signals.Stats `json:"input,omitempty"`
	OOD   *signals.OOD   `json:"ood,omitempty"`
}

// Result-object metadata keys. SourceGenerationKey is the idempotency key:
// together with the result's name (the source object's name) it identifies
// bucket/name#generation.
const (
	SourceGenerationKey = "orchard-source-generation"
	SourceBucketKey     = "orchard-source-bucket"
	SourceNameKey       = "orchard-source-name"
)

// Suffixes of the objects written into the results bucket.
const (
	ResultSuffix = ".json"
	ErrorSuffix  = ".error.json"
)

// Model names the model that made a result.
type Model struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// Prediction is one label and its score.
type Prediction struct {
	Label string  `json:"label"`
	Score float64 `json:"score"`
}

// Upload is the content of <name>.json and <name>.error.json in the
// results bucket, and of the Pub/Sub message. An error record has Error
// and Kind set and no predictions.
type Upload struct {
	Bucket      string       `json:"bucket"`
	Name        string       `json:"name"`
	Generation  int64        `json:"generation,string"`
	URI         string       `json:"uri"`
	ContentType string       `json:"content_type,omitempty"`
	Size        int64        `json:"size,omitempty"`
	Model       *Model       `json:"model,omitempty"`
	Label       string       `json:"label,omitempty"` // top-1
	Score       float64      `json:"score,omitempty"`
	Predictions []Prediction `json:"predictions,omitempty"`
	Signals                  // input statistics and OOD flag, read by the monitor
	Error       string       `json:"error,omitempty"`
	Kind        string       `json:"kind,omitempty"`
	LatencyMS   float64      `json:"latency_ms"`
	EventID     string       `json:"event_id,omitempty"`
	EventTime   *time.Time   `json:"event_time,omitempty"`
	Time        time.Time    `json:"time"` // when the result was made
}

// Failed reports whether u is an error record.
func (u *Upload) Failed() bool { return u.Error != "" }

// ObjectName is where the result for the source object name is stored in
// the results bucket: name.json, or name.error.json for an error record.
func ObjectName(name string, failed bool) string {
	if failed {
		return name + ErrorSuffix
	}
	return name + ResultSuffix
}
