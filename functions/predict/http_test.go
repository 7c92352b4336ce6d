package predict

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/orchard-mlops/orchard/shared/model"
	"github.com/orchard-mlops/orchard/shared/model/modeltest"
	"github.com/orchard-mlops/orchard/shared/modelsource"
	"github.com/orchard-mlops/orchard/shared/onnxrt"
	"github.com/orchard-mlops/orchard/shared/preprocess/preprocesstest"
)

// do sends a request to h and decodes the JSON answer into a map.
func do(t testing.TB, h http.Handler, r *http.Request) (*httptest.ResponseRecorder, map[string]any) {
	t.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	var body map[string]any
	if r.Method != http.MethodHead {
		if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Fatalf("%s %s: Content-Type %q, want JSON; body %s", r.Method, r.URL, ct, w.Body)
		}
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
			t.Fatalf("%s %s: answer is not JSON: %v: %s", r.Method, r.URL, err, w.Body)
		}
	}
	return w, body
}

func post(target, contentType string, body []byte) *http.Request {
	r := httptest.NewRequest(http.MethodPost, target, bytes.NewReader(body))
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	return r
}

// predictions extracts [(label, score)] from a JSON predictions array.
func predictions(t testing.TB, v any) []model.Prediction {
	t.Helper()
	arr, ok := v.([]any)
	if !ok {
		t.Fatalf("predictions = %#v, want an array", v)
	}
	var out []model.Prediction
	for _, p := range arr {
		m := p.(map[string]any)
		out = append(out, model.Prediction{Label: m["label"].(string), Score: m["score"].(float64)})
	}
	return out
}

// checkSorted fails unless preds are sorted by descending score and sum to
// at most 1.
func checkSorted(t testing.TB, preds []model.Prediction) {
	t.Helper()
	sum := 0.0
	for i, p := range preds {
		sum += p.Score
		if i > 0 && p.Score > preds[i-1].Score {
			t.Errorf("predictions not sorted by score: %v", preds)
		}
	}
	if sum > 1+1e-9 {
		t.Errorf("scores sum to %v > 1", sum)
	}
}

func TestPredictHTTP(t *testing.T) {
	cfg := testConfig()
	cfg.MaxBodyBytes = 64 << 10
	s := newServer(t, cfg, nil, nil)
	big := bytes.Repeat([]byte{0xFF}, 100<<10)
	tests := []struct {
		name       string
		req        *http.Request
		wantStatus int
		wantLabel  string // top-1 label for 200 answers
		wantN      int    // number of predictions for 200 answers
		wantKind   string // kind for error answers
		wantErrSub string // substring of the error
	}{
		{name: "jpeg", req: post("/", "image/jpeg", redJPEG(t)), wantStatus: 200, wantLabel: "red", wantN: 3},
		{name: "png", req: post("/", "image/png", bluePNG(t)), wantStatus: 200, wantLabel: "blue", wantN: 3},
		{name: "content type with parameters", req: post("/", "image/jpeg; charset=binary", greenJPEG(t)), wantStatus: 200, wantLabel: "green", wantN: 3},
		{name: "octet-stream is sniffed", req: post("/", "application/octet-stream", bluePNG(t)), wantStatus: 200, wantLabel: "blue", wantN: 3},
		{name: "top_k=1", req: post("/?top_k=1", "image/jpeg", redJPEG(t)), wantStatus: 200, wantLabel: "red", wantN: 1},
		{name: "top_k=2", req: post("/?top_k=2", "image/png", bluePNG(t)), wantStatus: 200, wantLabel: "blue", wantN: 2},
		{name: "top_k above labels gives all", req: post("/?top_k=50", "image/jpeg", redJPEG(t)), wantStatus: 200, wantLabel: "red", wantN: 3},
		{name: "top_k=0", req: post("/?top_k=0", "image/jpeg", redJPEG(t)), wantStatus: 400, wantKind: KindBadRequest, wantErrSub: "top_k"},
		{name: "top_k not a number", req: post("/?top_k=abc", "image/jpeg", redJPEG(t)), wantStatus: 400, wantKind: KindBadRequest, wantErrSub: "top_k"},
		{name: "truncated jpeg", req: post("/", "image/jpeg", redJPEG(t)[:200]), wantStatus: 400, wantKind: KindCorrupt},
		{name: "garbage labelled jpeg", req: post("/", "image/jpeg", []byte("definitely not a picture")), wantStatus: 400, wantKind: KindUnsupported, wantErrSub: "not a JPEG, PNG or WebP"},
		{name: "gif bytes labelled png", req: post("/", "image/png", []byte("GIF89a\x01\x00\x01\x00")), wantStatus: 400, wantKind: KindUnsupported, wantErrSub: "GIF"},
		{name: "empty body", req: post("/", "image/jpeg", nil), wantStatus: 400, wantKind: KindCorrupt, wantErrSub: "empty"},
		{name: "hostile 20000x20000 png", req: post("/", "image/png", preprocesstest.HostilePNG(20000, 20000)), wantStatus: 413, wantKind: KindTooLarge, wantErrSub: "20000x20000"},
		{name: "body over the cap with length", req: post("/", "image/jpeg", big), wantStatus: 413, wantKind: KindTooLarge, wantErrSub: "limit"},
		{name: "body over the cap, chunked", req: func() *http.Request {
			r := post("/", "image/jpeg", nil)
			r.Body = io.NopCloser(bytes.NewReader(big))
			r.ContentLength = -1
			return r
		}(), wantStatus: 413, wantKind: KindTooLarge, wantErrSub: "limit"},
		{name: "gif content type", req: post("/", "image/gif", []byte("GIF89a")), wantStatus: 415, wantKind: KindUnsupported},
		{name: "text", req: post("/", "text/plain", []byte("hello")), wantStatus: 415, wantKind: KindUnsupported},
		{name: "form-urlencoded (curl's default)", req: post("/", "application/x-www-form-urlencoded", redJPEG(t)), wantStatus: 415, wantKind: KindUnsupported},
		{name: "no content type", req: post("/", "", redJPEG(t)), wantStatus: 415, wantKind: KindUnsupported},
		{name: "malformed content type", req: post("/", "image/jpeg; ===", redJPEG(t)), wantStatus: 415, wantKind: KindUnsupported},
		{name: "bad JSON", req: post("/", "application/json", []byte(`{"uris": [`)), wantStatus: 400, wantKind: KindBadRequest, wantErrSub: "bad JSON"},
		{name: "JSON unknown field", req: post("/", "application/json", []byte(`{"uri": "gs://b/o.jpg"}`)), wantStatus: 400, wantKind: KindBadRequest, wantErrSub: "unknown field"},
		{name: "JSON two values", req: post("/", "application/json", []byte(`{} {}`)), wantStatus: 400, wantKind: KindBadRequest},
		{name: "multipart without boundary", req: post("/", "multipart/form-data", []byte("x")), wantStatus: 400, wantKind: KindBadRequest, wantErrSub: "boundary"},
		{name: "PUT", req: httptest.NewRequest(http.MethodPut, "/", bytes.NewReader(redJPEG(t))), wantStatus: 405, wantKind: KindBadRequest},
		{name: "DELETE", req: httptest.NewRequest(http.MethodDelete, "/", nil), wantStatus: 405, wantKind: KindBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, body := do(t, s, tt.req)
			if w.Code != tt.wantStatus {
				t.Fatalf("status %d, want %d; body %s", w.Code, tt.wantStatus, w.Body)
			}
			if tt.wantStatus != 200 {
				msg, _ := body["error"].(string)
				if msg == "" {
					t.Errorf("error answer without an error message: %s", w.Body)
				}
				if body["kind"] != tt.wantKind {
					t.Errorf("kind %v, want %s; body %s", body["kind"], tt.wantKind, w.Body)
				}
				if !strings.Contains(msg, tt.wantErrSub) {
					t.Errorf("error %q does not mention %q", msg, tt.wantErrSub)
				}
				if tt.wantStatus == 405 && w.Header().Get("Allow") != "GET, HEAD, POST" {
					t.Errorf("405 without Allow: %q", w.Header().Get("Allow"))
				}
				return
			}
			m := body["model"].(map[string]any)
			if m["name"] != "colours" || m["version"] != "v3" {
				t.Errorf("model = %v, want colours v3", m)
			}
			preds := predictions(t, body["predictions"])
			if len(preds) != tt.wantN {
				t.Errorf("%d predictions, want %d: %v", len(preds), tt.wantN, preds)
			}
			if preds[0].Label != tt.wantLabel || preds[0].Score < 0.9 {
				t.Errorf("top prediction %v, want %s with a score > 0.9", preds[0], tt.wantLabel)
			}
			checkSorted(t, preds)
		})
	}
}

func TestPredictInfo(t *testing.T) {
	s := newServer(t, testConfig(), nil, nil)
	w, body := do(t, s, httptest.NewRequest(http.MethodGet, "/", nil))
	if w.Code != 200 || body["ready"] != true {
		t.Fatalf("GET: %d %s", w.Code, w.Body)
	}
	m := body["model"].(map[string]any)
	if m["name"] != "colours" || m["version"] != "v3" || fmt.Sprint(m["labels"]) != "[red green blue]" {
		t.Errorf("model = %v", m)
	}
	if in := m["input"].(map[string]any); in["name"] != "input" || fmt.Sprint(in["shape"]) != "[-1 3 8 8]" {
		t.Errorf("input = %v", in)
	}
	if met := m["metrics"].(map[string]any); met["validation_accuracy"] != 0.9 {
		t.Errorf("metrics = %v", met)
	}
	if m["created_at"] != "2026-01-01T00:00:00Z" {
		t.Errorf("created_at = %v", m["created_at"])
	}
	// HEAD answers the same status without a body.
	w, _ = do(t, s, httptest.NewRequest(http.MethodHead, "/", nil))
	if w.Code != 200 {
		t.Errorf("HEAD: %d", w.Code)
	}
}

// TestPredictModelUnavailable: with no loadable model, every request gets a
// 503 with Retry-After, loads are retried only after the backoff, and the
// function recovers once the model appears.
func TestPredictModelUnavailable(t *testing.T) {
	cfg := testConfig()
	var mu sync.Mutex
	var ready *onnxrt.Classifier
	loads := 0
	lazy := modelsource.NewLazy(func(ctx context.Context) (*onnxrt.Classifier, error) {
		mu.Lock()
		defer mu.Unlock()
		loads++
		if ready == nil {
			return nil, errors.New("loading model gs://models/colours: model.json: object not found")
		}
		return ready, nil
	}, modelsource.Backoff{Initial: 300 * time.Millisecond, Max: time.Second})
	s := &Server{&Service{Config: cfg, Provider: lazy, Log: quietLog()}}
	for _, r := range []*http.Request{
		post("/", "image/jpeg", redJPEG(t)),
		post("/", "image/jpeg", redJPEG(t)),
		httptest.NewRequest(http.MethodGet, "/", nil),
	} {
		w, body := do(t, s, r)
		if w.Code != 503 {
			t.Fatalf("%s: status %d, want 503: %s", r.Method, w.Code, w.Body)
		}
		if ra := w.Header().Get("Retry-After"); ra != "1" {
			t.Errorf("Retry-After = %q, want 1 (seconds, rounded up)", ra)
		}
		if msg := fmt.Sprint(body["error"]); !strings.Contains(msg, "model.json") {
			t.Errorf("error %q does not say why", msg)
		}
	}
	mu.Lock()
	if loads != 1 {
		t.Errorf("%d load attempts within the backoff, want 1", loads)
	}
	ready = newClassifier(t, cfg, modeltest.Options{})
	mu.Unlock()
	time.Sleep(350 * time.Millisecond)
	w, body := do(t, s, post("/", "image/jpeg", redJPEG(t)))
	if w.Code != 200 || predictions(t, body["predictions"])[0].Label != "red" {
		t.Fatalf("after the model appeared: %d %s", w.Code, w.Body)
	}
}

type part struct {
	field, filename, contentType string
	data                         []byte
}

func multipartBody(t testing.TB, parts []part) ([]byte, string) {
	t.Helper()
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	for _, p := range parts {
		h := textproto.MIMEHeader{}
		disp := fmt.Sprintf(`form-data; name=%q`, p.field)
		if p.filename != "" {
			disp += fmt.Sprintf(`; filename=%q`, p.filename)
		}
		h.Set("Content-Disposition", disp)
		if p.contentType != "" {
			h.Set("Content-Type", p.contentType)
		}
		w, err := mw.CreatePart(h)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(p.data)
	}
	mw.Close()
	return b.Bytes(), mw.FormDataContentType()
}

func TestPredictMultipart(t *testing.T) {
	cfg := testConfig()
	cfg.MaxImageBytes = 32 << 10
	cfg.MaxObjects = 8
	s := newServer(t, cfg, nil, nil)
	type want struct{ filename, label, kind string }
	tests := []struct {
		name       string
		parts      []part
		query      string
		wantStatus int
		want       []want
	}{
		{
			name: "mixed good and bad files in request order",
			parts: []part{
				{"file", "apple.jpg", "image/jpeg", redJPEG(t)},
				{"note", "", "", []byte("a plain form field is ignored")},
				{"file", "notes.txt", "text/plain", []byte("hello")},
				{"file", "leaf.jpg", "application/octet-stream", greenJPEG(t)},
				{"file", "broken.jpg", "image/jpeg", redJPEG(t)[:300]},
				{"file", "huge.png", "image/png", preprocesstest.HostilePNG(20000, 20000)},
				{"file", "big.bin", "", bytes.Repeat([]byte{1}, 40<<10)},
				{"file", "sky.png", "image/png", bluePNG(t)},
			},
			wantStatus: 200,
			want: []want{
				{"apple.jpg", "red", ""},
				{"notes.txt", "", KindUnsupported},
				{"leaf.jpg", "green", ""},
				{"broken.jpg", "", KindCorrupt},
				{"huge.png", "", KindTooLarge},
				{"big.bin", "", KindTooLarge},
				{"sky.png", "blue", ""},
			},
		},
		{
			name:       "top_k applies to every file",
			parts:      []part{{"files", "a.jpg", "", redJPEG(t)}, {"files", "b.png", "", bluePNG(t)}},
			query:      "?top_k=1",
			wantStatus: 200,
			want:       []want{{"a.jpg", "red", ""}, {"b.png", "blue", ""}},
		},
		{name: "no files", parts: []part{{"note", "", "", []byte("x")}}, wantStatus: 400},
		{name: "too many files", parts: func() []part {
			var ps []part
			for i := range 9 {
				ps = append(ps, part{"file", fmt.Sprintf("%d.jpg", i), "", redJPEG(t)})
			}
			return ps
		}(), wantStatus: 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, ct := multipartBody(t, tt.parts)
			w, resp := do(t, s, post("/"+tt.query, ct, body))
			if w.Code != tt.wantStatus {
				t.Fatalf("status %d, want %d: %s", w.Code, tt.wantStatus, w.Body)
			}
			if tt.wantStatus != 200 {
				return
			}
			results := resp["results"].([]any)
			if len(results) != len(tt.want) {
				t.Fatalf("%d results, want %d: %s", len(results), len(tt.want), w.Body)
			}
			for i, wt := range tt.want {
				r := results[i].(map[string]any)
				if r["filename"] != wt.filename {
					t.Errorf("result %d is %v, want %s (request order)", i, r["filename"], wt.filename)
				}
				if wt.kind != "" {
					if r["kind"] != wt.kind || r["error"] == nil || r["predictions"] != nil {
						t.Errorf("%s: %v, want an error of kind %s", wt.filename, r, wt.kind)
					}
					continue
				}
				preds := predictions(t, r["predictions"])
				if preds[0].Label != wt.label || r["error"] != nil {
					t.Errorf("%s: %v, want %s", wt.filename, r, wt.label)
				}
				if tt.query == "?top_k=1" && len(preds) != 1 {
					t.Errorf("%s: %d predictions with top_k=1", wt.filename, len(preds))
				}
				checkSorted(t, preds)
			}
		})
	}
}

func TestPredictMultipartOverBodyCap(t *testing.T) {
	cfg := testConfig()
	cfg.MaxBodyBytes = 16 << 10
	s := newServer(t, cfg, nil, nil)
	body, ct := multipartBody(t, []part{{"file", "a.bin", "", bytes.Repeat([]byte{1}, 20<<10)}})
	r := post("/", ct, body)
	r.ContentLength = -1 // as if chunked: the cap must still hold mid-stream
	r.Body = io.NopCloser(bytes.NewReader(body))
	w, resp := do(t, s, r)
	if w.Code != 413 || resp["kind"] != KindTooLarge {
		t.Fatalf("status %d, want 413: %s", w.Code, w.Body)
	}
}

// TestPredictPanicRecovered: a panicking provider gives a JSON 500 and the
// handler keeps serving.
func TestPredictPanicRecovered(t *testing.T) {
	s := &Server{&Service{Config: testConfig(), Provider: panicProvider{}, Log: quietLog()}}
	w, body := do(t, s, post("/", "image/jpeg", []byte("x")))
	if w.Code != 500 || body["kind"] != KindInternal {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
}

type panicProvider struct{}

func (panicProvider) Acquire(context.Context) (*modelsource.Lease, error) { panic("boom") }

// TestPredictConcurrent sends many requests at once through one classifier
// (run with -race).
func TestPredictConcurrent(t *testing.T) {
	s := newServer(t, testConfig(), nil, nil)
	srv := httptest.NewServer(s)
	defer srv.Close()
	images := map[string][]byte{"red": redJPEG(t), "green": greenJPEG(t), "blue": bluePNG(t)}
	labels := []string{"red", "green", "blue"}
	const n = 96
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			want := labels[i%3]
			ct := "image/jpeg"
			if want == "blue" {
				ct = "image/png"
			}
			resp, err := http.Post(srv.URL+"/?top_k=1", ct, bytes.NewReader(images[want]))
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			var body PredictResponse
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != 200 {
				errs <- fmt.Errorf("request %d: %d %v", i, resp.StatusCode, err)
				return
			}
			if len(body.Predictions) != 1 || body.Predictions[0].Label != want {
				errs <- fmt.Errorf("request %d: %v, want %s", i, body.Predictions, want)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestPredictScoresAreProbabilities(t *testing.T) {
	s := newServer(t, testConfig(), nil, nil)
	_, body := do(t, s, post("/", "image/jpeg", redJPEG(t)))
	sum := 0.0
	for _, p := range predictions(t, body["predictions"]) {
		sum += p.Score
	}
	if math.Abs(sum-1) > 1e-6 {
		t.Errorf("all scores sum to %v, want 1", sum)
	}
}
