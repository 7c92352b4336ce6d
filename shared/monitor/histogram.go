package monitor

import (
	"math"
	"sort"
)

// Histogram counts values in Bins equal bins over [Lo, Hi]; values outside
// fall into the first or last bin, and Min and Max keep the true range.
// Baseline and window histograms of a feature share the feature's bins, so
// they compare bin by bin.
type Histogram struct {
	Lo     float64 `json:"lo"`
	Hi     float64 `json:"hi"`
	Counts []int64 `json:"counts"`
	N      int64   `json:"n"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
}

// NewHistogram is an empty histogram of bins bins over [lo, hi].
func NewHistogram(lo, hi float64, bins int) *Histogram {
	return &Histogram{Lo: lo, Hi: hi, Counts: make([]int64, bins)}
}

// Add counts v. NaN is ignored.
func (h *Histogram) Add(v float64) {
	if math.IsNaN(v) || len(h.Counts) == 0 {
		return
	}
	i := int(float64(len(h.Counts)) * (v - h.Lo) / (h.Hi - h.Lo))
	i = min(max(i, 0), len(h.Counts)-1)
	h.Counts[i]++
	if h.N == 0 || v < h.Min {
		h.Min = v
	}
	if h.N == 0 || v > h.Max {
		h.Max = v
	}
	h.N++
}

// Shares are the bin counts divided by N (all zero when empty).
func (h *Histogram) Shares() []float64 {
	out := make([]float64, len(h.Counts))
	if h.N == 0 {
		return out
	}
	for i, c := range h.Counts {
		out[i] = float64(c) / float64(h.N)
	}
	return out
}

// JSDivergence is the Jensen-Shannon divergence, in bits (0..1), between
// two distributions over the same bins, as Vertex AI Model Monitoring uses
// for numeric features. It is symmetric and finite when a bin is empty on
// one side. Different lengths or an empty side give NaN.
func JSDivergence(p, q []float64) float64 {
	if len(p) != len(q) || sum(p) == 0 || sum(q) == 0 {
		return math.NaN()
	}
	sp, sq := sum(p), sum(q)
	var d float64
	for i := range p {
		a, b := p[i]/sp, q[i]/sq
		m := (a + b) / 2
		if a > 0 {
			d += a * math.Log2(a/m) / 2
		}
		if b > 0 {
			d += b * math.Log2(b/m) / 2
		}
	}
	return min(max(d, 0), 1)
}

func sum(v []float64) float64 {
	var s float64
	for _, x := range v {
		s += x
	}
	return s
}

// Categorical counts the values of a categorical feature (predicted label,
// image format). It keeps at most MaxCategories distinct values; the rest
// count under Other, so a stream of odd values cannot grow it without bound.
type Categorical struct {
	Counts map[string]int64 `json:"counts"`
	N      int64            `json:"n"`
}

// MaxCategories bounds a Categorical's distinct values.
const MaxCategories = 256

// Other is the category that values past MaxCategories count under.
const Other = "(other)"

// NewCategorical is an empty Categorical.
func NewCategorical() *Categorical { return &Categorical{Counts: map[string]int64{}} }

// Add counts v.
func (c *Categorical) Add(v string) {
	if _, ok := c.Counts[v]; !ok && len(c.Counts) >= MaxCategories {
		v = Other
	}
	c.Counts[v]++
	c.N++
}

// Keys are the categories of both, sorted.
func Keys(a, b *Categorical) []string {
	set := map[string]bool{}
	for k := range a.Counts {
		set[k] = true
	}
	for k := range b.Counts {
		set[k] = true
	}
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// LInfDistance is the largest difference in share of any category (0..1),
// as Vertex AI Model Monitoring uses for categorical features. An empty
// side gives NaN.
func LInfDistance(a, b *Categorical) float64 {
	if a.N == 0 || b.N == 0 {
		return math.NaN()
	}
	var d float64
	for _, k := range Keys(a, b) {
		d = max(d, math.Abs(float64(a.Counts[k])/float64(a.N)-float64(b.Counts[k])/float64(b.N)))
	}
	return d
}

// percentile is the p-quantile (0..1) of sorted values, by nearest rank.
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
