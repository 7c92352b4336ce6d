// Package task runs one task of a batch prediction job: it lists the
// execution's gs:// prefix page by page, keeps the objects of its shard
// (batch.Shard), reads each generation listed, classifies it through the
// prediction core (predict.Service.Classify) and records it as
// PredictOnUpload would (predict.Uploader.Record: the same result schema
// and exactly-once rule per object generation), so that a retried task or
// a re-run skips every object that already has its result. It logs a
// progress line and rewrites its task summary every Config.Progress, and
// the last task to finish merges the run summary (see package batch).
//
// Memory is bounded by the worker count, not the prefix: the listing is
// streamed and only counters are kept.
package task

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/orchard-mlops/orchard/functions/batch"
	"github.com/orchard-mlops/orchard/functions/predict"
	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/shared/events"
	"github.com/orchard-mlops/orchard/shared/results"
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

// Opener opens the store of a gs:// URI; *blob.Opener is the production
// one (one storage client per process).
type Opener interface {
	Open(ctx context.Context, uri string) (blob.Store, error)
}

// Runner runs a task against the source bucket and the prediction core.
type Runner struct {
	Config   Config
	Storage  Opener            // opens the source bucket: listing and generation reads
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
	src, err := r.Storage.Open(ctx, "gs://"+bucket)
	if err != nil {
		return nil, fmt.Errorf("opening the source bucket: %w", err)
	}
	lease, err := r.Uploader.Acquire(ctx)
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
	listErr := r.feed(ctx, src, folder, st)
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
	o blob.Attrs
	// done is the key of its result or error record for this generation,
	// if the listing showed one; unseen means it showed neither file.
	done   string
	unseen bool
}

// feed lists the prefix (page by page, as blob.Store.List streams it) and
// hands the shard's images to the workers, a window at a time.
func (r *Runner) feed(ctx context.Context, src blob.Store, folder string, st *state) error {
	items := make(chan item, r.workers())
	var wg sync.WaitGroup
	for range r.workers() {
		wg.Go(func() {
			for it := range items {
				r.one(ctx, src, it, folder, st)
			}
		})
	}
	var page []blob.Attrs
	flush := func() error {
		if len(page) == 0 {
			return nil
		}
		for _, it := range r.window(ctx, page) {
			select {
			case items <- it:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		page = page[:0]
		return nil
	}
	err := r.list(ctx, src, folder, st, func(o blob.Attrs) error {
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

// list streams the images of the task's shard below folder to fn,
// counting what it lists, and stops at fn's first error.
func (r *Runner) list(ctx context.Context, src blob.Store, folder string, st *state, fn func(blob.Attrs) error) error {
	for o, err := range src.List(ctx, blob.ListOptions{Prefix: folder}) {
		if err != nil {
			return err
		}
		st.listed()
		if batch.Shard(o.Key, r.Config.Task.Count) != r.Config.Task.Index {
			continue
		}
		if !predict.LooksLikeImage(o) {
			st.notImage()
			continue
		}
		if err := fn(o); err != nil {
			return err
		}
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
func (r *Runner) window(ctx context.Context, page []blob.Attrs) []item {
	out := make([]item, len(page))
	for i, o := range page {
		out[i].o = o
	}
	end := successor(page[len(page)-1].Key + results.ResultSuffix)
	keys := map[string]map[string]string{}
	for a, err := range r.Uploader.Results.Store.List(ctx, blob.ListOptions{StartAfter: page[0].Key}) {
		if err != nil {
			r.Log.WarnContext(ctx, "batch: listing results, falling back to per-object lookups", "error", err.Error())
			return out
		}
		if a.Key >= end {
			break
		}
		keys[a.Key] = a.Metadata
	}
	gen := func(md map[string]string, o blob.Attrs) bool {
		return md[results.SourceNameKey] == o.Key && md[results.SourceGenerationKey] == strconv.FormatInt(o.Generation, 10)
	}
	for i, o := range page {
		res, hasRes := keys[results.ObjectName(o.Key, false)]
		rec, hasRec := keys[results.ObjectName(o.Key, true)]
		switch {
		case hasRes && gen(res, o):
			out[i].done = results.ObjectName(o.Key, false)
		case hasRec && gen(rec, o):
			out[i].done = results.ObjectName(o.Key, true)
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
func (r *Runner) one(ctx context.Context, src blob.Store, it item, folder string, st *state) {
	o := it.o
	expected := st.expected(folder, o.Key)
	if it.done != "" {
		label, kind := r.stored(ctx, it.done)
		st.add(outcome{o: predict.OutcomeDuplicate, label: label, kind: kind}, expected)
		return
	}
	ev := events.ObjectEvent{
		ID:     fmt.Sprintf("batch/%s/task-%d/attempt-%d", r.Config.Task.Execution, r.Config.Task.Index, r.Config.Task.Attempt),
		Bucket: o.Bucket, Name: o.Key, Generation: o.Generation, Size: o.Size, ContentType: o.ContentType,
	}
	if ctx.Err() != nil {
		st.add(outcome{kind: predict.KindCancelled, transient: true}, expected)
		return
	}
	o2, res, err := r.process(ctx, src, ev, it.unseen)
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
		out.label, out.kind = r.stored(ctx, results.ObjectName(o.Key, false))
	}
	st.add(out, expected)
}

// process looks up, reads, classifies and records one object generation,
// as PredictOnUpload does for an event (predict.Uploader's process): the
// lookup first, unless the window has just shown no result (unseen; the
// conditional write still lets a result that appeared meanwhile win).
// Only transient failures return an error (nothing is recorded then).
func (r *Runner) process(ctx context.Context, src blob.Store, ev events.ObjectEvent, unseen bool) (predict.Outcome, *results.Upload, error) {
	u := r.Uploader
	if !unseen {
		switch o, err := u.Results.Lookup(ctx, results.ObjectName(ev.Name, false), ev.Name, ev.Generation); {
		case err != nil:
			return predict.OutcomeRetry, nil, err
		case o != "":
			return o, nil, nil
		}
	}
	lease, err := u.Acquire(ctx)
	if err != nil {
		return predict.OutcomeRetry, nil, err
	}
	defer lease.Release()
	s := predict.Source{}
	s.Data, s.Err = r.read(ctx, src, ev)
	out := u.Classify(ctx, lease.Classifier, []predict.Source{s}, predict.Options{TopK: u.Config.TopK, Via: "batch"})[0]
	return u.Record(ctx, ev, lease.Classifier, out)
}

// read reads the listed generation within MaxImageBytes and
// StorageTimeout (an object overwritten since the listing is not found:
// its new generation is a later run's).
func (r *Runner) read(ctx context.Context, src blob.Store, ev events.ObjectEvent) ([]byte, error) {
	limit := r.Uploader.Config.MaxImageBytes
	if ev.Size > limit {
		return nil, fmt.Errorf("%s is %d bytes, limit %d: %w", ev.URI(), ev.Size, limit, blob.ErrTooLarge)
	}
	ctx, cancel := context.WithTimeout(ctx, r.Uploader.Config.StorageTimeout)
	defer cancel()
	data, _, err := src.ReadGeneration(ctx, ev.Name, ev.Generation, limit)
	return data, err
}

// stored reads the label (or the error kind) of an existing result or
// error record, for the run's evaluation.
func (r *Runner) stored(ctx context.Context, key string) (label, kind string) {
	res, err := r.Uploader.Results.Stored(ctx, key)
	if err != nil || res == nil {
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
	return writeJSON(ctx, r.Uploader.Results.Store, batch.TaskKey(s.Execution, r.Config.Task.Index), s)
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
	tasks, err := batch.ReadTaskSummaries(ctx, r.Uploader.Results.Store, exec)
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
	if err := writeJSON(ctx, r.Uploader.Results.Store, batch.SummaryKey(exec), sum); err != nil {
		return err
	}
	r.Log.InfoContext(ctx, "batch run summary written", "summary", r.Uploader.Results.Store.URI(batch.SummaryKey(exec)),
		"images", sum.Images, "written", sum.Written, "failed", sum.Failed, "done_before", sum.Done, "transient", sum.Transient, "accuracy", sum.Accuracy)
	return nil
}
