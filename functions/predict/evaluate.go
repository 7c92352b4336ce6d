package predict

import "strings"

// Evaluation scores the top-1 predictions of a labelled folder, one whose
// every image sits in a sub-folder named after a model label (the label
// it is expected to get).
type Evaluation struct {
	Accuracy  *float64   // correct / Evaluated; nil when nothing was scored
	Evaluated int        // images classified (failed ones are not scored)
	Confusion *Confusion // expected (rows) by predicted (columns)
}

// Confusion counts images by expected label (rows) and predicted top-1
// label (columns), both in Labels order.
type Confusion struct {
	Labels []string `json:"labels"`
	Matrix [][]int  `json:"matrix"`
}

// ExpectedLabels returns each object's expected label, the first
// sub-folder of its name below folder, or nil unless every name lies in a
// sub-folder named after one of labels.
func ExpectedLabels(labels []string, folder string, names []string) []string {
	index := labelIndex(labels)
	out := make([]string, len(names))
	for i, n := range names {
		sub, _, nested := strings.Cut(strings.TrimPrefix(n, folder), "/")
		if _, ok := index[sub]; !nested || !ok {
			return nil
		}
		out[i] = sub
	}
	return out
}

// Evaluate scores got against expected (both in the same order, expected
// labels among labels).
func Evaluate(labels, expected []string, got []Classification) Evaluation {
	index := labelIndex(labels)
	conf := &Confusion{Labels: labels, Matrix: make([][]int, len(labels))}
	for i := range conf.Matrix {
		conf.Matrix[i] = make([]int, len(labels))
	}
	ev := Evaluation{Confusion: conf}
	correct := 0
	for i, want := range expected {
		if len(got[i].Predictions) == 0 {
			continue // failed images are listed with their error, not scored
		}
		top := got[i].Predictions[0].Label
		conf.Matrix[index[want]][index[top]]++
		ev.Evaluated++
		if top == want {
			correct++
		}
	}
	if ev.Evaluated > 0 {
		acc := float64(correct) / float64(ev.Evaluated)
		ev.Accuracy = &acc
	}
	return ev
}

func labelIndex(labels []string) map[string]int {
	index := make(map[string]int, len(labels))
	for i, l := range labels {
		index[l] = i
	}
	return index
}
