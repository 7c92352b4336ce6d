package eventarc

import (
	"context"
	"encoding/json"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"

	"cloud.google.com/go/storage"
	"github.com/googleapis/google-cloudevents-go/cloud/storagedata"
	"github.com/orchard-mlops/orchard/shared/events"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/orchard-mlops/orchard/shared/emulators"
)

// gcsEnv is fake-gcs-server publishing notifications into e's project.
func (e *env) gcs(t *testing.T, events ...string) (*emulators.GCS, *storage.Client, string) {
	t.Helper()
	const notifications = "gcs-notifications"
	if err := EnsureTopic(t.Context(), e.client, e.topic(notifications)); err != nil {
		t.Fatal(err)
	}
	g := emulators.GCSForTestWithOptions(t, emulators.GCSOptions{Notify: &emulators.GCSNotify{
		PubSubHost: e.ps.Host, Project: e.project, Topic: notifications, Events: events,
	}})
	return g, g.ClientForTest(t), e.topic(notifications)
}

func write(t *testing.T, c *storage.Client, bucket, name, ct string, data []byte) *storage.ObjectAttrs {
	t.Helper()
	w := c.Bucket(bucket).Object(name).NewWriter(t.Context())
	w.ContentType = ct
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return w.Attrs()
}

func TestStorageFinalizeBecomesEventarcCloudEvent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, gc, topic := e.gcs(t)
	bucket := emulators.UniqueName(t)
	if err := gc.Bucket(bucket).Create(t.Context(), e.project, nil); err != nil {
		t.Fatal(err)
	}
	tg := newTarget(t, nil)
	rs := newResults()
	o := fast()
	o.OnResult = rs.add
	b, err := New(e.client, o, Route{Kind: Storage, Topic: topic, Subscription: e.sub("uploads"), Target: tg.URL + "/PredictOnUpload"})
	if err != nil {
		t.Fatal(err)
	}
	start(t, b)

	name := "photos/Red apple/1 (copy).jpg"
	data := []byte("\xff\xd8 not really a jpeg")
	attrs := write(t, gc, bucket, name, "image/jpeg", data)
	got := tg.wait(t, 30*time.Second)
	res := rs.waitFor(t, Delivered, 10*time.Second)

	h := got.Header
	for k, want := range map[string]string{
		"ce-specversion": "1.0",
		"ce-type":        "google.cloud.storage.object.v1.finalized",
		"ce-source":      "//storage.googleapis.com/projects/_/buckets/" + bucket,
		"ce-subject":     "objects/" + name,
		"ce-id":          res.MessageID,
		"Content-Type":   "application/json",
	} {
		if h.Get(k) != want {
			t.Errorf("header %s = %q, want %q", k, h.Get(k), want)
		}
	}
	if res.MessageID == "" {
		t.Error("empty message ID")
	}
	ev := got.parse(t)
	if ev.Time().IsZero() || time.Since(ev.Time()) > time.Minute {
		t.Errorf("ce-time %v is not recent", ev.Time())
	}
	var d storagedata.StorageObjectData
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(ev.Data(), &d); err != nil {
		t.Fatalf("body is not a StorageObjectData: %v\n%s", err, ev.Data())
	}
	if d.GetBucket() != bucket || d.GetName() != name || d.GetGeneration() != attrs.Generation ||
		d.GetSize() != int64(len(data)) || d.GetContentType() != "image/jpeg" || d.GetMetageneration() != 1 {
		t.Errorf("object data = %v; want bucket %s name %q generation %d size %d", &d, bucket, name, attrs.Generation, len(data))
	}
	if d.GetKind() != "storage#object" || !strings.HasSuffix(d.GetId(), "/"+itoa(attrs.Generation)) || d.GetSelfLink() == "" || d.GetMediaLink() == "" {
		t.Errorf("kind/id/links = %q %q %q %q", d.GetKind(), d.GetId(), d.GetSelfLink(), d.GetMediaLink())
	}
	// As GCP sends it: int64 fields as JSON strings, camelCase keys.
	var raw map[string]any
	if err := json.Unmarshal(got.Body, &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"generation", "metageneration", "size"} {
		if _, ok := raw[k].(string); !ok {
			t.Errorf("%s = %#v, want a JSON string", k, raw[k])
		}
	}
	for _, k := range []string{"contentType", "timeCreated", "updated", "storageClass", "md5Hash", "crc32c"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("body lacks %s: %s", k, got.Body)
		}
	}
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

func TestStorageNonFinalizeAndOtherBucketsFiltered(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, gc, topic := e.gcs(t, "finalize", "delete", "metadataUpdate")
	b1, b2 := emulators.UniqueName(t), emulators.UniqueName(t)
	for _, b := range []string{b1, b2} {
		if err := gc.Bucket(b).Create(t.Context(), e.project, nil); err != nil {
			t.Fatal(err)
		}
	}
	tg := newTarget(t, nil)
	rs := newResults()
	o := fast()
	o.OnResult = rs.add
	b, err := New(e.client, o, Route{Kind: Storage, Topic: topic, Subscription: e.sub("uploads"), Target: tg.URL, Bucket: b1})
	if err != nil {
		t.Fatal(err)
	}
	start(t, b)

	write(t, gc, b2, "other-bucket.jpg", "image/jpeg", []byte("x")) // filtered: bucket
	write(t, gc, b1, "a.jpg", "image/jpeg", []byte("x"))            // delivered
	if err := gc.Bucket(b1).Object("a.jpg").Delete(t.Context()); err != nil {
		t.Fatal(err) // filtered: type
	}
	write(t, gc, b1, "z-last.jpg", "image/jpeg", []byte("x")) // delivered

	for range 2 {
		rs.waitFor(t, Delivered, 30*time.Second)
	}
	deadline := time.Now().Add(10 * time.Second)
	for rs.count(Filtered) < 2 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	if n := tg.count(); n != 2 {
		t.Errorf("target got %d events, want 2 (finalize in %s only)", n, b1)
	}
	if n := rs.count(Filtered); n != 2 {
		t.Errorf("%d filtered, want 2 (the delete and the other bucket's finalize)", n)
	}
	for _, r := range tg.reqs {
		if r.Header.Get("ce-type") != events.StorageFinalized || !strings.HasSuffix(r.Header.Get("ce-source"), "/"+b1) {
			t.Errorf("unexpected event %s %s", r.Header.Get("ce-type"), r.Header.Get("ce-source"))
		}
	}
	if st := b.Stats()["uploads"]; st.Delivered != 2 || st.Filtered != 2 {
		t.Errorf("stats %+v", st)
	}
}

func TestPubSubMessagePublished(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tg := newTarget(t, nil)
	b, err := New(e.client, fast(), Route{Kind: PubSub, Topic: e.topic("training-requests"), Subscription: e.sub("submit-training"), Target: tg.URL + "/SubmitTraining"})
	if err != nil {
		t.Fatal(err)
	}
	start(t, b)
	id := e.publish(t, e.topic("training-requests"), &pubsub.Message{Data: []byte(`{"epochs":2}`), Attributes: map[string]string{"by": "test"}})
	got := tg.wait(t, 20*time.Second)
	ev := got.parse(t)
	if ev.ID() != id || ev.Type() != events.PubSubPublished || ev.Source() != "//pubsub.googleapis.com/"+e.topic("training-requests") || ev.Subject() != "" {
		t.Errorf("event id=%q type=%q source=%q subject=%q; want id %q", ev.ID(), ev.Type(), ev.Source(), ev.Subject(), id)
	}
	var body struct {
		Message struct {
			Data        string            `json:"data"`
			Attributes  map[string]string `json:"attributes"`
			MessageID   string            `json:"messageId"`
			PublishTime time.Time         `json:"publishTime"`
		} `json:"message"`
		Subscription string `json:"subscription"`
	}
	if err := json.Unmarshal(got.Body, &body); err != nil {
		t.Fatal(err)
	}
	// data is base64, as Pub/Sub and Eventarc send it.
	if body.Message.Data != "eyJlcG9jaHMiOjJ9" || body.Message.Attributes["by"] != "test" || body.Message.MessageID != id ||
		body.Message.PublishTime.IsZero() || body.Subscription != e.sub("submit-training") {
		t.Errorf("body = %s", got.Body)
	}
	d, err := events.DecodeMessagePublished(got.Body)
	if err != nil || string(d.Message.Data) != `{"epochs":2}` {
		t.Errorf("DecodeMessagePublished = %+v, %v", d, err)
	}
}

func TestRetriesUntilSuccessWithSameID(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tg := newTarget(t, func(n int, _ *http.Request) int {
		return map[int]int{1: 500, 2: 503}[n] + map[bool]int{true: 200}[n > 2]
	})
	rs := newResults()
	o := fast()
	o.OnResult = rs.add
	o.MinBackoff, o.MaxBackoff = 100*time.Millisecond, 150*time.Millisecond
	b, err := New(e.client, o, Route{Kind: PubSub, Topic: e.topic("inbox"), Subscription: e.sub("inbox-sub"),
		Target: tg.URL, DeadLetterTopic: e.topic("dead")})
	if err != nil {
		t.Fatal(err)
	}
	start(t, b)
	if err := EnsureSubscription(t.Context(), e.client, e.sub("dead-sub"), e.topic("dead"), SubscriptionOptions{}); err != nil {
		t.Fatal(err)
	}
	id := e.publish(t, e.topic("inbox"), &pubsub.Message{Data: []byte("hi")})
	r := rs.waitFor(t, Delivered, 30*time.Second)
	if r.Attempt != 3 || r.MessageID != id {
		t.Errorf("delivered at attempt %d (message %s), want attempt 3 of %s", r.Attempt, r.MessageID, id)
	}
	time.Sleep(time.Second) // an unacked message would come back by now
	if n := tg.count(); n != 3 {
		t.Fatalf("target got %d deliveries, want 3", n)
	}
	for i, rq := range tg.reqs {
		if rq.Header.Get("ce-id") != id {
			t.Errorf("delivery %d has ce-id %q, want %q", i+1, rq.Header.Get("ce-id"), id)
		}
		if i > 0 {
			if gap := rq.At.Sub(tg.reqs[i-1].At); gap < 90*time.Millisecond {
				t.Errorf("delivery %d came %v after the previous one: no backoff", i+1, gap)
			}
		}
	}
	if got := e.drain(t, e.sub("dead-sub"), 0, 500*time.Millisecond); len(got) != 0 {
		t.Errorf("%d dead letters, want none", len(got))
	}
	if st := b.Stats()["inbox-sub"]; st.Delivered != 1 || st.Failed != 2 || st.DeadLettered != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestDeadLetterAfterMaxAttempts(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		attempts int
		refuse   bool // connection refused instead of HTTP 500
	}{
		{"default-5-http-500", 0, false},
		{"3-below-emulator-minimum", 3, false},
		{"2-connection-refused", 2, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			tg := newTarget(t, func(int, *http.Request) int { return 500 })
			url := tg.URL + "/PredictOnUpload"
			if tc.refuse {
				tg.Close()
			}
			rs := newResults()
			o := fast()
			o.MaxAttempts = tc.attempts
			o.OnResult = rs.add
			b, err := New(e.client, o, Route{Name: "uploads", Kind: PubSub, Topic: e.topic("inbox"), Subscription: e.sub("inbox-sub"),
				Target: url, DeadLetterTopic: e.topic("dead")})
			if err != nil {
				t.Fatal(err)
			}
			want := 5 // the default
			if tc.attempts != 0 {
				want = tc.attempts
			}
			start(t, b)
			if err := EnsureSubscription(t.Context(), e.client, e.sub("dead-sub"), e.topic("dead"), SubscriptionOptions{}); err != nil {
				t.Fatal(err)
			}
			id := e.publish(t, e.topic("inbox"), &pubsub.Message{Data: []byte("payload"), Attributes: map[string]string{"k": "v"}})
			r := rs.waitFor(t, DeadLettered, 30*time.Second)
			if r.Attempt != want {
				t.Errorf("dead-lettered at attempt %d, want %d", r.Attempt, want)
			}
			dead := e.drain(t, e.sub("dead-sub"), 0, 2*time.Second) // also: no further deliveries meanwhile
			if len(dead) != 1 {
				t.Fatalf("%d dead letters, want exactly 1", len(dead))
			}
			dl := dead[0]
			a := dl.Attributes
			if string(dl.Data) != "payload" || a["k"] != "v" || a[AttrAttempts] != itoa(int64(want)) || a[AttrMessageID] != id ||
				a[AttrRoute] != "uploads" || a[AttrTarget] != url || a[AttrSubscription] != e.sub("inbox-sub") || a[AttrReason] == "" {
				t.Errorf("dead letter data %q attributes %v", dl.Data, a)
			}
			if tc.refuse {
				if a[AttrStatus] != "" || !strings.Contains(a[AttrReason], "refused") {
					t.Errorf("reason %q status %q, want a connection error", a[AttrReason], a[AttrStatus])
				}
			} else {
				if a[AttrStatus] != "500" || !strings.Contains(a[AttrReason], "500") {
					t.Errorf("reason %q status %q, want HTTP 500", a[AttrReason], a[AttrStatus])
				}
				if n := tg.count(); n != want {
					t.Errorf("target got %d deliveries, want %d", n, want)
				}
			}
			if n := rs.count(Retrying) + rs.count(DeadLettered); n != want {
				t.Errorf("%d handled deliveries, want %d", n, want)
			}
		})
	}
}

func TestMalformedNotificationDeadLetteredAtOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tg := newTarget(t, nil)
	rs := newResults()
	o := fast()
	o.OnResult = rs.add
	b, err := New(e.client, o, Route{Kind: Storage, Topic: e.topic("notes"), Subscription: e.sub("notes-sub"), Target: tg.URL, DeadLetterTopic: e.topic("dead")})
	if err != nil {
		t.Fatal(err)
	}
	start(t, b)
	if err := EnsureSubscription(t.Context(), e.client, e.sub("dead-sub"), e.topic("dead"), SubscriptionOptions{}); err != nil {
		t.Fatal(err)
	}
	e.publish(t, e.topic("notes"), &pubsub.Message{Data: []byte("{"), Attributes: map[string]string{"eventType": "OBJECT_FINALIZE"}})
	r := rs.waitFor(t, DeadLettered, 20*time.Second)
	if r.Attempt != 1 {
		t.Errorf("attempt %d, want 1", r.Attempt)
	}
	dead := e.drain(t, e.sub("dead-sub"), 1, 10*time.Second)
	if len(dead) != 1 || !strings.HasPrefix(dead[0].Attributes[AttrReason], "malformed") {
		t.Errorf("dead letters %v", dead)
	}
	if tg.count() != 0 {
		t.Errorf("target got %d requests for a malformed message", tg.count())
	}
}

func TestNoDeadLetterTopicDrops(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tg := newTarget(t, func(int, *http.Request) int { return 400 })
	rs := newResults()
	o := fast()
	o.MaxAttempts = 2
	o.OnResult = rs.add
	b, err := New(e.client, o, Route{Kind: PubSub, Topic: e.topic("inbox"), Subscription: e.sub("inbox-sub"), Target: tg.URL})
	if err != nil {
		t.Fatal(err)
	}
	start(t, b)
	e.publish(t, e.topic("inbox"), &pubsub.Message{Data: []byte("x")})
	r := rs.waitFor(t, Dropped, 20*time.Second)
	time.Sleep(time.Second)
	if r.Attempt != 2 || tg.count() != 2 {
		t.Errorf("dropped at attempt %d after %d deliveries, want 2 and 2", r.Attempt, tg.count())
	}
}

func TestBoundedConcurrency(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var cur, peak atomic.Int32
	tg := newTarget(t, func(int, *http.Request) int {
		n := cur.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(150 * time.Millisecond)
		cur.Add(-1)
		return 204
	})
	rs := newResults()
	o := fast()
	o.Concurrency = 3
	o.OnResult = rs.add
	b, err := New(e.client, o, Route{Kind: PubSub, Topic: e.topic("inbox"), Subscription: e.sub("inbox-sub"), Target: tg.URL})
	if err != nil {
		t.Fatal(err)
	}
	start(t, b)
	p := e.client.Publisher(e.topic("inbox"))
	var rs2 []*pubsub.PublishResult
	for i := range 12 {
		rs2 = append(rs2, p.Publish(t.Context(), &pubsub.Message{Data: []byte{byte(i)}}))
	}
	for _, r := range rs2 {
		if _, err := r.Get(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	p.Stop()
	for range 12 {
		rs.waitFor(t, Delivered, 30*time.Second)
	}
	if pk := peak.Load(); pk != 3 {
		t.Errorf("peak concurrency %d, want 3", pk)
	}
}

func TestStopReleasesInFlightAndLeaksNothing(t *testing.T) {
	// Not parallel: it counts goroutines. Parallel tests are paused while it runs.
	e := newEnv(t)
	release := make(chan struct{})
	tg := newTarget(t, func(int, *http.Request) int { <-release; return 200 })
	if err := EnsureTopic(t.Context(), e.client, e.topic("inbox")); err != nil {
		t.Fatal(err)
	}
	http.DefaultClient.CloseIdleConnections()
	base := runtime.NumGoroutine()

	client, err := e.ps.Client(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	rs := newResults()
	o := fast()
	o.DrainTimeout = 300 * time.Millisecond
	o.OnResult = rs.add
	o.HTTPClient = &http.Client{Transport: &http.Transport{}}
	b, err := New(client, o, Route{Kind: PubSub, Topic: e.topic("inbox"), Subscription: e.sub("inbox-sub"), Target: tg.URL})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Setup(t.Context()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	e.publish(t, e.topic("inbox"), &pubsub.Message{Data: []byte("x")})
	for deadline := time.Now().Add(20 * time.Second); tg.count() == 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no request within 20s")
		}
	} // the POST is in flight and hangs
	t0 := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Errorf("stopping took %v", d)
	}
	if r := rs.waitFor(t, Released, time.Second); r.Attempt != 1 {
		t.Errorf("released %+v", r)
	}
	close(release)
	tg.Close()
	o.HTTPClient.CloseIdleConnections()
	if err := client.Close(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > base {
		buf := make([]byte, 1<<16)
		t.Errorf("%d goroutines after Run, %d before:\n%s", n, base, buf[:runtime.Stack(buf, true)])
	}
}
