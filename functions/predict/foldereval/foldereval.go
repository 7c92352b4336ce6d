// Package foldereval scores classifications of a folder whose immediate
// sub-folders name the expected labels (gs://b/photos/apple/1.jpg is an
// apple): accuracy and the confusion matrix. Predict's prefix mode and the
// batch job both use it; it is free of onnxruntime so that the CLI can
// print and merge what the job writes.
package foldereval

import (
	"fmt"
	"slices"
	"strings"
)

// Expected returns the immediate sub-folder of name below prefix (a folder
// ending in "/", or ""), and false when name sits directly in prefix.
func Expected(prefix, name string) (string, bool) {
	sub, _, nested := strings.Cut(strings.TrimPrefix(name, prefix), "/")
	return sub, nested && sub != ""
}

// Confusion counts images by expected label (rows) and predicted top-1
// label (columns), both in Labels order.
type Confusion struct {
	Labels []string `json:"labels"`
	Matrix [][]int  `json:"matrix"`
}

// Eval accumulates the scores of one evaluation. The zero value is not
// usable; make one with New.
type Eval struct {
	Confusion
	Evaluated int `json:"evaluated"`
	Correct   int `json:"correct"`
	index     map[string]int
}

// New starts an evaluation over the model's labels.
func New(labels []string) *Eval {
	e := &Eval{Confusion: Confusion{Labels: slices.Clone(labels), Matrix: make([][]int, len(labels))}}
	for i := range e.Matrix {
		e.Matrix[i] = make([]int, len(labels))
	}
	e.reindex()
	return e
}

func (e *Eval) reindex() {
	e.index = make(map[string]int, len(e.Labels))
	for i, l := range e.Labels {
		e.index[l] = i
	}
}

// Known reports whether label is one of the model's labels: a folder is
// evaluated only when every image sits in a sub-folder named after one.
func (e *Eval) Known(label string) bool {
	if e.index == nil {
		e.reindex()
	}
	_, ok := e.index[label]
	return ok
}

// Add scores one classified image. Labels outside the model's are ignored
// (the caller checks Known first).
func (e *Eval) Add(expected, got string) {
	if e.index == nil {
		e.reindex()
	}
	i, ok1 := e.index[expected]
	j, ok2 := e.index[got]
	if !ok1 || !ok2 {
		return
	}
	e.Matrix[i][j]++
	e.Evaluated++
	if i == j {
		e.Correct++
	}
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
