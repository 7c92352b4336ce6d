// Package task runs one task of a batch prediction job: it lists the
// execution's gs:// prefix page by page, keeps the objects of its shard
// (batch.Shard), and gives each to PredictOnUpload's core
// (predict.Uploader.Process: the same preprocessing, result schema and
// exactly-once rule per object generation), so that a retried task or a
// re-run skips every object that already has its result. It logs a
// progress line and rewrites its task summary every Config.Progress, and
// the last task to finish merges the run summary (see package batch).
//
// Memory is bounded by the worker count, not the prefix: the listing is
// streamed and only counters are kept.
package task

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/storage"
	"google.golang.org/api/iterator"

	"github.com/orchard-mlops/orchard/functions/batch"
	"github.com/orchard-mlops/orchard/functions/predict"
	"github.com/orchard-mlops/orchard/functions/predict/foldereval"
	"github.com/orchard-mlops/orchard/shared/blob"
)

// DefaultProgress is how often a task logs its progress and rewrites its
// summary.
const DefaultProgress = 10 * time.Second

// Config is one task's work.
type Config struct {
	Task    batch.Task
	Prefix  string // gs://bucket/folder/
	Workers int    // objects in flight (default predict's WORKERS)
	// WantVersion, if set, is the model version the task must serve: the
	// one the launcher resolved for every task.
	WantVersion string
	// Progress is how often to log and rewrite the task summary (default
	// DefaultProgress).
	Progress time.Duration
}

// Runner runs a task against the storage client and the upload core.
type Runner struct {
	Config   Config
	Storage  *storage.Client   // lists the source prefix
	Uploader *predict.Uploader // classifies and records; its Results store holds the summaries too
	Log      *slog.Logger
	Now      func() time.Time
}

func (r *Runner) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// Run processes the task's shard and returns its final summary (also
// written to the results bucket). The error is non-nil when the task did
// not finish its shard (transient failures, a listing error, ctx ended):
// the job's retry then picks up what is left.
func (r *Runner) Run(ctx context.Context) (*batch.Summary, error) {
	bucket, folder, err := r.source()
	if err != nil {
		return nil, err
	}
	lease, err := r.Uploader.Provider.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("loading the model: %w", err)
	}
	meta := lease.Metadata()
	labels := meta.Labels
	lease.Release()
	if w := r.Config.WantVersion; w != "" && meta.Version != w {
		return nil, fmt.Errorf("the model loaded is %s %s, not version %s that the run pinned", meta.Name, meta.Version, w)
	}
	st := newState(r.Config, batch.Model{Name: meta.Name, Version: meta.Version}, labels, r.now().UTC())
	st.sum.StartCPUSeconds = cpuSeconds()
	r.Log.InfoContext(ctx, "batch task starting", "execution", r.Config.Task.Execution, "task", r.Config.Task.Index,
		"tasks", r.Config.Task.Count, "attempt", r.Config.Task.Attempt, "prefix", r.Config.Prefix,
		"model", meta.Name, "model_version", meta.Version, "workers", r.workers())
	if err := r.writeSummary(ctx, st.snapshot(r.now(), batch.StateRunning)); err != nil {
		return nil, err
	}

	stopProgress := r.progress(ctx, st)
	listErr := r.feed(ctx, bucket, folder, st)
	stopProgress()

	state := batch.StateFinished
	if listErr != nil || st.transient() > 0 {
		state = batch.StateFailed
	}
	sum := st.snapshot(r.now(), state)
	r.logProgress(ctx, sum, "batch task ended")
	// The summary is written even when ctx ended (SIGTERM at the task
	// timeout): a detached context, bounded.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := r.writeSummary(wctx, sum); err != nil {
		return sum, err
	}
	if err := r.mergeIfLast(wctx); err != nil {
		return sum, err
	}
	switch {
	case listErr != nil:
		return sum, listErr
	case sum.Transient > 0:
		return sum, fmt.Errorf("%d objects hit transient errors and have no result yet (errors %v): the task's retry or a re-run picks them up", sum.Transient, sum.Errors)
	}
	return sum, nil
}

// source checks the prefix and splits it into bucket and folder.
func (r *Runner) source() (bucket, folder string, err error) {
	p := r.Config.Prefix
	if !strings.HasPrefix(p, "gs://") {
		return "", "", fmt.Errorf("batch prefix %q: want gs://bucket/folder/", p)
	}
	bucket, folder, _, err = blob.Parse(p)
	if err != nil {
		return "", "", fmt.Errorf("batch prefix: %w", err)
	}
	if folder != "" && !strings.HasSuffix(folder, "/") {
		folder += "/"
	}
	if err := r.Uploader.Config.ValidateUpload(); err != nil {
		return "", "", err
	}
	if bucket == r.Uploader.Config.ResultsBucket {
		return "", "", fmt.Errorf("batch prefix %q is in RESULTS_BUCKET: results would be written among their sources", p)
	}
	return bucket, folder, nil
}

func (r *Runner) workers() int {
	if r.Config.Workers > 0 {
		return r.Config.Workers
	}
	if w := r.Uploader.Config.Workers; w > 0 {
		return w
	}
	return 4
}

// windowSize is how many objects of the shard share one listing of the
// results (to skip the per-object lookup).
const windowSize = 256

// item is a listed object and what the results listing says of it.
type item struct {
	o predict.ObjectInfo
	// done is the key of its result or error record for this generation,
	// if the listing showed one; unseen means it showed neither file.
	done   string
	unseen bool
}

// feed lists the prefix and hands the shard's images to the workers, a
// window at a time.
func (r *Runner) feed(ctx context.Context, bucket, folder string, st *state) error {
	items := make(chan item, r.workers())
	var wg sync.WaitGroup
	for range r.workers() {
		wg.Go(func() {
			for it := range items {
				r.one(ctx, it, folder, st)
			}
		})
	}
	var page []predict.ObjectInfo
	flush := func() error {
		if len(page) == 0 {
			return nil
		}
		for _, it := range r.window(ctx, folder, page) {
			select {
			case items <- it:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		page = page[:0]
		return nil
	}
	err := listObjects(ctx, r.Storage, bucket, folder, func(o predict.ObjectInfo) error {
		st.listed()
		if batch.Shard(o.Name, r.Config.Task.Count) != r.Config.Task.Index {
			return nil
		}
		if !predict.LooksLikeImage(o) {
			st.notImage()
			return nil
		}
		if page = append(page, o); len(page) == windowSize {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	close(items)
	wg.Wait()
	if err != nil {
		return fmt.Errorf("listing %s: %w", r.Config.Prefix, err)
	}
	return nil
}

// window lists the results between a page's first and last names (the
// listing is in name order, and a result is its object's name plus a
// suffix) and says for each object whether its result or error record
// for this generation is there, or neither file is. What the window
// misses only costs work: an object taken for unseen is still written
// under the conditional write's rule. A failed listing leaves every
// object to the per-object lookup.
func (r *Runner) window(ctx context.Context, folder string, page []predict.ObjectInfo) []item {
	out := make([]item, len(page))
	for i, o := range page {
		out[i].o = o
	}
	q := &storage.Query{Prefix: folder, StartOffset: page[0].Name, EndOffset: successor(page[len(page)-1].Name + predict.ResultSuffix)}
	if err := q.SetAttrSelection([]string{"Name", "Metadata"}); err != nil {
		return out
	}
	keys := map[string]map[string]string{}
	it := r.Storage.Bucket(r.Uploader.Config.ResultsBucket).Objects(ctx, q)
	for {
		a, err := it.Next()
		if errors.Is(err, iterator.Done) {
			break
		}
		if err != nil {
			r.Log.WarnContext(ctx, "batch: listing results, falling back to per-object lookups", "error", err.Error())
			return out
		}
		keys[a.Name] = a.Metadata
	}
	gen := func(md map[string]string, o predict.ObjectInfo) bool {
		return md[predict.SourceNameKey] == o.Name && md[predict.SourceGenerationKey] == strconv.FormatInt(o.Generation, 10)
	}
	for i, o := range page {
		res, hasRes := keys[o.Name+predict.ResultSuffix]
		rec, hasRec := keys[o.Name+predict.ErrorSuffix]
		switch {
		case hasRes && gen(res, o):
			out[i].done = o.Name + predict.ResultSuffix
		case hasRec && gen(rec, o):
			out[i].done = o.Name + predict.ErrorSuffix
		case !hasRes && !hasRec:
			out[i].unseen = true
		}
	}
	return out
}

// successor is the least string above every string that starts with p
// (p's last byte plus one; ResultSuffix ends in a letter).
func successor(p string) string { return p[:len(p)-1] + string(p[len(p)-1]+1) }

// one processes an object and counts its outcome.
func (r *Runner) one(ctx context.Context, it item, folder string, st *state) {
	o := it.o
	expected, ok := foldereval.Expected(folder, o.Name)
	if !ok {
		expected = ""
	}
	if it.done != "" {
		label, kind := r.stored(ctx, it.done)
		st.add(outcome{o: predict.OutcomeDuplicate, label: label, kind: kind}, expected)
		return
	}
	ev := predict.ObjectEvent{
		ID:     fmt.Sprintf("batch/%s/task-%d/attempt-%d", r.Config.Task.Execution, r.Config.Task.Index, r.Config.Task.Attempt),
		Bucket: o.Bucket, Name: o.Name, Generation: o.Generation, Size: o.Size, ContentType: o.ContentType,
	}
	if ctx.Err() != nil {
		st.add(outcome{kind: predict.KindCancelled, transient: true}, expected)
		return
	}
	o2, res, err := r.Uploader.Process(ctx, ev, it.unseen)
	out := outcome{o: o2}
	switch {
	case err != nil:
		out.transient, out.kind = true, predict.ErrorKind(err)
		r.Log.WarnContext(ctx, "batch: transient failure, left for a retry", "object", ev.URI(), "error", err.Error(), "error_kind", out.kind)
	case res != nil && res.Kind != "":
		out.kind = res.Kind // an error record, written now or found
	case res != nil:
		out.label = res.Label
	case o2 == predict.OutcomeDuplicate:
		out.label, out.kind = r.stored(ctx, o.Name+predict.ResultSuffix)
	}
	st.add(out, expected)
}

// stored reads the label (or the error kind) of an existing result or
// error record, for the run's evaluation.
func (r *Runner) stored(ctx context.Context, key string) (label, kind string) {
	b, _, err := r.Uploader.Results.Read(ctx, key, 1<<20)
	if err != nil {
		return "", ""
	}
	var res predict.UploadResult
	if json.Unmarshal(b, &res) != nil {
		return "", ""
	}
	return res.Label, res.Kind
}

// progress logs and rewrites the task summary every Config.Progress until
// stop is called.
func (r *Runner) progress(ctx context.Context, st *state) (stop func()) {
	every := r.Config.Progress
	if every <= 0 {
		every = DefaultProgress
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				s := st.snapshot(r.now(), batch.StateRunning)
				r.logProgress(ctx, s, "batch progress")
				if err := r.writeSummary(ctx, s); err != nil {
					r.Log.WarnContext(ctx, "batch: writing the task summary", "error", err.Error())
				}
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

func (r *Runner) logProgress(ctx context.Context, s *batch.Summary, msg string) {
	attrs := []any{"execution", s.Execution, "task", r.Config.Task.Index, "attempt", s.Attempt, "state", s.State,
		"listed", s.Listed, "images", s.Images, "processed", s.Processed(), "written", s.Written, "failed", s.Failed,
		"done_before", s.Done, "transient", s.Transient, "rate", s.Rate, "seconds", s.Seconds, "peak_rss_bytes", s.PeakRSS}
	if len(s.Errors) > 0 {
		attrs = append(attrs, "errors", s.Errors)
	}
	r.Log.InfoContext(ctx, msg, attrs...)
}

func (r *Runner) writeSummary(ctx context.Context, s *batch.Summary) error {
	return writeJSON(ctx, r.Uploader.Results, batch.TaskKey(s.Execution, r.Config.Task.Index), s)
}

func writeJSON(ctx context.Context, st blob.Store, key string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding %s: %w", key, err)
	}
	if _, err := st.Write(ctx, key, append(b, '\n'), blob.WriteOptions{ContentType: "application/json"}); err != nil {
		return fmt.Errorf("writing %s: %w", st.URI(key), err)
	}
	return nil
}

// mergeIfLast writes the run summary once every task's summary is final.
// Tasks write their own final summary before listing the others', so of
// the tasks that finish last at least one sees them all (GCS listings are
// strongly consistent); two that both do write the same counts.
func (r *Runner) mergeIfLast(ctx context.Context) error {
	exec := r.Config.Task.Execution
	tasks, err := batch.ReadTaskSummaries(ctx, r.Uploader.Results, exec)
	if err != nil {
		return err
	}
	if len(tasks) < r.Config.Task.Count {
		return nil
	}
	for _, t := range tasks {
		if !t.Final() {
			return nil
		}
	}
	sum, err := batch.Merge(exec, tasks)
	if err != nil {
		return err
	}
	if err := writeJSON(ctx, r.Uploader.Results, batch.SummaryKey(exec), sum); err != nil {
		return err
	}
	r.Log.InfoContext(ctx, "batch run summary written", "summary", r.Uploader.Results.URI(batch.SummaryKey(exec)),
		"images", sum.Images, "written", sum.Written, "failed", sum.Failed, "done_before", sum.Done, "transient", sum.Transient, "accuracy", sum.Accuracy)
	return nil
}

// listObjects streams the objects below prefix, one page at a time, to fn
// (folder placeholders left out), stopping at fn's first error.
func listObjects(ctx context.Context, c *storage.Client, bucket, prefix string, fn func(predict.ObjectInfo) error) error {
	q := &storage.Query{Prefix: prefix}
	if err := q.SetAttrSelection([]string{"Name", "Generation", "Size", "ContentType"}); err != nil {
		return err
	}
	it := c.Bucket(bucket).Objects(ctx, q)
	for {
		a, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return nil
		}
		if err != nil {
			return err
		}
		if strings.HasSuffix(a.Name, "/") {
			continue
		}
		if err := fn(predict.ObjectInfo{Bucket: bucket, Name: a.Name, Generation: a.Generation, Size: a.Size, ContentType: a.ContentType}); err != nil {
			return err
		}
	}
}
