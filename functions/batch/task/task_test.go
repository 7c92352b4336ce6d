package task

import (
	"context"
	"encoding/json"
	"fmt"
	"image/color"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/storage"

	"github.com/orchard-mlops/orchard/functions/batch"
	"github.com/orchard-mlops/orchard/functions/predict"
	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/shared/emulators"
	"github.com/orchard-mlops/orchard/shared/model/modeltest"
	"github.com/orchard-mlops/orchard/shared/modelsource"
	"github.com/orchard-mlops/orchard/shared/onnxrt"
	"github.com/orchard-mlops/orchard/shared/onnxrt/onnxrttest"
	"github.com/orchard-mlops/orchard/shared/results"
)

func TestMain(m *testing.M) { os.Exit(emulators.RunTests(m)) }

func quietLog() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewJSONHandler(os.Stderr, nil))
	}
	return slog.New(slog.NewJSONHandler(io.Discard, nil))
}

// env is fake-gcs-server with a source bucket and the colour model.
type env struct {
	client *storage.Client
	model  modelsource.Provider
}

func newEnv(t *testing.T, buckets ...string) *env {
	t.Helper()
	g := emulators.GCSForTest(t)
	c := g.ClientForTest(t)
	for _, b := range append([]string{"src"}, buckets...) {
		if err := c.Bucket(b).Create(t.Context(), "test-project", nil); err != nil {
			t.Fatalf("creating bucket %s: %v", b, err)
		}
	}
	onnxrttest.Init(t)
	cl, err := onnxrt.NewClassifier(modeltest.Colour(t, modeltest.Options{Version: "v7"}), onnxrt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return &env{client: c, model: modelsource.Static{C: cl}}
}

func (e *env) put(t testing.TB, bucket, name, contentType string, data []byte) {
	t.Helper()
	w := e.client.Bucket(bucket).Object(name).NewWriter(context.Background())
	w.ContentType = contentType
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("writing gs://%s/%s: %v", bucket, name, err)
	}
}

// putColours writes n JPEGs per colour under prefix/<colour>/, and returns
// their names.
func (e *env) putColours(t testing.TB, prefix string, n int) []string {
	t.Helper()
	var names []string
	for i, c := range []color.RGBA{modeltest.Red, modeltest.Green, modeltest.Blue} {
		img := modeltest.JPEG(t, modeltest.Solid(c, 20+i, 16))
		for k := range n {
			name := fmt.Sprintf("%s%s/%03d.jpg", prefix, modeltest.Colours[i], k)
			e.put(t, "src", name, "image/jpeg", img)
			names = append(names, name)
		}
	}
	return names
}

// runner is task index of count in execution exec, writing into results.
func (e *env) runner(exec string, index, count, attempt int, results blob.Store) *Runner {
	return &Runner{
		Config:  Config{Task: batch.Task{Execution: exec, Index: index, Count: count, Attempt: attempt}, Prefix: "gs://src/photos/", Workers: 3},
		Storage: blob.NewOpener(e.client),
		Uploader: &predict.Uploader{
			Service: &predict.Service{
				Config:   predict.Config{ResultsBucket: "results", StorageTimeout: 5 * time.Second, MaxImageBytes: 1 << 20, TopK: 3},
				Provider: e.model, Log: quietLog(),
			},
			Results: &predict.Results{Store: results, Timeout: 5 * time.Second},
		},
		Log: quietLog(),
	}
}

// runAll runs every task of an execution at once and returns the run summary.
func (e *env) runAll(t *testing.T, exec string, count int, results blob.Store) *batch.Summary {
	t.Helper()
	var wg sync.WaitGroup
	errs := make([]error, count)
	for i := range count {
		wg.Go(func() { _, errs[i] = e.runner(exec, i, count, 0, results).Run(t.Context()) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("task %d: %v", i, err)
		}
	}
	return readSummary(t, results, exec)
}

func readSummary(t *testing.T, st blob.Store, exec string) *batch.Summary {
	t.Helper()
	b, _, err := st.Read(t.Context(), batch.SummaryKey(exec), 1<<20)
	if err != nil {
		t.Fatalf("run summary of %s: %v", exec, err)
	}
	var s batch.Summary
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	return &s
}

// resultEvents maps each result object (name without the suffix) to the
// result's event ID, which names the task attempt that wrote it.
func resultEvents(t *testing.T, st blob.Store) map[string]string {
	t.Helper()
	as, err := blob.Collect(t.Context(), st, blob.ListOptions{Prefix: "photos/"}, blob.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, a := range as {
		b, _, err := st.Read(t.Context(), a.Key, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		var r results.Upload
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatalf("%s: %v", a.Key, err)
		}
		name := strings.TrimSuffix(strings.TrimSuffix(a.Key, results.ErrorSuffix), results.ResultSuffix)
		if _, dup := out[name]; dup {
			t.Errorf("%s has both a result and an error record", name)
		}
		out[name] = r.EventID
	}
	return out
}

// TestShards: for several task counts, every object gets exactly one
// result, written by the task whose shard it is, and the run summary
// counts each once.
func TestShards(t *testing.T) {
	buckets := []string{"results-1", "results-2", "results-3", "results-5"}
	e := newEnv(t, buckets...)
	names := e.putColours(t, "photos/", 20)
	for _, b := range buckets {
		var count int
		fmt.Sscanf(b, "results-%d", &count)
		t.Run(b, func(t *testing.T) {
			st := blob.NewGCS(e.client, b, "")
			exec := fmt.Sprintf("shards-%d", count)
			sum := e.runAll(t, exec, count, st)
			got := resultEvents(t, st)
			if len(got) != len(names) {
				t.Fatalf("%d results for %d objects", len(got), len(names))
			}
			for _, n := range names {
				want := fmt.Sprintf("batch/%s/task-%d/attempt-0", exec, batch.Shard(n, count))
				if got[n] != want {
					t.Errorf("%s: written by %q, want %q (its shard)", n, got[n], want)
				}
			}
			if sum.Images != int64(len(names)) || sum.Written != int64(len(names)) || sum.Tasks != count || sum.State != batch.StateFinished {
				t.Errorf("run summary: %+v", sum)
			}
			tasks, err := batch.ReadTaskSummaries(t.Context(), st, exec)
			if err != nil || len(tasks) != count {
				t.Fatalf("%d task summaries (%v), want %d", len(tasks), err, count)
			}
			for i, ts := range tasks {
				if ts.Task == nil || *ts.Task != i || ts.Listed != int64(len(names)) {
					t.Errorf("task summary %d: task %v, listed %d (every task lists the whole prefix)", i, ts.Task, ts.Listed)
				}
			}
		})
	}
}

// cancelAfter is a results store that cancels a context once n results
// have been written: a task killed midway.
type cancelAfter struct {
	blob.Store
	n      int64
	writes atomic.Int64
	cancel context.CancelFunc
}

func (c *cancelAfter) Write(ctx context.Context, key string, data []byte, o blob.WriteOptions) (blob.Attrs, error) {
	a, err := c.Store.Write(ctx, key, data, o)
	if err == nil && strings.HasSuffix(key, results.ResultSuffix) && !strings.HasPrefix(key, "_batch/") && c.writes.Add(1) == c.n {
		c.cancel()
	}
	return a, err
}

// TestResumeAfterKilledTask: task 0 stops midway; its retry (attempt 1)
// skips every object the first attempt recorded, and the run ends with
// exactly one result per object, none written twice.
func TestResumeAfterKilledTask(t *testing.T) {
	e := newEnv(t, "results")
	names := e.putColours(t, "photos/", 30)
	st := blob.NewGCS(e.client, "results", "")
	ctx, cancel := context.WithCancel(t.Context())
	killed := &cancelAfter{Store: st, n: 15, cancel: cancel}
	r0 := e.runner("resume", 0, 2, 0, killed)
	first, err := r0.Run(ctx)
	if err == nil || first.State != batch.StateFailed || first.Written < 15 || first.Written >= int64(len(names))/2+20 {
		t.Fatalf("interrupted attempt: err %v, summary %+v", err, first)
	}
	if _, err := st.Attributes(t.Context(), batch.SummaryKey("resume")); err == nil {
		t.Fatal("a run summary was written while task 0 had not finished")
	}
	second, err := e.runner("resume", 0, 2, 1, st).Run(t.Context())
	if err != nil {
		t.Fatalf("retry: %v", err)
	}
	other, err := e.runner("resume", 1, 2, 0, st).Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	got := resultEvents(t, st)
	if len(got) != len(names) {
		t.Fatalf("%d results for %d objects", len(got), len(names))
	}
	// The retry skipped exactly what the first attempt wrote (a write in
	// flight at the kill may have landed without being counted).
	byFirst := 0
	for _, ev := range got {
		if ev == "batch/resume/task-0/attempt-0" {
			byFirst++
		}
	}
	if second.Done != int64(byFirst) || byFirst < int(first.Written) || second.Written+second.Done != second.Images {
		t.Errorf("retry: done %d, written %d of %d; the first attempt wrote %d (counted %d)", second.Done, second.Written, second.Images, byFirst, first.Written)
	}
	if got := int64(byFirst) + second.Written + other.Written; got != int64(len(names)) {
		t.Errorf("%d results written over all attempts, want %d (one per object)", got, len(names))
	}
	sum := readSummary(t, st, "resume")
	if sum.Images != int64(len(names)) || sum.Written+sum.Done != int64(len(names)) || sum.State != batch.StateFinished {
		t.Errorf("run summary: %+v", sum)
	}
	// A re-run (a new execution) writes nothing and still scores every image.
	again := e.runAll(t, "resume-again", 2, st)
	if again.Written != 0 || again.Done != int64(len(names)) || again.Accuracy == nil || *again.Accuracy != 1 {
		t.Errorf("re-run: %+v", again)
	}
}

// TestSummaryMergeAccuracy: sub-folders named after labels make the run
// summary carry accuracy and the confusion matrix over every task's shard.
func TestSummaryMergeAccuracy(t *testing.T) {
	e := newEnv(t, "results")
	names := e.putColours(t, "photos/", 10)
	e.put(t, "src", "photos/red/odd-one.jpg", "image/jpeg", modeltest.JPEG(t, modeltest.Solid(modeltest.Blue, 16, 16)))
	st := blob.NewGCS(e.client, "results", "")
	sum := e.runAll(t, "eval", 3, st)
	n := len(names) + 1
	if !sum.Labelled || sum.Eval == nil || sum.Accuracy == nil {
		t.Fatalf("no evaluation in %+v", sum)
	}
	if want := float64(n-1) / float64(n); *sum.Accuracy != want || sum.Eval.Evaluated != n {
		t.Errorf("accuracy %v over %d, want %v over %d", *sum.Accuracy, sum.Eval.Evaluated, want, n)
	}
	red, blue := 0, 2 // modeltest.Colours order
	if sum.Eval.Matrix[red][blue] != 1 || sum.Eval.Matrix[red][red] != 10 || sum.Eval.Matrix[blue][blue] != 10 {
		t.Errorf("confusion %v", sum.Eval.Matrix)
	}
	if sum.Model != (batch.Model{Name: "colours", Version: "v7"}) {
		t.Errorf("model %+v", sum.Model)
	}
}

// TestUnlabelled: an image outside a label sub-folder means no accuracy.
func TestUnlabelled(t *testing.T) {
	e := newEnv(t, "results")
	e.putColours(t, "photos/", 2)
	e.put(t, "src", "photos/loose.jpg", "image/jpeg", modeltest.JPEG(t, modeltest.Solid(modeltest.Red, 16, 16)))
	sum := e.runAll(t, "unlabelled", 2, blob.NewGCS(e.client, "results", ""))
	if sum.Labelled || sum.Eval != nil || sum.Accuracy != nil || sum.Written != 7 {
		t.Errorf("%+v", sum)
	}
}

// TestEmptyPrefix: nothing to do is a finished run with zero counts.
func TestEmptyPrefix(t *testing.T) {
	e := newEnv(t, "results")
	e.put(t, "src", "elsewhere/a.jpg", "image/jpeg", modeltest.JPEG(t, modeltest.Solid(modeltest.Red, 16, 16)))
	st := blob.NewGCS(e.client, "results", "")
	sum := e.runAll(t, "empty", 2, st)
	if sum.State != batch.StateFinished || sum.Listed != 0 || sum.Images != 0 || sum.Written != 0 || sum.Labelled || sum.Tasks != 2 {
		t.Errorf("%+v", sum)
	}
}

// TestUnreadableObjects: undecodable images get error records and are
// counted by kind; objects that are not images are left alone.
func TestUnreadableObjects(t *testing.T) {
	e := newEnv(t, "results")
	e.putColours(t, "photos/", 3)
	e.put(t, "src", "photos/red/broken.jpg", "image/jpeg", []byte("\xff\xd8\xff\xe0 this is not a JPEG"))
	e.put(t, "src", "photos/green/truncated.png", "image/png", modeltest.PNG(t, modeltest.Solid(modeltest.Green, 30, 30))[:40])
	e.put(t, "src", "photos/notes.txt", "text/plain", []byte("not an image"))
	st := blob.NewGCS(e.client, "results", "")
	sum := e.runAll(t, "unreadable", 2, st)
	if sum.Failed != 2 || sum.Written != 9 || sum.Other != 1 || sum.Images != 11 || sum.Errors[predict.KindCorrupt] != 2 {
		t.Errorf("%+v", sum)
	}
	for _, n := range []string{"photos/red/broken.jpg", "photos/green/truncated.png"} {
		b, _, err := st.Read(t.Context(), n+results.ErrorSuffix, 1<<20)
		if err != nil {
			t.Fatalf("no error record for %s: %v", n, err)
		}
		var r results.Upload
		if err := json.Unmarshal(b, &r); err != nil || r.Kind != predict.KindCorrupt || r.Error == "" {
			t.Errorf("%s: %+v (%v)", n, r, err)
		}
	}
	if _, err := st.Attributes(t.Context(), "photos/notes.txt"+results.ResultSuffix); err == nil {
		t.Error("a text file got a result")
	}
	// Accuracy counts only classified images; the broken ones are errors.
	if !sum.Labelled || sum.Eval == nil || sum.Eval.Evaluated != 9 {
		t.Errorf("evaluation %+v", sum.Eval)
	}
	// A re-run finds the error records and counts them again, writing nothing.
	again := e.runAll(t, "unreadable-again", 2, st)
	if again.Written != 0 || again.Failed != 0 || again.Done != 11 || again.Errors[predict.KindCorrupt] != 2 {
		t.Errorf("re-run: %+v", again)
	}
}

// TestNamePrefixOfAnother: "a.jpg"'s result sorts after "a.jpg.b.jpg"'s,
// outside the results window of a page ending in "a.jpg.b.jpg"; a re-run
// still writes nothing twice (the conditional write finds the result).
func TestNamePrefixOfAnother(t *testing.T) {
	e := newEnv(t, "results")
	img := modeltest.JPEG(t, modeltest.Solid(modeltest.Red, 16, 16))
	e.put(t, "src", "photos/red/a.jpg", "image/jpeg", img)
	e.put(t, "src", "photos/red/a.jpg.b.jpg", "image/jpeg", img)
	st := blob.NewGCS(e.client, "results", "")
	if sum := e.runAll(t, "prefix-1", 1, st); sum.Written != 2 {
		t.Fatalf("first run: %+v", sum)
	}
	again := e.runAll(t, "prefix-2", 1, st)
	if again.Written != 0 || again.Done != 2 || again.Accuracy == nil || *again.Accuracy != 1 {
		t.Errorf("re-run: %+v", again)
	}
	if got := resultEvents(t, st); got["photos/red/a.jpg"] != "batch/prefix-1/task-0/attempt-0" {
		t.Errorf("a.jpg's result was written by %q", got["photos/red/a.jpg"])
	}
}

func TestSuccessor(t *testing.T) {
	for _, p := range []string{"a.json", "photos/x.jpg.json"} {
		s := successor(p)
		if !(p < s) || !(p+"zzz" < s) || !(p+"\U0010FFFF" < s) {
			t.Errorf("successor(%q) = %q is not above every string starting with it", p, s)
		}
	}
}
