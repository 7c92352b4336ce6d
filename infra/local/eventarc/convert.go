package eventarc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"cloud.google.com/go/pubsub/v2"

	"github.com/orchard-mlops/orchard/shared/events"
	"github.com/orchard-mlops/orchard/shared/gcp"
)

// storageTypes maps Cloud Storage notification event types (the eventType
// attribute) to Eventarc's CloudEvent types.
var storageTypes = map[string]string{
	"OBJECT_FINALIZE":        events.StorageFinalized,
	"OBJECT_DELETE":          events.StorageDeleted,
	"OBJECT_ARCHIVE":         events.StorageArchived,
	"OBJECT_METADATA_UPDATE": events.StorageMetadataUpdated,
}

// Event is a binary-mode CloudEvent, ready to POST: the ce-* headers and the
// JSON body Eventarc would send.
type Event struct {
	ID          string
	Type        string
	Source      string
	Subject     string // empty for Pub/Sub events, as Eventarc sends them
	Time        time.Time
	ContentType string // application/json
	Data        []byte
}

// Header returns the HTTP headers of the binary-mode CloudEvent.
func (e *Event) Header() map[string]string {
	h := map[string]string{
		"ce-specversion": "1.0",
		"ce-id":          e.ID,
		"ce-type":        e.Type,
		"ce-source":      e.Source,
		"ce-time":        e.Time.UTC().Format(time.RFC3339Nano),
		"Content-Type":   e.ContentType,
	}
	if e.Subject != "" {
		h["ce-subject"] = e.Subject
	}
	return h
}

// errMalformed marks a message that can never become an event; it is
// dead-lettered at once, without retries.
var errMalformed = errors.New("malformed message")

// FromStorageNotification converts a Cloud Storage Pub/Sub notification (as
// Cloud Storage and fake-gcs-server publish it: attributes bucketId,
// objectId, objectGeneration, eventType, eventTime; data the object resource
// in JSON_API_V1 format) into the CloudEvent Eventarc delivers for it.
//
// The ID is the Pub/Sub message ID, so a redelivery keeps its ID. The body is
// the object resource normalised to what Eventarc sends: camelCase keys,
// generation, metageneration and size as strings, kind, id
// ("bucket/name/generation"), selfLink, mediaLink and
// timeStorageClassUpdated filled in when the notification lacks them
// (fake-gcs-server omits metageneration and the links, and its id has no
// generation). Fields it does not know are passed through.
func FromStorageNotification(m *pubsub.Message) (*Event, error) {
	attr := m.Attributes
	bucket, name := attr["bucketId"], attr["objectId"]
	if bucket == "" || name == "" {
		return nil, fmt.Errorf("%w: storage notification without bucketId/objectId attributes (attributes %v)", errMalformed, attr)
	}
	typ, ok := storageTypes[attr["eventType"]]
	if !ok {
		return nil, fmt.Errorf("%w: unknown storage eventType %q", errMalformed, attr["eventType"])
	}
	obj := map[string]any{}
	if len(bytes.TrimSpace(m.Data)) > 0 {
		dec := json.NewDecoder(bytes.NewReader(m.Data))
		dec.UseNumber()
		if err := dec.Decode(&obj); err != nil {
			return nil, fmt.Errorf("%w: storage notification data is not a JSON object: %v", errMalformed, err)
		}
	}
	gen := attr["objectGeneration"]
	if gen == "" {
		gen = jsonString(obj["generation"])
	}
	if _, err := strconv.ParseInt(gen, 10, 64); err != nil {
		return nil, fmt.Errorf("%w: object gs://%s/%s has no valid generation (%q)", errMalformed, bucket, name, gen)
	}
	obj["kind"] = "storage#object"
	obj["bucket"] = bucket
	obj["name"] = name
	obj["generation"] = gen
	obj["id"] = bucket + "/" + name + "/" + gen
	for _, k := range []string{"metageneration", "size"} {
		if v, ok := obj[k]; ok {
			obj[k] = jsonString(v)
		}
	}
	if _, ok := obj["metageneration"]; !ok {
		obj["metageneration"] = "1"
	}
	esc := url.PathEscape(name)
	if _, ok := obj["selfLink"]; !ok {
		obj["selfLink"] = "https://www.googleapis.com/storage/v1/b/" + bucket + "/o/" + esc
	}
	if _, ok := obj["mediaLink"]; !ok {
		obj["mediaLink"] = "https://storage.googleapis.com/download/storage/v1/b/" + bucket + "/o/" + esc + "?generation=" + gen + "&alt=media"
	}
	if _, ok := obj["timeStorageClassUpdated"]; !ok {
		if tc, ok := obj["timeCreated"]; ok {
			obj["timeStorageClassUpdated"] = tc
		}
	}
	data, err := json.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errMalformed, err)
	}
	t := m.PublishTime
	if et, err := time.Parse(time.RFC3339Nano, attr["eventTime"]); err == nil {
		t = et
	}
	return &Event{
		ID:          m.ID,
		Type:        typ,
		Source:      events.StorageSource(bucket),
		Subject:     events.StorageSubject(name),
		Time:        t,
		ContentType: "application/json",
		Data:        data,
	}, nil
}

// jsonString renders a JSON scalar (string or number) as a string.
func jsonString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case json.Number:
		return x.String()
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}

// FromPubSubMessage converts a message pulled from subscription (full name)
// of topic (full name, projects/P/topics/T) into the messagePublished
// CloudEvent Eventarc delivers for it.
func FromPubSubMessage(m *pubsub.Message, topic, subscription string) (*Event, error) {
	if _, _, ok := gcp.ParseTopic(topic); !ok {
		return nil, fmt.Errorf("topic %q: want projects/P/topics/T", topic)
	}
	attrs := m.Attributes
	if attrs == nil {
		attrs = map[string]string{}
	}
	pt := m.PublishTime.UTC().Format(time.RFC3339Nano)
	body := events.MessagePublishedData{
		Message: events.PubSubMessage{
			Data: m.Data, Attributes: attrs, MessageID: m.ID, PublishTime: pt, OrderingKey: m.OrderingKey,
			MessageIDSnake: m.ID, PublishTimeSnake: pt,
		},
		Subscription: subscription,
	}
	data, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	return &Event{
		ID:          m.ID,
		Type:        events.PubSubPublished,
		Source:      events.PubSubSource(topic),
		Time:        m.PublishTime,
		ContentType: "application/json",
		Data:        data,
	}, nil
}
