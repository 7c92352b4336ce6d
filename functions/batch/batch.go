// Package batch is the light part of batch prediction (a Cloud Run job that
// classifies every image below a gs:// prefix, sharded over its tasks): the
// shard rule, the task environment Cloud Run sets, where a run's summaries
// live, and the summary schema and its merge. The task itself (listing,
// classifying, recording) is package batch/task, which links onnxruntime;
// this package does not, so the orchard CLI can start runs and print their
// summaries.
//
// # Layout in the results bucket
//
// Results are the ones PredictOnUpload writes, under the same names and the
// same exactly-once rule per source generation (see functions/predict): a
// re-run or a retried task finds them and skips the object. Beside them:
//
//	_batch/<execution>/tasks/<index>.json   per-task summary (rewritten while it runs)
//	_batch/<execution>/summary.json         the run summary, written by the last task to finish
package batch

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/shared/errlist"
)

// Environment variables of a batch task. Cloud Run sets the CLOUD_RUN_*
// ones in every task of a job execution; the launcher (orchard batch) sets
// PrefixEnv and ModelVersionEnv through the execution's overrides.
const (
	TaskIndexEnv    = "CLOUD_RUN_TASK_INDEX"
	TaskCountEnv    = "CLOUD_RUN_TASK_COUNT"
	TaskAttemptEnv  = "CLOUD_RUN_TASK_ATTEMPT"
	ExecutionEnv    = "CLOUD_RUN_EXECUTION"
	JobEnv          = "CLOUD_RUN_JOB"
	PrefixEnv       = "BATCH_PREFIX"  // gs://bucket/folder/ to classify
	ModelVersionEnv = "MODEL_VERSION" // the registry version every task serves
)

// Shard is the task (0..count-1) that owns an object: FNV-1a of its name
// modulo count. Every task lists the whole prefix and keeps its own share,
// so shards need no coordination, stay stable across retries and re-runs,
// and every object is in exactly one.
func Shard(name string, count int) int {
	if count <= 1 {
		return 0
	}
	h := fnv.New64a()
	h.Write([]byte(name))
	return int(h.Sum64() % uint64(count))
}

// Task is one task's place in its execution.
type Task struct {
	Execution string // the execution's ID (its name's last element)
	Index     int
	Count     int
	Attempt   int
}

// TaskFromEnv reads the variables Cloud Run sets. Outside Cloud Run (no
// CLOUD_RUN_TASK_COUNT) it is task 0 of 1 of execution "manual".
func TaskFromEnv(getenv func(string) string) (Task, error) {
	t := Task{Execution: getenv(ExecutionEnv), Count: 1}
	var errs []error
	num := func(key string, dst *int, minimum int) {
		s := strings.TrimSpace(getenv(key))
		if s == "" {
			return
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < minimum {
			errs = append(errs, fmt.Errorf("%s=%q: want an integer >= %d", key, s, minimum))
			return
		}
		*dst = n
	}
	num(TaskIndexEnv, &t.Index, 0)
	num(TaskCountEnv, &t.Count, 1)
	num(TaskAttemptEnv, &t.Attempt, 0)
	if t.Index >= t.Count {
		errs = append(errs, fmt.Errorf("%s=%d is not below %s=%d", TaskIndexEnv, t.Index, TaskCountEnv, t.Count))
	}
	if t.Execution == "" {
		t.Execution = "manual"
	}
	if strings.ContainsAny(t.Execution, "/ ") {
		errs = append(errs, fmt.Errorf("%s=%q: want an execution ID, not a path", ExecutionEnv, t.Execution))
	}
	if err := errlist.Join(errs...); err != nil {
		return t, fmt.Errorf("batch task environment: %w", err)
	}
	return t, nil
}

// RunPrefix is the folder of an execution's summaries in the results bucket.
func RunPrefix(execution string) string { return "_batch/" + execution + "/" }

// TaskKey is a task's summary object.
func TaskKey(execution string, index int) string {
	return fmt.Sprintf("%stasks/%05d.json", RunPrefix(execution), index)
}

// SummaryKey is the run summary object.
func SummaryKey(execution string) string { return RunPrefix(execution) + "summary.json" }

// Summary states.
const (
	StateRunning  = "running"
	StateFinished = "finished" // every object of the shard has a result or an error record
	StateFailed   = "failed"   // some objects hit transient errors and have neither (the task exits non-zero, so it is retried)
)

// Model names the model version a run used: the same for every task.
type Model struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// Summary is a task's account of its shard, or (merged) a run's of the
// whole prefix. Counts are of image objects; an object is in exactly one
// of Written, Failed, Done, Stale, Collision and Transient.
type Summary struct {
	Execution string `json:"execution"`
	Prefix    string `json:"prefix"`
	Model     Model  `json:"model"`
	// Task and Attempt are a task's; a run summary has Tasks only.
	Task    *int   `json:"task,omitempty"`
	Attempt int    `json:"attempt,omitempty"`
	Tasks   int    `json:"tasks"`
	State   string `json:"state"`

	Listed    int64 `json:"listed"`    // objects below the prefix (all shards) that this task looked at
	Images    int64 `json:"images"`    // image objects in the shard(s)
	Other     int64 `json:"other"`     // objects in the shard(s) that are not images (by name and content type): left alone
	Written   int64 `json:"written"`   // results written by this run
	Failed    int64 `json:"failed"`    // error records written by this run (the image can never be classified)
	Done      int64 `json:"done"`      // already had their result or error record (an earlier run or attempt)
	Stale     int64 `json:"stale"`     // a newer generation of the object already has its result
	Collision int64 `json:"collision"` // the result name is taken by another object's result file
	Transient int64 `json:"transient"` // neither result nor record: a retry or re-run picks them up
	// Errors counts error kinds (predict's taxonomy): the records written
	// or found, and the transient failures.
	Errors map[string]int64 `json:"errors,omitempty"`

	// Labelled: every image sits in a sub-folder named after one of the
	// model's labels; then Eval holds accuracy and the confusion matrix.
	Labelled bool     `json:"labelled"`
	Eval     *Eval    `json:"evaluation,omitempty"`
	Accuracy *float64 `json:"accuracy,omitempty"`

	// PeakRSS is the task's peak resident memory (the largest task's in a
	// run summary): bounded by the workers, not the prefix.
	PeakRSS int64 `json:"peak_rss_bytes,omitempty"`
	// CPUSeconds is the task's CPU time (all threads; summed over the
	// tasks in a run summary), StartCPUSeconds the part spent before the
	// first object (start-up, model load).
	CPUSeconds      float64 `json:"cpu_seconds,omitempty"`
	StartCPUSeconds float64 `json:"start_cpu_seconds,omitempty"`

	Started time.Time `json:"started"`
	Updated time.Time `json:"updated"`
	Seconds float64   `json:"seconds"`
	Rate    float64   `json:"images_per_second"`
}

// Processed is how many images have their outcome.
func (s *Summary) Processed() int64 {
	return s.Written + s.Failed + s.Done + s.Stale + s.Collision + s.Transient
}

// Final reports whether the summary's task has ended.
func (s *Summary) Final() bool { return s.State == StateFinished || s.State == StateFailed }

// Merge adds task summaries of one execution into a run summary. The run
// is labelled only if every task's shard was (and some image was seen);
// its time span is from the first start to the last update, and its rate
// the images over that span.
func Merge(execution string, tasks []*Summary) (*Summary, error) {
	out := &Summary{Execution: execution, State: StateFinished, Labelled: true, Errors: map[string]int64{}}
	for i, t := range tasks {
		if i == 0 {
			out.Prefix, out.Model, out.Tasks, out.Started = t.Prefix, t.Model, t.Tasks, t.Started
		}
		if t.Model != out.Model {
			return nil, fmt.Errorf("merging %s: task %d used model %s %s, task 0 %s %s", execution, taskIndex(t), t.Model.Name, t.Model.Version, out.Model.Name, out.Model.Version)
		}
		switch {
		case t.State == StateRunning:
			out.State = StateRunning
		case t.State == StateFailed && out.State != StateRunning:
			out.State = StateFailed
		}
		out.Images += t.Images
		out.Other += t.Other
		out.Written += t.Written
		out.Failed += t.Failed
		out.Done += t.Done
		out.Stale += t.Stale
		out.Collision += t.Collision
		out.Transient += t.Transient
		out.Listed = max(out.Listed, t.Listed)
		out.PeakRSS = max(out.PeakRSS, t.PeakRSS)
		out.CPUSeconds += t.CPUSeconds
		out.StartCPUSeconds += t.StartCPUSeconds
		for k, n := range t.Errors {
			out.Errors[k] += n
		}
		if t.Started.Before(out.Started) {
			out.Started = t.Started
		}
		if t.Updated.After(out.Updated) {
			out.Updated = t.Updated
		}
		if err := out.mergeEval(t); err != nil {
			return nil, fmt.Errorf("merging %s: task %d: %w", execution, taskIndex(t), err)
		}
	}
	if len(tasks) < out.Tasks {
		out.State = StateRunning
	}
	if out.Images == 0 || !out.Labelled {
		out.Labelled, out.Eval = false, nil
	}
	if out.Eval != nil {
		out.Accuracy = out.Eval.Accuracy()
	}
	if len(out.Errors) == 0 {
		out.Errors = nil
	}
	out.Seconds = out.Updated.Sub(out.Started).Seconds()
	if out.Seconds > 0 {
		out.Rate = float64(out.Processed()) / out.Seconds
	}
	return out, nil
}

func (s *Summary) mergeEval(t *Summary) error {
	if !t.Labelled || t.Eval == nil {
		// A task that saw no image says nothing against the labels.
		if t.Images > 0 {
			s.Labelled = false
		}
		return nil
	}
	if s.Eval == nil {
		s.Eval = NewEval(t.Eval.Labels)
	}
	return s.Eval.Merge(t.Eval)
}

// Eval is a folder evaluation summed over images, windows and tasks: the
// confusion matrix of predict.Evaluate (expected labels as rows, top-1
// predictions as columns, both in Labels order) and its counts. The
// scoring itself is predict's; a run only adds matrices up.
type Eval struct {
	Labels    []string `json:"labels"`
	Matrix    [][]int  `json:"matrix"`
	Evaluated int      `json:"evaluated"`
	Correct   int      `json:"correct"`
}

// NewEval is an empty evaluation over the model's labels.
func NewEval(labels []string) *Eval {
	e := &Eval{Labels: slices.Clone(labels), Matrix: make([][]int, len(labels))}
	for i := range e.Matrix {
		e.Matrix[i] = make([]int, len(labels))
	}
	return e
}

// Accuracy is Correct/Evaluated, or nil when nothing was evaluated.
func (e *Eval) Accuracy() *float64 {
	if e.Evaluated == 0 {
		return nil
	}
	a := float64(e.Correct) / float64(e.Evaluated)
	return &a
}

// Merge adds another evaluation's counts (over the same labels, in the
// same order) to e.
func (e *Eval) Merge(o *Eval) error {
	if !slices.Equal(e.Labels, o.Labels) || len(o.Matrix) != len(e.Matrix) {
		return fmt.Errorf("merging evaluations: label sets differ (%d and %d labels)", len(e.Labels), len(o.Labels))
	}
	for i := range e.Matrix {
		if len(o.Matrix[i]) != len(e.Matrix[i]) {
			return fmt.Errorf("merging evaluations: row %d has %d columns, want %d", i, len(o.Matrix[i]), len(e.Matrix[i]))
		}
		for j := range e.Matrix[i] {
			e.Matrix[i][j] += o.Matrix[i][j]
		}
	}
	e.Evaluated += o.Evaluated
	e.Correct += o.Correct
	return nil
}

func taskIndex(t *Summary) int {
	if t.Task == nil {
		return -1
	}
	return *t.Task
}

// ReadTaskSummaries reads the task summaries of an execution, in task order.
func ReadTaskSummaries(ctx context.Context, st blob.Store, execution string) ([]*Summary, error) {
	as, err := blob.Collect(ctx, st, blob.ListOptions{Prefix: RunPrefix(execution) + "tasks/"}, blob.Limits{})
	if err != nil {
		return nil, fmt.Errorf("listing the task summaries of %s: %w", execution, err)
	}
	var out []*Summary
	for _, a := range as {
		b, _, err := st.Read(ctx, a.Key, 16<<20)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", st.URI(a.Key), err)
		}
		var s Summary
		if err := json.Unmarshal(b, &s); err != nil {
			return nil, fmt.Errorf("reading %s: %w", st.URI(a.Key), err)
		}
		out = append(out, &s)
	}
	return out, nil
}
