package modelsource_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/shared/blob/blobtest"
	"github.com/orchard-mlops/orchard/shared/emulators"
	"github.com/orchard-mlops/orchard/shared/model"
	"github.com/orchard-mlops/orchard/shared/model/modeltest"
	"github.com/orchard-mlops/orchard/shared/modelsource"
	"github.com/orchard-mlops/orchard/shared/onnxrt"
	"github.com/orchard-mlops/orchard/shared/onnxrt/onnxrttest"
	"github.com/orchard-mlops/orchard/shared/registry"
)

func TestMain(m *testing.M) { os.Exit(emulators.RunTests(m)) }

// modelDir writes a colour model into a fresh directory store.
func modelDir(t testing.TB, o modeltest.Options) blob.Store {
	t.Helper()
	st, err := blob.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	modeltest.Save(t, modeltest.Colour(t, o), st)
	return st
}

func publish(t testing.TB, reg *registry.Registry, o modeltest.Options, po registry.PublishOptions) {
	t.Helper()
	if _, err := registry.PublishFrom(context.Background(), reg, modelDir(t, o), po); err != nil {
		t.Fatalf("publish %s: %v", o.Version, err)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// Versions of the colour model whose answers to a red image differ.
var answers = map[string]string{"v1": "red", "v2": "green", "v3": "blue"}
var labelOrders = map[string][]string{
	"v1": {"red", "green", "blue"},
	"v2": {"green", "blue", "red"},
	"v3": {"blue", "red", "green"},
}

// TestWatcherHotReloadUnderLoad classifies continuously from several
// goroutines while promotions and rollbacks move production: no request
// may fail, every answer must come from the classifier its lease names,
// and after each swap the answers come from the new version.
func TestWatcherHotReloadUnderLoad(t *testing.T) {
	onnxrttest.Init(t)
	ctx := t.Context()
	reg := registry.New(blobtest.GCS(t, "registry"), registry.Options{})
	for _, v := range []string{"v1", "v2", "v3"} {
		publish(t, reg, modeltest.Options{Version: v, Labels: labelOrders[v], Accuracy: 0.9}, registry.PublishOptions{Runtime: onnxrt.Runtime{}, Promote: v == "v1"})
	}
	var loads atomic.Int64
	w := modelsource.NewWatcher(reg, "colours", modelsource.WatcherOptions{
		Interval:   10 * time.Millisecond,
		Background: true,
		Load: func(_ context.Context, m *model.Model) (*onnxrt.Classifier, error) {
			loads.Add(1)
			return onnxrt.NewClassifier(m, onnxrt.Options{})
		},
	})
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if w.Version() != "v1" {
		t.Fatalf("serving %q, want v1", w.Version())
	}
	red := modeltest.JPEG(t, modeltest.Solid(modeltest.Red, 32, 32))

	var (
		stop     atomic.Bool
		requests atomic.Int64
		failures atomic.Int64
		mu       sync.Mutex
		lastSeen = map[int]string{} // worker -> version of its last answer
		firstErr error
	)
	var wg sync.WaitGroup
	for worker := range 4 {
		wg.Go(func() {
			for !stop.Load() {
				err := func() error {
					lease, err := w.Acquire(ctx)
					if err != nil {
						return err
					}
					defer lease.Release()
					v := lease.Metadata().Version
					preds, err := lease.Classify(red, 1)
					if err != nil {
						return fmt.Errorf("classify on %s: %w", v, err)
					}
					if preds[0].Label != answers[v] {
						return fmt.Errorf("version %s answered %q, want %q", v, preds[0].Label, answers[v])
					}
					mu.Lock()
					lastSeen[worker] = v
					mu.Unlock()
					return nil
				}()
				requests.Add(1)
				if err != nil {
					failures.Add(1)
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
		})
	}
	// waitServing waits until every worker's latest answer came from v.
	waitServing := func(v string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			mu.Lock()
			all := len(lastSeen) == 4
			for _, s := range lastSeen {
				all = all && s == v
			}
			mu.Unlock()
			if all {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
		t.Fatalf("workers still not all answering from %s (watcher serves %q): %v", v, w.Version(), lastSeen)
	}

	waitServing("v1")
	steps := []struct {
		do   func() error
		want string
	}{
		{func() error {
			_, err := reg.Promote(ctx, "colours", "v2", registry.PromoteOptions{Runtime: onnxrt.Runtime{}})
			return err
		}, "v2"},
		{func() error {
			_, err := reg.Promote(ctx, "colours", "v3", registry.PromoteOptions{Runtime: onnxrt.Runtime{}})
			return err
		}, "v3"},
		{func() error { _, err := reg.Rollback(ctx, "colours", registry.RollbackOptions{}); return err }, "v2"},
		{func() error {
			_, err := reg.Rollback(ctx, "colours", registry.RollbackOptions{To: "v1"})
			return err
		}, "v1"},
		{func() error {
			_, err := reg.Promote(ctx, "colours", "v3", registry.PromoteOptions{Runtime: onnxrt.Runtime{}})
			return err
		}, "v3"},
	}
	for _, s := range steps {
		before := requests.Load()
		if err := s.do(); err != nil {
			t.Fatal(err)
		}
		waitServing(s.want)
		if requests.Load() == before {
			t.Fatal("no requests ran during the swap")
		}
	}

	// A truncated graph whose model.json claims good accuracy is refused by
	// the gate, with the reason recorded, and production is untouched.
	putTruncated(t, reg, "v4", labelOrders["v1"])
	d, err := reg.Promote(ctx, "colours", "v4", registry.PromoteOptions{Runtime: onnxrt.Runtime{}})
	if err != nil || d.Accepted || !strings.Contains(d.Reason, "integrity check failed") || !strings.Contains(d.Reason, "truncated") {
		t.Fatalf("promoting a truncated model: %+v, %v", d, err)
	}
	if rec, err := reg.Decision(ctx, "colours", "v4"); err != nil || rec.Reason != d.Reason {
		t.Errorf("recorded decision %+v, %v", rec, err)
	}
	if a, _ := reg.Alias(ctx, "colours", registry.Production); a.Version != "v3" {
		t.Fatalf("production moved to %s", a.Version)
	}
	// An operator setting the alias past the gate: the running instance
	// keeps serving what it has.
	if _, err := reg.SetAlias(ctx, "colours", registry.Production, "v4", registry.MoveOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Check(ctx); err == nil {
		t.Error("Check of an unloadable version succeeded")
	}
	time.Sleep(50 * time.Millisecond)
	if w.Version() != "v3" {
		t.Errorf("after a failed load serving %q, want v3", w.Version())
	}

	stop.Store(true)
	wg.Wait()
	if n := failures.Load(); n != 0 {
		t.Errorf("%d of %d requests failed; first: %v", n, requests.Load(), firstErr)
	}
	t.Logf("%d requests over %d swaps, %d loads", requests.Load(), len(steps), loads.Load())
	closeCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := w.Close(closeCtx); err != nil {
		t.Fatal(err)
	}
}

func TestWatcherWithoutProduction(t *testing.T) {
	reg := registry.New(must(blob.NewDir(t.TempDir())), registry.Options{})
	w := modelsource.NewWatcher(reg, "colours", modelsource.WatcherOptions{Interval: time.Hour})
	_, err := w.Acquire(t.Context())
	if !modelsource.IsUnavailable(err) || !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("Acquire without production = %v, want an UnavailableError wrapping ErrNotFound", err)
	}
	// The next Acquire within Interval does not poll again.
	_, err = w.Acquire(t.Context())
	var u *modelsource.UnavailableError
	if !errors.As(err, &u) || u.RetryAfter <= 0 {
		t.Errorf("second Acquire = %v, want a RetryAfter", err)
	}
}

// putTruncated stores version v of the colour model with model.onnx cut in
// half after model.json recorded its sha256 (PutVersion copies files as
// they are; only Publish and the gate check them).
func putTruncated(t *testing.T, reg *registry.Registry, v string, labels []string) {
	t.Helper()
	ctx := t.Context()
	bad := modelDir(t, modeltest.Options{Version: v, Labels: labels, Accuracy: 0.99})
	b, _, err := bad.Read(ctx, model.ONNXFile, model.MaxONNXBytes)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bad.Write(ctx, model.ONNXFile, b[:len(b)/2], blob.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.PutVersion(ctx, "colours", v, bad); err != nil {
		t.Fatal(err)
	}
}

// TestWatcherFallsBack: a fresh instance whose alias names a version that
// cannot be loaded serves the last earlier target that loads (logging an
// error) instead of answering 503, and follows the alias again once it
// names a good version.
func TestWatcherFallsBack(t *testing.T) {
	onnxrttest.Init(t)
	ctx := t.Context()
	reg := registry.New(must(blob.NewDir(t.TempDir())), registry.Options{})
	publish(t, reg, modeltest.Options{Version: "v1"}, registry.PublishOptions{Runtime: onnxrt.Runtime{}, Promote: true})
	putTruncated(t, reg, "v2", nil)
	if _, err := reg.SetAlias(ctx, "colours", registry.Production, "v2", registry.MoveOptions{Reason: "forced by hand"}); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	w := modelsource.NewWatcher(reg, "colours", modelsource.WatcherOptions{Interval: time.Millisecond, RetryFailed: time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	defer w.Close(context.Background())
	lease, err := w.Acquire(ctx)
	if err != nil {
		t.Fatalf("fresh instance: %v (want the fallback, not 503)", err)
	}
	if v := lease.Metadata().Version; v != "v1" {
		t.Errorf("serving %s, want v1", v)
	}
	lease.Release()
	if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), "wanted=v2 serving=v1") {
		t.Errorf("no error logged for the fallback:\n%s", logs.String())
	}
	publish(t, reg, modeltest.Options{Version: "v3"}, registry.PublishOptions{})
	if _, err := reg.SetAlias(ctx, "colours", registry.Production, "v3", registry.MoveOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Check(ctx); err != nil || w.Version() != "v3" {
		t.Errorf("after the alias moved to a good version: serving %q, %v", w.Version(), err)
	}
}
