package predict

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/googleapis/google-cloudevents-go/cloud/storagedata"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/orchard-mlops/orchard/shared/logging"
)

// FinalizedType is the CloudEvent type of a GCS upload (or overwrite).
const FinalizedType = "google.cloud.storage.object.v1.finalized"

// ObjectEvent is what PredictOnUpload needs of a finalize event.
type ObjectEvent struct {
	ID          string
	Time        time.Time
	Bucket      string
	Name        string
	Generation  int64
	Size        int64 // as the event declares it
	ContentType string
}

// URI is gs://bucket/name.
func (e ObjectEvent) URI() string { return "gs://" + e.Bucket + "/" + e.Name }

// ErrMalformedEvent marks events that can never be processed.
var ErrMalformedEvent = errors.New("malformed event")

// ParseStorageEvent reads a google.cloud.storage.object.v1.finalized event.
// Errors wrap ErrMalformedEvent.
func ParseStorageEvent(ev cloudevents.Event) (ObjectEvent, error) {
	out := ObjectEvent{ID: ev.ID(), Time: ev.Time()}
	var d storagedata.StorageObjectData
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(ev.Data(), &d); err != nil {
		return out, fmt.Errorf("%w: data is not a storage object: %v", ErrMalformedEvent, err)
	}
	out.Bucket, out.Name = d.GetBucket(), d.GetName()
	// The source and subject say the same; use them when data does not.
	if out.Bucket == "" {
		if b, ok := strings.CutPrefix(ev.Source(), "//storage.googleapis.com/projects/_/buckets/"); ok {
			out.Bucket = b
		}
	}
	if out.Name == "" {
		if n, ok := strings.CutPrefix(ev.Subject(), "objects/"); ok {
			out.Name = n
		}
	}
	if out.Bucket == "" || out.Name == "" {
		return out, fmt.Errorf("%w: no bucket or object name (bucket %q, name %q)", ErrMalformedEvent, out.Bucket, out.Name)
	}
	out.Generation = d.GetGeneration()
	out.Size = d.GetSize() // 0 when absent: the read still enforces the cap
	out.ContentType = d.GetContentType()
	if out.Generation <= 0 {
		return out, fmt.Errorf("%w: %s has no generation", ErrMalformedEvent, out.URI())
	}
	return out, nil
}

// withEventTrace puts the event's trace into ctx for the logs: the
// CloudEvents distributed-tracing extension (ce-traceparent), else the
// delivering request's traceparent or X-Cloud-Trace-Context header.
func withEventTrace(ctx context.Context, ev cloudevents.Event) context.Context {
	if tp, ok := ev.Extensions()["traceparent"].(string); ok && tp != "" {
		return logging.WithTrace(ctx, tp)
	}
	if rd := cehttp.RequestDataFromContext(ctx); rd != nil {
		for _, h := range []string{"traceparent", "X-Cloud-Trace-Context"} {
			if v := rd.Header.Get(h); v != "" {
				return logging.WithTrace(ctx, v)
			}
		}
	}
	return ctx
}
