package events

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
)

func storageEvent(t *testing.T, data string, source, subject string) cloudevents.Event {
	t.Helper()
	ev := cloudevents.NewEvent()
	ev.SetID("42")
	ev.SetType(StorageFinalized)
	ev.SetSource(source)
	ev.SetSubject(subject)
	ev.SetTime(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	if err := ev.SetData("application/json", []byte(data)); err != nil {
		t.Fatal(err)
	}
	return ev
}

func TestParseStorageEvent(t *testing.T) {
	// Eventarc's body: numbers as strings, fields the parser ignores.
	ev := storageEvent(t, `{"bucket":"up","name":"a/b.jpg","generation":"1700000000000001","size":"123","contentType":"image/jpeg","kind":"storage#object","unknownField":1}`,
		StorageSource("up"), StorageSubject("a/b.jpg"))
	got, err := ParseStorageEvent(ev)
	want := ObjectEvent{ID: "42", Time: ev.Time(), Bucket: "up", Name: "a/b.jpg", Generation: 1700000000000001, Size: 123, ContentType: "image/jpeg"}
	if err != nil || got != want || got.URI() != "gs://up/a/b.jpg" {
		t.Errorf("ParseStorageEvent = %+v, %v; want %+v", got, err, want)
	}
	// Bucket and name from source and subject when the data lacks them.
	got, err = ParseStorageEvent(storageEvent(t, `{"generation":"7"}`, StorageSource("b2"), StorageSubject("x.png")))
	if err != nil || got.Bucket != "b2" || got.Name != "x.png" || got.Generation != 7 {
		t.Errorf("from source/subject: %+v, %v", got, err)
	}
	for name, ev := range map[string]cloudevents.Event{
		"not JSON":      storageEvent(t, `nope`, StorageSource("b"), StorageSubject("x")),
		"no name":       storageEvent(t, `{"bucket":"b","generation":"1"}`, "//elsewhere", ""),
		"no generation": storageEvent(t, `{"bucket":"b","name":"x"}`, StorageSource("b"), StorageSubject("x")),
	} {
		if _, err := ParseStorageEvent(ev); !errors.Is(err, ErrMalformedEvent) {
			t.Errorf("%s: error %v, want ErrMalformedEvent", name, err)
		}
	}
}

// TestMessagePublished: the body the bridge sends decodes into the same
// type, and either spelling of the message ID is read.
func TestMessagePublished(t *testing.T) {
	in := MessagePublishedData{Message: PubSubMessage{Data: []byte(`{"x":1}`), Attributes: map[string]string{"k": "v"},
		MessageID: "9", PublishTime: "2026-01-02T03:04:05Z", MessageIDSnake: "9", PublishTimeSnake: "2026-01-02T03:04:05Z"},
		Subscription: "projects/p/subscriptions/s"}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]map[string]any
	_ = json.Unmarshal(b, &raw)
	if raw["message"]["data"] != "eyJ4IjoxfQ==" || raw["message"]["messageId"] != "9" || raw["message"]["message_id"] != "9" {
		t.Errorf("wire form %s", b)
	}
	got, err := DecodeMessagePublished(b)
	if err != nil || string(got.Message.Data) != `{"x":1}` || got.Message.ID() != "9" || got.Subscription != in.Subscription {
		t.Errorf("DecodeMessagePublished = %+v, %v", got, err)
	}
	snake, err := DecodeMessagePublished([]byte(`{"message":{"data":"","message_id":"5"}}`))
	if err != nil || snake.Message.ID() != "5" {
		t.Errorf("snake_case ID: %+v, %v", snake, err)
	}
	if _, err := DecodeMessagePublished([]byte(`[]`)); err == nil {
		t.Error("a JSON array decoded")
	}
	if PubSubSource("projects/p/topics/t") != "//pubsub.googleapis.com/projects/p/topics/t" {
		t.Error(PubSubSource("projects/p/topics/t"))
	}
}
