package model

import (
	"math"
	"sort"
)

// Prediction is one label with its softmax probability.
type Prediction struct {
	Label string  `json:"label"`
	Score float64 `json:"score"`
}

// TopK turns one image's logits into the k most probable labels, sorted by
// score (ties by label), with softmax scores. k <= 0 or k > labels gives all.
func TopK(labels []string, logits []float32, k int) []Prediction {
	probs := Softmax(logits)
	ps := make([]Prediction, len(labels))
	for i, l := range labels {
		ps[i] = Prediction{Label: l, Score: probs[i]}
	}
	sort.SliceStable(ps, func(i, j int) bool {
		if ps[i].Score != ps[j].Score {
			return ps[i].Score > ps[j].Score
		}
		return ps[i].Label < ps[j].Label
	})
	if k > 0 && k < len(ps) {
		ps = ps[:k]
	}
	return ps
}

// Softmax computes probabilities in float64, subtracting the maximum first
// so large logits cannot overflow.
func Softmax(logits []float32) []float64 {
	out := make([]float64, len(logits))
	if len(logits) == 0 {
		return out
	}
	m := math.Inf(-1)
	for _, v := range logits {
		m = math.Max(m, float64(v))
	}
	var sum float64
	for i, v := range logits {
		out[i] = math.Exp(float64(v) - m)
		sum += out[i]
	}
	for i := range out {
		out[i] /= sum
	}
	return out
}
