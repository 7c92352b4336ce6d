// Package monitor watches a classifier's predictions against its training
// baseline, the way Vertex AI Model Monitoring does for tabular models but
// on image statistics: fixed-bin histograms of cheap input statistics
// (signals.Stats) and of top-1 confidence compared by Jensen-Shannon
// divergence, categorical distributions (predicted label, image format)
// by L-infinity distance, a per-prediction out-of-distribution rule, and a
// streaming per-version window aggregator with live accuracy for uploads
// whose folder names are labels. It is pure Go with no cloud dependency:
// the trainer writes baselines with it, serving flags single predictions,
// and the Monitor function and `orchard monitor` build reports.
package monitor

import (
	"math"

	"github.com/orchard-mlops/orchard/shared/signals"
)

// Feature names, as reports, gauges (attribute feature) and WARNING lines
// (field drift_alert) spell them; docs/monitoring.md lists them for the
// dashboards and alert policies.
const (
	Luminance  = "luminance"
	Contrast   = "contrast"
	Saturation = "saturation"
	Foreground = "foreground"
	Width      = "width"
	Height     = "height"
	Aspect     = "aspect"
	Confidence = "confidence"
	Labels     = "labels"
	Format     = "format"
	OODShare   = "ood_share"
	Accuracy   = "live_accuracy"
)

// numeric is one numeric feature: its fixed bins and how to read it.
// Source geometry is binned on a log2 scale (16 px to 16k px, aspect 1/4
// to 4), where photo sizes spread evenly.
type numeric struct {
	name   string
	lo, hi float64
	bins   int
	value  func(st signals.Stats, conf float64) float64
	// pixel marks the statistics of what the model sees, which the
	// per-prediction OOD rule checks; source geometry varies with the
	// uploader's camera, not with what the model can classify.
	pixel bool
}

var numerics = []numeric{
	{Luminance, 0, 1, 20, func(s signals.Stats, _ float64) float64 { return s.Luminance }, true},
	{Contrast, 0, 0.5, 20, func(s signals.Stats, _ float64) float64 { return s.Contrast }, true},
	{Saturation, 0, 1, 20, func(s signals.Stats, _ float64) float64 { return s.Saturation }, true},
	{Foreground, 0, 1, 20, func(s signals.Stats, _ float64) float64 { return s.Foreground }, true},
	{Width, 4, 14, 20, func(s signals.Stats, _ float64) float64 { return log2(float64(s.Width)) }, false},
	{Height, 4, 14, 20, func(s signals.Stats, _ float64) float64 { return log2(float64(s.Height)) }, false},
	{Aspect, -2, 2, 20, func(s signals.Stats, _ float64) float64 { return log2(s.Aspect) }, false},
	{Confidence, 0, 1, 20, func(_ signals.Stats, c float64) float64 { return c }, false},
}

func log2(v float64) float64 {
	if v <= 0 {
		return math.NaN()
	}
	return math.Log2(v)
}

// NumericFeatures are the numeric feature names in report order.
func NumericFeatures() []string {
	out := make([]string, len(numerics))
	for i, f := range numerics {
		out[i] = f.name
	}
	return out
}

// features is the set of histograms and categoricals that a baseline and
// a window both hold, filled the same way.
type features struct {
	Numeric map[string]*Histogram `json:"numeric"`
	Labels  *Categorical          `json:"labels"` // predicted top-1 label
	Formats *Categorical          `json:"formats"`
}

func newFeatures() features {
	f := features{Numeric: map[string]*Histogram{}, Labels: NewCategorical(), Formats: NewCategorical()}
	for _, n := range numerics {
		f.Numeric[n.name] = NewHistogram(n.lo, n.hi, n.bins)
	}
	return f
}

// add counts one prediction: its input statistics, top-1 label and score.
func (f *features) add(st signals.Stats, label string, conf float64) {
	for _, n := range numerics {
		if h := f.Numeric[n.name]; h != nil {
			h.Add(n.value(st, conf))
		}
	}
	f.Labels.Add(label)
	f.Formats.Add(st.Format)
}
