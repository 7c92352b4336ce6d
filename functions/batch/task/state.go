package task

import (
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/orchard-mlops/orchard/functions/batch"
	"github.com/orchard-mlops/orchard/functions/predict"
	"github.com/orchard-mlops/orchard/shared/model"
)

// outcome is what happened to one object.
type outcome struct {
	o         predict.Outcome
	label     string // the top-1 label, written now or found
	kind      string // an error kind: a record written or found, or a transient failure
	transient bool
}

// state is a task's counters, shared by its workers.
type state struct {
	mu         sync.Mutex
	sum        batch.Summary
	eval       *batch.Eval
	unlabelled bool
}

func newState(c Config, m batch.Model, labels []string, start time.Time) *state {
	idx := c.Task.Index
	return &state{
		sum: batch.Summary{Execution: c.Task.Execution, Prefix: c.Prefix, Model: m, Task: &idx, Attempt: c.Task.Attempt,
			Tasks: c.Task.Count, Errors: map[string]int64{}, Started: start},
		eval: batch.NewEval(labels),
	}
}

func (s *state) listed() {
	s.mu.Lock()
	s.sum.Listed++
	s.mu.Unlock()
}

func (s *state) notImage() {
	s.mu.Lock()
	s.sum.Other++
	s.mu.Unlock()
}

func (s *state) transient() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sum.Transient
}

// expected is the label an object below folder is expected to get, its
// sub-folder when that names a model label (predict.ExpectedLabels), or "".
func (s *state) expected(folder, name string) string {
	if l := predict.ExpectedLabels(s.eval.Labels, folder, []string{name}); l != nil {
		return l[0]
	}
	return ""
}

// add counts an image's outcome; expected is its expected label ("" if
// none: the run is then not an evaluation).
func (s *state) add(o outcome, expected string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sum.Images++
	if expected == "" {
		s.unlabelled = true
	}
	if o.kind != "" {
		s.sum.Errors[o.kind]++
	}
	switch {
	case o.transient:
		s.sum.Transient++
		return
	case o.o == predict.OutcomeWritten:
		s.sum.Written++
	case o.o == predict.OutcomeFailed:
		s.sum.Failed++
	case o.o == predict.OutcomeDuplicate:
		s.sum.Done++
	case o.o == predict.OutcomeStale:
		s.sum.Stale++
	case o.o == predict.OutcomeCollision:
		s.sum.Collision++
	}
	if o.label != "" && expected != "" {
		s.score(expected, o.label)
	}
}

// score adds an image whose top-1 label is got to the evaluation, scored
// by predict.Evaluate. A label outside the model's (a result of another
// model) is not scored.
func (s *state) score(expected, got string) {
	if !slices.Contains(s.eval.Labels, got) {
		return
	}
	ev := predict.Evaluate(s.eval.Labels, []string{expected},
		[]predict.Classification{{Predictions: []model.Prediction{{Label: got}}}})
	one := &batch.Eval{Labels: ev.Confusion.Labels, Matrix: ev.Confusion.Matrix, Evaluated: ev.Evaluated}
	for i := range one.Matrix {
		one.Correct += one.Matrix[i][i]
	}
	_ = s.eval.Merge(one) // same labels
}

// snapshot is the summary as of now.
func (s *state) snapshot(now time.Time, st string) *batch.Summary {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.sum
	out.State, out.Updated, out.PeakRSS, out.CPUSeconds = st, now.UTC(), peakRSS(), cpuSeconds()
	out.Errors = maps.Clone(s.sum.Errors)
	if len(out.Errors) == 0 {
		out.Errors = nil
	}
	out.Labelled = !s.unlabelled && out.Images > 0
	if out.Labelled {
		e := batch.NewEval(s.eval.Labels)
		_ = e.Merge(s.eval) // same labels
		out.Eval, out.Accuracy = e, e.Accuracy()
	}
	out.Seconds = out.Updated.Sub(out.Started).Seconds()
	if out.Seconds > 0 {
		out.Rate = float64(out.Processed()) / out.Seconds
	}
	return &out
}
