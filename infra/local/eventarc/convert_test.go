package eventarc

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"

	"github.com/orchard-mlops/orchard/shared/events"
)

func TestFromStorageNotificationNormalises(t *testing.T) {
	// What fake-gcs-server v1.56.1 publishes: no metageneration, no links,
	// id without generation.
	m := &pubsub.Message{
		ID:          "42",
		PublishTime: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Attributes: map[string]string{
			"bucketId": "up", "objectId": "a b/c.jpg", "objectGeneration": "1700000000000001",
			"eventType": "OBJECT_FINALIZE", "eventTime": "2026-01-02T03:04:06Z", "payloadFormat": "JSON_API_V1",
		},
		Data: []byte(`{"kind":"storage#object","id":"up/a b/c.jpg","name":"a b/c.jpg","bucket":"up","generation":"1700000000000001",` +
			`"contentType":"image/jpeg","timeCreated":"2026-01-02T03:04:05.5Z","updated":"2026-01-02T03:04:05.5Z","storageClass":"STANDARD","size":"12","md5Hash":"x","crc32c":"y","metadata":{"k":"v"}}`),
	}
	ev, err := FromStorageNotification(m)
	if err != nil {
		t.Fatal(err)
	}
	if ev.ID != "42" || ev.Type != events.StorageFinalized || ev.Source != "//storage.googleapis.com/projects/_/buckets/up" ||
		ev.Subject != "objects/a b/c.jpg" || !ev.Time.Equal(time.Date(2026, 1, 2, 3, 4, 6, 0, time.UTC)) {
		t.Errorf("event %+v", ev)
	}
	var d map[string]any
	if err := json.Unmarshal(ev.Data, &d); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"id": "up/a b/c.jpg/1700000000000001", "generation": "1700000000000001", "metageneration": "1", "size": "12",
		"selfLink":                "https://www.googleapis.com/storage/v1/b/up/o/a%20b%2Fc.jpg",
		"mediaLink":               "https://storage.googleapis.com/download/storage/v1/b/up/o/a%20b%2Fc.jpg?generation=1700000000000001&alt=media",
		"timeStorageClassUpdated": "2026-01-02T03:04:05.5Z", "kind": "storage#object",
	}
	for k, v := range want {
		if d[k] != v {
			t.Errorf("%s = %#v, want %#v", k, d[k], v)
		}
	}
	if md, _ := d["metadata"].(map[string]any); md["k"] != "v" {
		t.Errorf("metadata not passed through: %v", d["metadata"])
	}
	h := ev.Header()
	if h["ce-specversion"] != "1.0" || h["ce-time"] != "2026-01-02T03:04:06Z" || h["Content-Type"] != "application/json" {
		t.Errorf("headers %v", h)
	}

	// Numbers instead of strings (other producers) become strings too.
	m.Data = []byte(`{"name":"a b/c.jpg","bucket":"up","generation":1700000000000001,"size":12,"metageneration":3}`)
	ev, err = FromStorageNotification(m)
	if err != nil {
		t.Fatal(err)
	}
	if s := string(ev.Data); !strings.Contains(s, `"size":"12"`) || !strings.Contains(s, `"metageneration":"3"`) || !strings.Contains(s, `"generation":"1700000000000001"`) {
		t.Errorf("data %s", s)
	}
}

func TestFromStorageNotificationTypesAndErrors(t *testing.T) {
	for et, want := range map[string]string{"OBJECT_DELETE": events.StorageDeleted, "OBJECT_ARCHIVE": events.StorageArchived, "OBJECT_METADATA_UPDATE": events.StorageMetadataUpdated} {
		ev, err := FromStorageNotification(&pubsub.Message{ID: "1", Attributes: map[string]string{"bucketId": "b", "objectId": "o", "objectGeneration": "1", "eventType": et}})
		if err != nil || ev.Type != want {
			t.Errorf("%s: %v %v", et, ev, err)
		}
	}
	for name, attrs := range map[string]map[string]string{
		"no bucket":     {"objectId": "o", "objectGeneration": "1", "eventType": "OBJECT_FINALIZE"},
		"bad type":      {"bucketId": "b", "objectId": "o", "objectGeneration": "1", "eventType": "NOPE"},
		"no generation": {"bucketId": "b", "objectId": "o", "eventType": "OBJECT_FINALIZE"},
	} {
		if _, err := FromStorageNotification(&pubsub.Message{Attributes: attrs}); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestBackoffAndValidation(t *testing.T) {
	b, err := New(&pubsub.Client{}, Options{MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second},
		Route{Kind: PubSub, Topic: "projects/p/topics/t", Subscription: "projects/p/subscriptions/s", Target: "http://x"})
	if err != nil {
		t.Fatal(err)
	}
	for a, want := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 4: 800 * time.Millisecond, 5: time.Second, 30: time.Second} {
		if got := b.backoff(a); got != want {
			t.Errorf("backoff(%d) = %v, want %v", a, got, want)
		}
	}
	if b.opts.MaxAttempts != 5 || b.routes[0].Name != "s" {
		t.Errorf("defaults: %+v %q", b.opts, b.routes[0].Name)
	}
	good := Route{Kind: PubSub, Topic: "projects/p/topics/t", Subscription: "projects/p/subscriptions/s", Target: "http://x"}
	for name, r := range map[string]Route{
		"kind":   {Topic: good.Topic, Subscription: good.Subscription, Target: good.Target},
		"sub":    {Kind: PubSub, Topic: good.Topic, Subscription: "s", Target: good.Target},
		"topic":  {Kind: PubSub, Topic: "t", Subscription: good.Subscription, Target: good.Target},
		"target": {Kind: PubSub, Topic: good.Topic, Subscription: good.Subscription, Target: "x"},
		"dl":     {Kind: PubSub, Topic: good.Topic, Subscription: good.Subscription, Target: good.Target, DeadLetterTopic: "d"},
	} {
		if _, err := New(&pubsub.Client{}, Options{}, r); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := New(&pubsub.Client{}, Options{}, good, good); err == nil {
		t.Error("two routes on one subscription accepted")
	}
	if _, err := New(&pubsub.Client{}, Options{MaxAttempts: 101}, good); err == nil {
		t.Error("MaxAttempts 101 accepted")
	}
}
