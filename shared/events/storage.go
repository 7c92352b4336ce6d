package events

import (
	"errors"
	"fmt"
	"strings"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/googleapis/google-cloudevents-go/cloud/storagedata"
	"google.golang.org/protobuf/encoding/protojson"
)

// ObjectEvent is what a consumer needs of a Cloud Storage object event.
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

// ParseStorageEvent reads a google.cloud.storage.object.v1.* event (the
// finalized one is what PredictOnUpload handles). Errors wrap
// ErrMalformedEvent.
func ParseStorageEvent(ev cloudevents.Event) (ObjectEvent, error) {
	out := ObjectEvent{ID: ev.ID(), Time: ev.Time()}
	var d storagedata.StorageObjectData
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(ev.Data(), &d); err != nil {
		return out, fmt.Errorf("%w: data is not a storage object: %v", ErrMalformedEvent, err)
	}
	out.Bucket, out.Name = d.GetBucket(), d.GetName()
	// The source and subject say the same; use them when data does not.
	if out.Bucket == "" {
		if b, ok := strings.CutPrefix(ev.Source(), storageSourcePrefix); ok {
			out.Bucket = b
		}
	}
	if out.Name == "" {
		if n, ok := strings.CutPrefix(ev.Subject(), storageSubjectPrefix); ok {
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
