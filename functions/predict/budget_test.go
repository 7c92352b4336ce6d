package predict

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/shared/memlimit"
	"github.com/orchard-mlops/orchard/shared/preprocess"
	"github.com/orchard-mlops/orchard/shared/results"
)

func TestDecodeBudgetAdmits(t *testing.T) {
	b := NewDecodeBudget(100, 20*time.Millisecond)
	ctx := context.Background()
	r1, err := b.admit(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.admit(ctx, 60); !errors.Is(err, ErrOverloaded) {
		t.Fatalf("second 60 of 100: %v, want ErrOverloaded", err)
	}
	r1()
	r2, err := b.admit(ctx, 60)
	if err != nil {
		t.Fatalf("after the release: %v", err)
	}
	r2()
	if _, err := b.admit(ctx, 101); !errors.Is(err, preprocess.ErrTooLarge) {
		t.Errorf("more than the whole budget: %v, want a permanent ErrTooLarge", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := b.admit(cctx, 1); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled caller: %v, want context.Canceled", err)
	}
	var none *DecodeBudget
	if r, err := none.admit(ctx, 1<<40); err != nil {
		t.Errorf("nil budget: %v, want admitted", err)
	} else {
		r()
	}
}

// A caller that leaves while waiting for room gets its own error at once,
// not after the wait.
func TestDecodeBudgetWaitEndsWithTheCaller(t *testing.T) {
	b := NewDecodeBudget(10, time.Hour)
	hold, err := b.admit(context.Background(), 10)
	if err != nil {
		t.Fatal(err)
	}
	defer hold()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel)
	if _, err := b.admit(ctx, 5); !errors.Is(err, context.Canceled) {
		t.Fatalf("admit = %v, want context.Canceled", err)
	}
}

// jpegCost is what the colour model's spec estimates for img.
func jpegCost(t *testing.T, s *Server, img []byte) int64 {
	t.Helper()
	lease, err := s.Provider.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer lease.Release()
	n, err := lease.Metadata().Preprocessing.DecodeCost(img, s.Config.Limits())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestPredictOverBudget(t *testing.T) {
	s := newServer(t, testConfig(), nil, nil)
	img := redJPEG(t)
	cost := jpegCost(t, s, img)

	t.Run("full budget: 503 with Retry-After, then 200 once there is room", func(t *testing.T) {
		s.Budget = NewDecodeBudget(cost, 10*time.Millisecond)
		hold, err := s.Budget.admit(context.Background(), cost)
		if err != nil {
			t.Fatal(err)
		}
		w, body := do(t, s, post("/", "image/jpeg", img))
		if w.Code != http.StatusServiceUnavailable || body["kind"] != KindOverloaded || w.Header().Get("Retry-After") == "" {
			t.Errorf("with the budget full: %d %v (Retry-After %q), want 503 overloaded with Retry-After", w.Code, body, w.Header().Get("Retry-After"))
		}
		hold()
		if w, body := do(t, s, post("/", "image/jpeg", img)); w.Code != http.StatusOK {
			t.Errorf("after the release: %d %v, want 200", w.Code, body)
		}
	})

	t.Run("an image bigger than the whole budget: 413, not a retry", func(t *testing.T) {
		s.Budget = NewDecodeBudget(cost-1, 10*time.Millisecond)
		w, body := do(t, s, post("/", "image/jpeg", img))
		if w.Code != http.StatusRequestEntityTooLarge || body["kind"] != KindTooLarge {
			t.Errorf("%d %v, want 413 too_large", w.Code, body)
		}
	})

	t.Run("batch: each file that finds no room says overloaded", func(t *testing.T) {
		s.Budget = NewDecodeBudget(cost, 10*time.Millisecond)
		hold, err := s.Budget.admit(context.Background(), cost)
		if err != nil {
			t.Fatal(err)
		}
		defer hold()
		mp, ct := multipartBody(t, []part{{"file", "a.jpg", "", img}, {"file", "b.jpg", "", img}})
		w, body := do(t, s, post("/", ct, mp))
		if w.Code != http.StatusOK {
			t.Fatalf("%d %v, want 200 with per-file errors", w.Code, body)
		}
		for _, r := range body["results"].([]any) {
			if k := r.(map[string]any)["kind"]; k != KindOverloaded {
				t.Errorf("result %v, want kind overloaded", r)
			}
		}
	})
}

// countingObjects serves one object from memory, in every bucket, and
// counts reads.
type countingObjects struct {
	blob.Store // only ReadGeneration is used
	data       []byte
	reads      atomic.Int64
}

func (c *countingObjects) Open(context.Context, string) (blob.Store, error) { return c, nil }

func (c *countingObjects) ReadGeneration(_ context.Context, key string, gen, _ int64) ([]byte, blob.Attrs, error) {
	c.reads.Add(1)
	return c.data, blob.Attrs{Key: key, Generation: gen, Size: int64(len(c.data))}, nil
}

// A client that disconnects costs no decode: jobs not started yet are
// neither read nor decoded, and the budget is left as it was.
func TestPredictSkipsWorkForADisconnectedClient(t *testing.T) {
	objs := &countingObjects{data: redJPEG(t)}
	cfg := testConfig()
	cfg.AllowedBuckets = []string{"b"} // the allow-list fails closed
	s := newServer(t, cfg, objs, nil)
	s.Budget = NewDecodeBudget(1<<30, time.Second)
	r := post("/", "application/json", []byte(`{"uris":["gs://b/x.jpg","gs://b/x.jpg","gs://b/x.jpg"]}`))
	ctx, cancel := context.WithCancel(r.Context())
	cancel()
	w, body := do(t, s, r.WithContext(ctx))
	if n := objs.reads.Load(); n != 0 {
		t.Errorf("%d objects read for a client that had gone", n)
	}
	switch w.Code {
	case http.StatusOK: // the model was leased before the client's absence showed
		for _, res := range body["results"].([]any) {
			if k := res.(map[string]any)["kind"]; k != KindCancelled {
				t.Errorf("result %v, want kind cancelled", res)
			}
		}
	case http.StatusServiceUnavailable:
	default:
		t.Errorf("answer %d %v, want 200 with cancelled results or 503", w.Code, body)
	}
	if _, err := s.Budget.admit(context.Background(), 1<<30); err != nil {
		t.Errorf("the budget is not whole again: %v", err)
	}
}

// An upload that finds no room is a transient failure: the event is
// redelivered (HTTP 500 to Eventarc) and nothing is written.
func TestPredictOnUploadOverBudgetIsRetried(t *testing.T) {
	e := newUploadEnv(t, testConfig())
	img := redJPEG(t)
	gen := e.put(t, "uploads", "red.jpg", "image/jpeg", img)
	e.u.Budget = NewDecodeBudget(1<<20, 10*time.Millisecond)
	hold, err := e.u.Budget.admit(context.Background(), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if code := e.send(t, finalizeRequest("ev-1", "uploads", "red.jpg", gen, int64(len(img)), "image/jpeg", nil)); acked(code) {
		t.Fatalf("overloaded event acknowledged (HTTP %d); it must be redelivered", code)
	}
	if keys := e.keys(t); len(keys) != 0 {
		t.Errorf("results written while overloaded: %v", keys)
	}
	hold()
	if code := e.send(t, finalizeRequest("ev-1", "uploads", "red.jpg", gen, int64(len(img)), "image/jpeg", nil)); !acked(code) {
		t.Fatalf("redelivery after the release: HTTP %d", code)
	}
	if res, _ := e.result(t, "red.jpg"+results.ResultSuffix); res.Label != "red" {
		t.Errorf("result %+v, want red", res)
	}
}

func TestDecodeBudgetConfig(t *testing.T) {
	env := map[string]string{"MODEL_URI": "file:///m"}
	get := func(k string) string { return env[k] }
	c, err := ConfigFromEnv(get)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := memlimit.Limit()
	if got, want := c.DecodeMemory, int64(float64(n)*DecodeMemoryShare); got != want || c.DecodeWait != DefaultDecodeWait {
		t.Errorf("defaults: budget %d, wait %v; want %d (%.0f%% of %d) and %v", got, c.DecodeWait, want, 100*DecodeMemoryShare, n, DefaultDecodeWait)
	}
	env["DECODE_MEMORY_BYTES"], env["DECODE_WAIT_MS"] = "536870912", "0"
	if c, err = ConfigFromEnv(get); err != nil || c.DecodeMemory != 512<<20 || c.DecodeWait != 0 {
		t.Errorf("set: budget %d, wait %v, err %v; want 512 MiB, 0", c.DecodeMemory, c.DecodeWait, err)
	}
	for _, bad := range []map[string]string{{"DECODE_MEMORY_BYTES": "1000"}, {"DECODE_MEMORY_BYTES": "lots"}, {"DECODE_WAIT_MS": "-1"}} {
		bad["MODEL_URI"] = "file:///m"
		if _, err := ConfigFromEnv(func(k string) string { return bad[k] }); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}
