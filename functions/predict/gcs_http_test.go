package predict

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/shared/model/modeltest"
)

// TestPredictJSON classifies objects in a real fake-gcs-server, by URI and
// by prefix, including the evaluation of labelled folders.
func TestPredictJSON(t *testing.T) {
	g := newGCS(t, "imgs", "private")
	red, green, blue := redJPEG(t), greenJPEG(t), bluePNG(t)
	objects := []struct {
		name, ct string
		data     []byte
	}{
		{"eval/red/1.jpg", "image/jpeg", red},
		{"eval/red/2.jpg", "image/jpeg", modeltest.JPEG(t, modeltest.Solid(modeltest.Red, 17, 33))},
		{"eval/green/1.jpg", "image/jpeg", green},
		{"eval/blue/1.png", "image/png", blue},
		{"eval/README.txt", "text/plain", []byte("not an image: filtered out of the listing")},
		{"mixed/red/ok.jpg", "image/jpeg", red},
		{"mixed/red/actually-blue.png", "", blue}, // no content type: recognised by extension
		{"mixed/green/broken.jpg", "image/jpeg", red[:100]},
		{"plain/a.jpg", "image/jpeg", red},
		{"plain/cats/b.png", "image/png", blue},
		{"plain/red/c.jpg", "image/jpeg", red},
		{"many/1.jpg", "image/jpeg", red},
		{"many/2.jpg", "image/jpeg", red},
		{"many/3.jpg", "image/jpeg", red},
		{"big/huge.jpg", "image/jpeg", append(append([]byte{}, red...), make([]byte, 70<<10)...)},
	}
	for _, o := range objects {
		g.put(t, "imgs", o.name, o.ct, o.data)
	}
	g.put(t, "private", "secret.jpg", "image/jpeg", red)

	cfg := testConfig()
	cfg.MaxObjects = 5
	cfg.MaxImageBytes = 64 << 10
	cfg.AllowedBuckets = []string{"imgs"}
	s := newServer(t, cfg, blob.NewOpener(g.client), nil)

	type item struct{ uri, label, kind, expected string }
	tests := []struct {
		name         string
		body         string
		wantStatus   int
		want         []item
		wantAccuracy *float64
		wantMatrix   string
		wantEval     int
		wantErrSub   string
	}{
		{
			name:       "uris",
			body:       `{"uris":["gs://imgs/eval/red/1.jpg","gs://imgs/missing.jpg","file:///etc/passwd","gs://imgs/eval/README.txt","gs://imgs/eval/blue/1.png","gs://private/secret.jpg","gs://imgs/big/huge.jpg","gs://imgs/eval/"]}`,
			wantStatus: 400, // 8 > MaxObjects
			wantErrSub: "at most 5",
		},
		{
			name:       "uris in order, per-object errors",
			body:       `{"uris":["gs://imgs/eval/red/1.jpg","gs://imgs/missing.jpg","file:///etc/passwd","gs://imgs/eval/README.txt","gs://imgs/eval/blue/1.png"]}`,
			wantStatus: 200,
			want: []item{
				{uri: "gs://imgs/eval/red/1.jpg", label: "red"},
				{uri: "gs://imgs/missing.jpg", kind: KindNotFound},
				{uri: "file:///etc/passwd", kind: KindBadRequest},
				{uri: "gs://imgs/eval/README.txt", kind: KindUnsupported},
				{uri: "gs://imgs/eval/blue/1.png", label: "blue"},
			},
		},
		{
			name:       "uris: bucket allow-list, byte cap, folder",
			body:       `{"uris":["gs://private/secret.jpg","gs://imgs/big/huge.jpg","gs://imgs/eval/"]}`,
			wantStatus: 200,
			want: []item{
				{uri: "gs://private/secret.jpg", kind: KindForbidden},
				{uri: "gs://imgs/big/huge.jpg", kind: KindTooLarge},
				{uri: "gs://imgs/eval/", kind: KindBadRequest},
			},
		},
		{
			name:       "labelled prefix: accuracy 1 and a diagonal confusion matrix",
			body:       `{"prefix":"gs://imgs/eval/"}`,
			wantStatus: 200,
			want: []item{
				{uri: "gs://imgs/eval/blue/1.png", label: "blue", expected: "blue"},
				{uri: "gs://imgs/eval/green/1.jpg", label: "green", expected: "green"},
				{uri: "gs://imgs/eval/red/1.jpg", label: "red", expected: "red"},
				{uri: "gs://imgs/eval/red/2.jpg", label: "red", expected: "red"},
			},
			wantAccuracy: ptr(1.0),
			wantMatrix:   "[[2 0 0] [0 1 0] [0 0 1]]",
			wantEval:     4,
		},
		{
			name:       "prefix without trailing slash, with a mistake and a broken image",
			body:       `{"prefix":"gs://imgs/mixed"}`,
			wantStatus: 200,
			want: []item{
				{uri: "gs://imgs/mixed/green/broken.jpg", kind: KindCorrupt, expected: "green"},
				{uri: "gs://imgs/mixed/red/actually-blue.png", label: "blue", expected: "red"},
				{uri: "gs://imgs/mixed/red/ok.jpg", label: "red", expected: "red"},
			},
			wantAccuracy: ptr(0.5),
			wantMatrix:   "[[1 0 1] [0 0 0] [0 0 0]]",
			wantEval:     2,
		},
		{
			name:       "unlabelled prefix: no accuracy",
			body:       `{"prefix":"gs://imgs/plain/"}`,
			wantStatus: 200,
			want: []item{
				{uri: "gs://imgs/plain/a.jpg", label: "red"},
				{uri: "gs://imgs/plain/cats/b.png", label: "blue"},
				{uri: "gs://imgs/plain/red/c.jpg", label: "red"},
			},
		},
		{name: "prefix over MAX_OBJECTS", body: `{"prefix":"gs://imgs/"}`, wantStatus: 400, wantErrSub: "more than 5"},
		{name: "empty prefix", body: `{"prefix":"gs://imgs/nothing-here/"}`, wantStatus: 400, wantErrSub: "no images"},
		{name: "prefix in a bucket not allowed", body: `{"prefix":"gs://private/"}`, wantStatus: 403},
		{name: "prefix not gs", body: `{"prefix":"/etc/"}`, wantStatus: 400},
		{name: "both uris and prefix", body: `{"uris":["gs://imgs/plain/a.jpg"],"prefix":"gs://imgs/plain/"}`, wantStatus: 400},
		{name: "neither", body: `{}`, wantStatus: 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, body := do(t, s, post("/?top_k=2", "application/json", []byte(tt.body)))
			if w.Code != tt.wantStatus {
				t.Fatalf("status %d, want %d: %s", w.Code, tt.wantStatus, w.Body)
			}
			if tt.wantStatus != http.StatusOK {
				if msg := fmt.Sprint(body["error"]); !strings.Contains(msg, tt.wantErrSub) {
					t.Errorf("error %q does not mention %q", msg, tt.wantErrSub)
				}
				return
			}
			results := body["results"].([]any)
			if len(results) != len(tt.want) {
				t.Fatalf("%d results, want %d: %s", len(results), len(tt.want), w.Body)
			}
			for i, wt := range tt.want {
				r := results[i].(map[string]any)
				if r["uri"] != wt.uri {
					t.Errorf("result %d: uri %v, want %s", i, r["uri"], wt.uri)
				}
				if got, _ := r["expected"].(string); got != wt.expected {
					t.Errorf("%s: expected %q, want %q", wt.uri, got, wt.expected)
				}
				if wt.kind != "" {
					if r["kind"] != wt.kind || r["error"] == nil {
						t.Errorf("%s: %v, want an error of kind %s", wt.uri, r, wt.kind)
					}
					continue
				}
				preds := predictions(t, r["predictions"])
				if len(preds) != 2 || preds[0].Label != wt.label {
					t.Errorf("%s: %v, want %s first of 2", wt.uri, preds, wt.label)
				}
			}
			acc, hasAcc := body["accuracy"].(float64)
			switch {
			case tt.wantAccuracy == nil && (hasAcc || body["confusion_matrix"] != nil):
				t.Errorf("accuracy %v / matrix %v reported for an unlabelled prefix", body["accuracy"], body["confusion_matrix"])
			case tt.wantAccuracy != nil:
				if !hasAcc || acc != *tt.wantAccuracy {
					t.Errorf("accuracy %v, want %v", body["accuracy"], *tt.wantAccuracy)
				}
				cm := body["confusion_matrix"].(map[string]any)
				if fmt.Sprint(cm["labels"]) != "[red green blue]" || fmt.Sprint(cm["matrix"]) != tt.wantMatrix {
					t.Errorf("confusion matrix %v, want labels [red green blue] and %s", cm, tt.wantMatrix)
				}
				if body["evaluated"] != float64(tt.wantEval) {
					t.Errorf("evaluated %v, want %d", body["evaluated"], tt.wantEval)
				}
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// TestPredictJSONStorageDown: a storage outage is reported per object (and
// as a 502 for a listing), never as a crash.
func TestPredictJSONStorageDown(t *testing.T) {
	g := newGCS(t, "imgs")
	g.put(t, "imgs", "a.jpg", "image/jpeg", redJPEG(t))
	cfg := testConfig()
	cfg.AllowedBuckets = []string{"imgs"}
	s := newServer(t, cfg, blob.NewOpener(g.client), nil)
	if err := g.srv.Close(); err != nil {
		t.Fatal(err)
	}
	w, body := do(t, s, post("/", "application/json", []byte(`{"uris":["gs://imgs/a.jpg"]}`)))
	if w.Code != 200 {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	if r := body["results"].([]any)[0].(map[string]any); r["kind"] != KindStorage {
		t.Errorf("result %v, want kind %s", r, KindStorage)
	}
	w, body = do(t, s, post("/", "application/json", []byte(`{"prefix":"gs://imgs/"}`)))
	if w.Code != http.StatusBadGateway || body["kind"] != KindStorage {
		t.Errorf("listing with storage down: %d %s, want 502", w.Code, w.Body)
	}
}

// TestPredictAllowListFailsClosed: with PREDICT_ALLOWED_BUCKETS unset, no
// bucket can be read through a JSON request (the account can read the
// registry; callers must not browse it).
func TestPredictAllowListFailsClosed(t *testing.T) {
	g := newGCS(t, "imgs")
	g.put(t, "imgs", "a.jpg", "image/jpeg", redJPEG(t))
	s := newServer(t, testConfig(), blob.NewOpener(g.client), nil)
	w, body := do(t, s, post("/", "application/json", []byte(`{"uris":["gs://imgs/a.jpg"]}`)))
	if res := body["results"].([]any)[0].(map[string]any); w.Code != 200 || res["kind"] != "forbidden" {
		t.Errorf("status %d, result %v: want the object refused as forbidden", w.Code, res)
	}
	if w, _ := do(t, s, post("/", "application/json", []byte(`{"prefix":"gs://imgs/"}`))); w.Code != http.StatusForbidden {
		t.Errorf("listing without an allow-list: %d, want 403", w.Code)
	}
}
