package predict

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	cloudevents "github.com/cloudevents/sdk-go/v2"

	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/shared/emulators"
	"github.com/orchard-mlops/orchard/shared/events"
	"github.com/orchard-mlops/orchard/shared/model/modeltest"
	"github.com/orchard-mlops/orchard/shared/modelsource"
	"github.com/orchard-mlops/orchard/shared/onnxrt"
	"github.com/orchard-mlops/orchard/shared/preprocess/preprocesstest"
	"github.com/orchard-mlops/orchard/shared/pubsubx"
	"github.com/orchard-mlops/orchard/shared/results"
)

// ceHandler serves fn the way the Functions Framework does: the
// CloudEvents SDK's HTTP receiver, which acknowledges nil with 2xx and
// answers an error with 500 (so Eventarc redelivers).
func ceHandler(t testing.TB, fn func(context.Context, cloudevents.Event) error) http.Handler {
	t.Helper()
	p, err := cloudevents.NewHTTP()
	if err != nil {
		t.Fatal(err)
	}
	h, err := cloudevents.NewHTTPReceiveHandler(context.Background(), p, fn)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// finalizeBody is the object resource Eventarc puts in the event data
// (camelCase, 64-bit numbers as strings).
func finalizeBody(bucket, name string, gen, size int64, contentType string) []byte {
	b, _ := json.Marshal(map[string]any{
		"kind":           "storage#object",
		"id":             fmt.Sprintf("%s/%s/%d", bucket, name, gen),
		"selfLink":       "https://www.googleapis.com/storage/v1/b/" + bucket + "/o/" + name,
		"name":           name,
		"bucket":         bucket,
		"generation":     strconv.FormatInt(gen, 10),
		"metageneration": "1",
		"contentType":    contentType,
		"timeCreated":    "2026-03-01T10:00:00.000Z",
		"updated":        "2026-03-01T10:00:00.000Z",
		"storageClass":   "STANDARD",
		"size":           strconv.FormatInt(size, 10),
		"md5Hash":        "AAAAAAAAAAAAAAAAAAAAAA==",
		"crc32c":         "AAAAAA==",
		"etag":           "CAE=",
	})
	return b
}

// finalizeRequest is a binary-mode CloudEvent HTTP request as Eventarc
// sends it.
func finalizeRequest(id, bucket, name string, gen, size int64, contentType string, data []byte) *http.Request {
	if data == nil {
		data = finalizeBody(bucket, name, gen, size, contentType)
	}
	r := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(data))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("ce-specversion", "1.0")
	r.Header.Set("ce-id", id)
	r.Header.Set("ce-type", events.StorageFinalized)
	r.Header.Set("ce-source", "//storage.googleapis.com/projects/_/buckets/"+bucket)
	r.Header.Set("ce-subject", "objects/"+name)
	r.Header.Set("ce-time", "2026-03-01T10:00:00.123Z")
	// Eventarc carries the trace as the CloudEvents distributed-tracing
	// extension; the Functions Framework does not expose request headers.
	r.Header.Set("ce-traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	return r
}

type uploadEnv struct {
	*gcsEnv
	u *Uploader
	h http.Handler
}

func newUploadEnv(t *testing.T, cfg Config) *uploadEnv {
	t.Helper()
	g := newGCS(t, "uploads", "results")
	if cfg.ResultsBucket == "" {
		cfg.ResultsBucket = "results"
	}
	c := newClassifier(t, cfg, modeltest.Options{Version: "v5"})
	u := &Uploader{
		Service: &Service{Config: cfg, Provider: modelsource.Static{C: c}, Storage: blob.NewOpener(g.client), Log: quietLog()},
		Results: &Results{Store: blob.NewGCS(g.client, cfg.ResultsBucket, ""), Timeout: cfg.StorageTimeout},
	}
	return &uploadEnv{gcsEnv: g, u: u, h: ceHandler(t, u.HandleCloudEvent)}
}

// send delivers an event and returns the HTTP status.
func (e *uploadEnv) send(t testing.TB, r *http.Request) int {
	t.Helper()
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, r)
	return w.Code
}

func acked(code int) bool { return code >= 200 && code < 300 }

// result reads a result object and its attributes.
func (e *uploadEnv) result(t testing.TB, key string) (*results.Upload, blob.Attrs) {
	t.Helper()
	data, _, err := e.u.Results.Store.Read(context.Background(), key, 1<<20)
	if err != nil {
		t.Fatalf("reading result %s: %v", key, err)
	}
	a, err := e.u.Results.Store.Attributes(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	var r results.Upload
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatalf("result %s is not JSON: %v: %s", key, err, data)
	}
	return &r, a
}

func (e *uploadEnv) keys(t testing.TB) []string {
	t.Helper()
	as, err := blob.Collect(context.Background(), e.u.Results.Store, blob.ListOptions{}, blob.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range as {
		out = append(out, a.Key)
	}
	return out
}

func TestPredictOnUpload(t *testing.T) {
	cfg := testConfig()
	cfg.UploadPrefixes = []string{"in/", "photos/"}
	e := newUploadEnv(t, cfg)
	img := redJPEG(t)
	gen := e.put(t, "uploads", "in/apple.jpg", "image/jpeg", img)

	if code := e.send(t, finalizeRequest("ev-1", "uploads", "in/apple.jpg", gen, int64(len(img)), "image/jpeg", nil)); !acked(code) {
		t.Fatalf("first delivery: HTTP %d", code)
	}
	res, attrs := e.result(t, "in/apple.jpg.json")
	if res.Bucket != "uploads" || res.Name != "in/apple.jpg" || res.Generation != gen || res.URI != "gs://uploads/in/apple.jpg" {
		t.Errorf("source fields: %+v", res)
	}
	if res.Model == nil || res.Model.Name != "colours" || res.Model.Version != "v5" {
		t.Errorf("model = %+v", res.Model)
	}
	if res.Label != "red" || res.Score < 0.9 || len(res.Predictions) != 3 || res.Predictions[0].Label != "red" {
		t.Errorf("predictions: label %s score %v %v", res.Label, res.Score, res.Predictions)
	}
	if res.LatencyMS <= 0 || time.Since(res.Time) > time.Minute || res.EventID != "ev-1" || res.Size != int64(len(img)) || res.Error != "" {
		t.Errorf("latency %v, time %v, event %q, size %d, error %q", res.LatencyMS, res.Time, res.EventID, res.Size, res.Error)
	}
	if attrs.Metadata[results.SourceGenerationKey] != strconv.FormatInt(gen, 10) || attrs.ContentType != "application/json" {
		t.Errorf("result attributes: %+v", attrs)
	}

	t.Run("duplicate deliveries are no-ops", func(t *testing.T) {
		var wg sync.WaitGroup
		for i := range 6 {
			wg.Go(func() {
				if code := e.send(t, finalizeRequest(fmt.Sprint("ev-1-dup-", i), "uploads", "in/apple.jpg", gen, int64(len(img)), "image/jpeg", nil)); !acked(code) {
					t.Errorf("duplicate delivery: HTTP %d", code)
				}
			})
		}
		wg.Wait()
		_, again := e.result(t, "in/apple.jpg.json")
		if again.Generation != attrs.Generation {
			t.Errorf("result rewritten by a duplicate: generation %d → %d", attrs.Generation, again.Generation)
		}
	})

	t.Run("a new generation gets a new result, a stale event does not undo it", func(t *testing.T) {
		blue := bluePNG(t)
		gen2 := e.put(t, "uploads", "in/apple.jpg", "image/png", blue)
		if gen2 == gen {
			t.Fatal("overwrite kept the generation")
		}
		if code := e.send(t, finalizeRequest("ev-2", "uploads", "in/apple.jpg", gen2, int64(len(blue)), "image/png", nil)); !acked(code) {
			t.Fatalf("HTTP %d", code)
		}
		res2, attrs2 := e.result(t, "in/apple.jpg.json")
		if res2.Generation != gen2 || res2.Label != "blue" || attrs2.Metadata[results.SourceGenerationKey] != strconv.FormatInt(gen2, 10) {
			t.Fatalf("after overwrite: generation %d label %s, want %d blue", res2.Generation, res2.Label, gen2)
		}
		// The first generation's event arrives late (redelivery).
		o, err := e.u.Handle(context.Background(), mustEvent(t, finalizeRequest("ev-1-late", "uploads", "in/apple.jpg", gen, int64(len(img)), "image/jpeg", nil)))
		if err != nil || o != OutcomeStale {
			t.Fatalf("late event for the old generation: %v, %v; want stale", o, err)
		}
		res3, attrs3 := e.result(t, "in/apple.jpg.json")
		if res3.Generation != gen2 || attrs3.Generation != attrs2.Generation {
			t.Errorf("stale event replaced the newer result")
		}
	})

	if got := fmt.Sprint(e.keys(t)); got != "[in/apple.jpg.json]" {
		t.Errorf("results bucket holds %s", got)
	}
}

// mustEvent turns a request into the event the SDK would decode.
func mustEvent(t testing.TB, r *http.Request) cloudevents.Event {
	t.Helper()
	var got cloudevents.Event
	h := ceHandler(t, func(_ context.Context, ev cloudevents.Event) error { got = ev; return nil })
	h.ServeHTTP(httptest.NewRecorder(), r)
	if got.ID() == "" {
		t.Fatal("request did not decode into an event")
	}
	return got
}

// TestPredictOnUploadConcurrentOverwrite races deliveries of two
// generations: exactly the newer one must win.
func TestPredictOnUploadConcurrentGenerations(t *testing.T) {
	e := newUploadEnv(t, testConfig())
	red, blue := redJPEG(t), bluePNG(t)
	gen1 := e.put(t, "uploads", "x.jpg", "image/jpeg", red)
	// Keep generation 1 readable: events name a generation, and without
	// object versioning only the live one can be read, so put the newer one
	// under the same name only after delivering gen1 in the race below.
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			e.send(t, finalizeRequest(fmt.Sprint("a", i), "uploads", "x.jpg", gen1, int64(len(red)), "image/jpeg", nil))
		})
	}
	wg.Wait()
	gen2 := e.put(t, "uploads", "x.jpg", "image/png", blue)
	for i := range 4 {
		wg.Go(func() {
			e.send(t, finalizeRequest(fmt.Sprint("b", i), "uploads", "x.jpg", gen2, int64(len(blue)), "image/png", nil))
		})
		wg.Go(func() {
			e.send(t, finalizeRequest(fmt.Sprint("c", i), "uploads", "x.jpg", gen1, int64(len(red)), "image/jpeg", nil))
		})
	}
	wg.Wait()
	res, _ := e.result(t, "x.jpg.json")
	if res.Generation != gen2 || res.Label != "blue" {
		t.Errorf("result describes generation %d (%s), want %d (blue)", res.Generation, res.Label, gen2)
	}
}

func TestPredictOnUploadPermanentFailures(t *testing.T) {
	cfg := testConfig()
	cfg.MaxImageBytes = 8 << 10
	e := newUploadEnv(t, cfg)
	big := bytes.Repeat([]byte{0xFF, 0xD8, 0xFF}, 4<<10) // 12 KiB
	corrupt := redJPEG(t)[:150]
	genCorrupt := e.put(t, "uploads", "corrupt.jpg", "image/jpeg", corrupt)
	genBig := e.put(t, "uploads", "big.jpg", "image/jpeg", big)
	genLiar := e.put(t, "uploads", "liar.jpg", "image/jpeg", big)
	genText := e.put(t, "uploads", "text.png", "image/png", []byte("this is text"))
	genHostile := e.put(t, "uploads", "bomb.png", "image/png", preprocesstest.HostilePNG(20000, 20000))

	tests := []struct {
		name, object string
		gen, size    int64
		wantKind     string
	}{
		{"corrupt image", "corrupt.jpg", genCorrupt, int64(len(corrupt)), KindCorrupt},
		{"declared size over the cap: refused before reading", "big.jpg", genBig, int64(len(big)), KindTooLarge},
		{"declared size lies: the read stops at the cap", "liar.jpg", genLiar, 10, KindTooLarge},
		{"not an image", "text.png", genText, 12, KindUnsupported},
		{"decompression bomb", "bomb.png", genHostile, 100, KindTooLarge},
		{"object gone", "deleted.jpg", 1234567, 100, KindNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for range 2 { // the second delivery is a duplicate
				if code := e.send(t, finalizeRequest("ev-"+tt.object, "uploads", tt.object, tt.gen, tt.size, "image/jpeg", nil)); !acked(code) {
					t.Fatalf("permanent failure not acknowledged: HTTP %d", code)
				}
			}
			res, attrs := e.result(t, tt.object+results.ErrorSuffix)
			if res.Kind != tt.wantKind || res.Error == "" || res.Generation != tt.gen || res.Name != tt.object || len(res.Predictions) != 0 {
				t.Errorf("error result %+v, want kind %s for generation %d", res, tt.wantKind, tt.gen)
			}
			if attrs.Metadata[results.SourceGenerationKey] != strconv.FormatInt(tt.gen, 10) {
				t.Errorf("error result metadata %v", attrs.Metadata)
			}
			if _, err := e.u.Results.Store.Attributes(context.Background(), tt.object+results.ResultSuffix); err == nil {
				t.Errorf("a result was written for a failed image")
			}
		})
	}
}

func TestPredictOnUploadSkipsAndMalformed(t *testing.T) {
	cfg := testConfig()
	cfg.UploadPrefixes = []string{"in/"}
	cfg.UploadBucket = "uploads"
	e := newUploadEnv(t, cfg)
	img := redJPEG(t)
	gen := e.put(t, "uploads", "in/a.jpg", "image/jpeg", img)
	genOut := e.put(t, "uploads", "elsewhere/a.jpg", "image/jpeg", img)
	genTxt := e.put(t, "uploads", "in/a.txt", "text/plain", []byte("hi"))
	bad := func(r *http.Request, f func(*http.Request)) *http.Request { f(r); return r }

	tests := []struct {
		name string
		req  *http.Request
		want Outcome
	}{
		{"outside the prefixes", finalizeRequest("1", "uploads", "elsewhere/a.jpg", genOut, 10, "image/jpeg", nil), OutcomeSkipped},
		{"content type not an image", finalizeRequest("2", "uploads", "in/a.txt", genTxt, 2, "text/plain", nil), OutcomeSkipped},
		{"another bucket than UPLOAD_BUCKET", finalizeRequest("3", "other", "in/a.jpg", gen, 10, "image/jpeg", nil), OutcomeSkipped},
		{"from the results bucket", finalizeRequest("4", "results", "in/a.jpg.json", gen, 10, "image/jpeg", nil), OutcomeRefused},
		{"data is not JSON", finalizeRequest("5", "uploads", "in/a.jpg", gen, 10, "image/jpeg", []byte("{not json")), OutcomeMalformed},
		{"no bucket or name anywhere", bad(finalizeRequest("6", "uploads", "in/a.jpg", gen, 10, "image/jpeg", []byte(`{"generation":"5"}`)), func(r *http.Request) {
			r.Header.Set("ce-source", "//storage.googleapis.com/projects/_/buckets/")
			r.Header.Del("ce-subject")
		}), OutcomeMalformed},
		{"no generation", finalizeRequest("7", "uploads", "in/a.jpg", gen, 10, "image/jpeg", []byte(`{"bucket":"uploads","name":"in/a.jpg"}`)), OutcomeMalformed},
		{"another event type", bad(finalizeRequest("8", "uploads", "in/a.jpg", gen, 10, "image/jpeg", nil), func(r *http.Request) {
			r.Header.Set("ce-type", "google.cloud.storage.object.v1.deleted")
		}), OutcomeSkipped},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.req
			body, _ := readAllBody(r)
			o, err := e.u.Handle(context.Background(), mustEvent(t, cloneRequest(r, body)))
			if err != nil || o != tt.want {
				t.Errorf("Handle = %v, %v; want %v, nil", o, err, tt.want)
			}
			if code := e.send(t, cloneRequest(r, body)); !acked(code) {
				t.Errorf("not acknowledged: HTTP %d", code)
			}
		})
	}
	if keys := e.keys(t); len(keys) != 0 {
		t.Errorf("results written for skipped events: %v", keys)
	}
}

func readAllBody(r *http.Request) ([]byte, error) {
	var b bytes.Buffer
	_, err := b.ReadFrom(r.Body)
	return b.Bytes(), err
}

func cloneRequest(r *http.Request, body []byte) *http.Request {
	c := r.Clone(context.Background())
	c.Body = http.NoBody
	if body != nil {
		c.Body = ioNopCloser(bytes.NewReader(body))
	}
	c.ContentLength = int64(len(body))
	return c
}

// TestPredictOnUploadRefusesResultsInUploadBucket: RESULTS_BUCKET equal
// to UPLOAD_BUCKET is a configuration error; nothing is read or written,
// and the event is not acknowledged (so it survives until the deployment
// is fixed).
func TestPredictOnUploadRefusesResultsInUploadBucket(t *testing.T) {
	cfg := testConfig()
	cfg.ResultsBucket, cfg.UploadBucket = "uploads", "uploads"
	if err := cfg.ValidateUpload(); err == nil {
		t.Fatal("ValidateUpload accepted RESULTS_BUCKET == UPLOAD_BUCKET")
	}
	e := newUploadEnv(t, cfg)
	img := redJPEG(t)
	gen := e.put(t, "uploads", "a.jpg", "image/jpeg", img)
	if code := e.send(t, finalizeRequest("1", "uploads", "a.jpg", gen, int64(len(img)), "image/jpeg", nil)); acked(code) {
		t.Errorf("misconfigured function acknowledged the event (HTTP %d)", code)
	}
	objs, err := blob.Collect(context.Background(), blob.NewGCS(e.client, "uploads", ""), blob.ListOptions{}, blob.Limits{})
	if err != nil || len(objs) != 1 {
		t.Errorf("upload bucket holds %v (%v), want only a.jpg", objs, err)
	}
	// The App refuses to build the uploader at all.
	app := NewApp(cfg, AppOptions{Provider: modelsource.Static{}, Storage: e.client})
	if _, err := app.Uploader(); err == nil {
		t.Error("App.Uploader accepted RESULTS_BUCKET == UPLOAD_BUCKET")
	}
	cfg.ResultsBucket = ""
	if err := cfg.ValidateUpload(); err == nil {
		t.Error("ValidateUpload accepted an empty RESULTS_BUCKET")
	}
}

func TestPredictOnUploadTransientErrors(t *testing.T) {
	cfg := testConfig()
	cfg.StorageTimeout = 500 * time.Millisecond
	e := newUploadEnv(t, cfg)
	img := redJPEG(t)
	gen := e.put(t, "uploads", "a.jpg", "image/jpeg", img)

	t.Run("model not loadable yet", func(t *testing.T) {
		u, svc := *e.u, *e.u.Service
		u.Service = &svc
		u.Provider = modelsource.NewLazy(func(context.Context) (*onnxrt.Classifier, error) {
			return nil, fmt.Errorf("model.json: %w", blob.ErrNotFound)
		}, modelsource.Backoff{})
		h := ceHandler(t, u.HandleCloudEvent)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, finalizeRequest("1", "uploads", "a.jpg", gen, int64(len(img)), "image/jpeg", nil))
		if w.Code != http.StatusInternalServerError {
			t.Errorf("HTTP %d, want 500 (redeliver)", w.Code)
		}
	})
	t.Run("storage down", func(t *testing.T) {
		if err := e.srv.Close(); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		o, err := e.u.Handle(ctx, mustEvent(t, finalizeRequest("2", "uploads", "a.jpg", gen, int64(len(img)), "image/jpeg", nil)))
		if err == nil || o != OutcomeRetry || !blob.IsTransient(err) {
			t.Errorf("Handle with storage down = %v, %v; want a transient error", o, err)
		}
		if code := e.send(t, finalizeRequest("3", "uploads", "a.jpg", gen, int64(len(img)), "image/jpeg", nil)); code != http.StatusInternalServerError {
			t.Errorf("HTTP %d, want 500 (redeliver)", code)
		}
	})
}

// TestPredictOnUploadPublishes checks PREDICTIONS_TOPIC against the real
// Pub/Sub emulator: a subscriber receives the result.
func TestPredictOnUploadPublishes(t *testing.T) {
	ps := emulators.PubSubForTest(t, emulators.UniqueName(t))
	admin := ps.ClientForTest(t)
	topic, sub := emulators.UniqueName(t), emulators.UniqueName(t)
	if _, err := admin.TopicAdminClient.CreateTopic(t.Context(), &pubsubpb.Topic{Name: ps.TopicName(topic)}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.SubscriptionAdminClient.CreateSubscription(t.Context(), &pubsubpb.Subscription{
		Name: ps.SubscriptionName(sub), Topic: ps.TopicName(topic), AckDeadlineSeconds: 10,
	}); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	cfg.Topic, cfg.Project = topic, ps.Project
	e := newUploadEnv(t, cfg)
	pub, err := pubsubx.Dial(t.Context(), cfg.Project, cfg.Topic, ps.ClientOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pub.Close() })
	e.u.Publisher = pub

	img := greenJPEG(t)
	gen := e.put(t, "uploads", "leaf.jpg", "image/jpeg", img)
	if code := e.send(t, finalizeRequest("ev-pub", "uploads", "leaf.jpg", gen, int64(len(img)), "image/jpeg", nil)); !acked(code) {
		t.Fatalf("HTTP %d", code)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var got *pubsub.Message
	err = admin.Subscriber(sub).Receive(ctx, func(_ context.Context, m *pubsub.Message) {
		m.Ack()
		if got == nil {
			got = m
		}
		cancel()
	})
	if err != nil {
		t.Fatal(err)
	}
	if got == nil {
		t.Fatal("no message received")
	}
	var res results.Upload
	if err := json.Unmarshal(got.Data, &res); err != nil {
		t.Fatalf("message is not a result: %v: %s", err, got.Data)
	}
	if res.Label != "green" || res.Generation != gen || res.Name != "leaf.jpg" || res.Model.Version != "v5" {
		t.Errorf("message = %+v", res)
	}
	wantKey := fmt.Sprintf("uploads/leaf.jpg#%d", gen)
	if got.Attributes["idempotency_key"] != wantKey || got.Attributes["label"] != "green" {
		t.Errorf("attributes = %v, want idempotency_key %s", got.Attributes, wantKey)
	}
}

// failingPublisher fails the first n publishes.
type failingPublisher struct {
	mu    sync.Mutex
	fails int
	sent  [][]byte
}

func (f *failingPublisher) Publish(_ context.Context, data []byte, _ map[string]string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fails > 0 {
		f.fails--
		return fmt.Errorf("pubsub: unavailable")
	}
	f.sent = append(f.sent, data)
	return nil
}

// TestPredictOnUploadPublishRetry: a failed publish returns an error, and
// the redelivery publishes the stored result without writing a second one.
func TestPredictOnUploadPublishRetry(t *testing.T) {
	e := newUploadEnv(t, testConfig())
	fp := &failingPublisher{fails: 1}
	e.u.Publisher = fp
	img := redJPEG(t)
	gen := e.put(t, "uploads", "a.jpg", "image/jpeg", img)
	if code := e.send(t, finalizeRequest("1", "uploads", "a.jpg", gen, int64(len(img)), "image/jpeg", nil)); code != http.StatusInternalServerError {
		t.Fatalf("failed publish: HTTP %d, want 500", code)
	}
	_, a1 := e.result(t, "a.jpg.json")
	if code := e.send(t, finalizeRequest("1", "uploads", "a.jpg", gen, int64(len(img)), "image/jpeg", nil)); !acked(code) {
		t.Fatalf("redelivery: HTTP %d", code)
	}
	_, a2 := e.result(t, "a.jpg.json")
	if a1.Generation != a2.Generation {
		t.Error("redelivery rewrote the result")
	}
	if len(fp.sent) != 1 {
		t.Fatalf("%d messages published, want 1", len(fp.sent))
	}
	var res results.Upload
	if err := json.Unmarshal(fp.sent[0], &res); err != nil || res.Label != "red" || res.Generation != gen {
		t.Errorf("republished %s (%v)", fp.sent[0], err)
	}
}

func TestContentTypeMatches(t *testing.T) {
	for _, tt := range []struct {
		patterns []string
		ct       string
		want     bool
	}{
		{DefaultContentTypes, "image/jpeg", true},
		{DefaultContentTypes, "IMAGE/PNG; foo=bar", true},
		{DefaultContentTypes, "image/gif", false},
		{DefaultContentTypes, "", false},
		{[]string{"image/*"}, "image/heic", true},
		{[]string{"image/*"}, "", false},
		{[]string{"*"}, "", true},
		{nil, "text/plain", true},
	} {
		if got := contentTypeMatches(tt.patterns, tt.ct); got != tt.want {
			t.Errorf("contentTypeMatches(%v, %q) = %v", tt.patterns, tt.ct, got)
		}
	}
}

func ioNopCloser(r *bytes.Reader) io.ReadCloser { return io.NopCloser(r) }

// TestPredictOnUploadNameCollision: object "a.error"'s result and object
// "a"'s error file share the name a.error.json; neither may overwrite the
// other.
func TestPredictOnUploadNameCollision(t *testing.T) {
	cfg := testConfig()
	cfg.ContentTypes = []string{"*"}
	e := newUploadEnv(t, cfg)
	img := redJPEG(t)
	genA := e.put(t, "uploads", "a", "image/jpeg", img[:50]) // corrupt: writes a.error.json
	genB := e.put(t, "uploads", "a.error", "image/jpeg", img)
	if code := e.send(t, finalizeRequest("1", "uploads", "a", genA, 50, "image/jpeg", nil)); !acked(code) {
		t.Fatal(code)
	}
	o, err := e.u.Handle(context.Background(), mustEvent(t, finalizeRequest("2", "uploads", "a.error", genB, int64(len(img)), "image/jpeg", nil)))
	if err != nil || o != OutcomeCollision {
		t.Fatalf("Handle = %v, %v; want collision", o, err)
	}
	res, _ := e.result(t, "a.error.json")
	if res.Name != "a" || res.Kind != KindCorrupt {
		t.Errorf("a.error.json was overwritten: %+v", res)
	}
}

// TestPredictOnUploadConcurrentFirstDeliveries: deliveries of one new
// generation racing past the duplicate check; the conditional write lets
// exactly one of them write (and publish).
func TestPredictOnUploadConcurrentFirstDeliveries(t *testing.T) {
	e := newUploadEnv(t, testConfig())
	fp := &failingPublisher{}
	e.u.Publisher = fp
	img := redJPEG(t)
	gen := e.put(t, "uploads", "race.jpg", "image/jpeg", img)
	ev := mustEvent(t, finalizeRequest("r", "uploads", "race.jpg", gen, int64(len(img)), "image/jpeg", nil))
	const n = 8
	outcomes := make(chan Outcome, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			<-start
			o, err := e.u.Handle(context.Background(), ev)
			if err != nil {
				t.Errorf("Handle: %v", err)
			}
			outcomes <- o
		})
	}
	close(start)
	wg.Wait()
	close(outcomes)
	count := map[Outcome]int{}
	for o := range outcomes {
		count[o]++
	}
	if count[OutcomeWritten] != 1 || count[OutcomeDuplicate] != n-1 {
		t.Errorf("outcomes %v, want 1 written and %d duplicates", count, n-1)
	}
	// Duplicates found after the write republish (at-least-once); those
	// found only by the failed conditional write do not. Exactly one
	// message comes from the write itself.
	if len(fp.sent) < 1 {
		t.Errorf("%d messages published, want at least 1", len(fp.sent))
	}
}
