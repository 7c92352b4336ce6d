package monitor

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/shared/signals"
)

// BaselineFile is the baseline's file in a model version, beside model.json.
const BaselineFile = "baseline.json"

// ConfidencePercentile is the share of the validation set whose top-1
// confidence falls below Baseline.ConfidenceLow: a prediction less sure
// than that is flagged out of distribution.
const ConfidencePercentile = 0.05

// Baseline is what the model's validation set looked like through the
// serving preprocessing: the histograms the monitor compares windows with
// and the ranges a single prediction is checked against.
type Baseline struct {
	Images int64 `json:"images"`
	features
	// ConfidenceLow is the ConfidencePercentile quantile of the validation
	// set's top-1 confidence.
	ConfidenceLow float64 `json:"confidence_low"`
}

// BaselineBuilder accumulates a Baseline over validation predictions.
type BaselineBuilder struct {
	f    features
	conf []float64
}

// NewBaselineBuilder is an empty builder.
func NewBaselineBuilder() *BaselineBuilder { return &BaselineBuilder{f: newFeatures()} }

// Add counts one validation image: its input statistics and the model's
// top-1 label and confidence on it.
func (b *BaselineBuilder) Add(st signals.Stats, label string, conf float64) {
	b.f.add(st, label, conf)
	b.conf = append(b.conf, conf)
}

// Baseline is the baseline of what was added.
func (b *BaselineBuilder) Baseline() *Baseline {
	sorted := slices.Clone(b.conf)
	slices.Sort(sorted)
	low := 0.0
	if len(sorted) > 0 {
		low = percentile(sorted, ConfidencePercentile)
	}
	return &Baseline{Images: int64(len(b.conf)), features: b.f, ConfidenceLow: low}
}

// MaxBaselineBytes bounds a baseline.json read (a few kB in practice).
const MaxBaselineBytes = 4 << 20

// LoadBaseline reads a model version's baseline.json from its directory;
// a version trained before baselines existed gives an error wrapping
// blob.ErrNotFound.
func LoadBaseline(ctx context.Context, version blob.Store) (*Baseline, error) {
	data, _, err := version.Read(ctx, BaselineFile, MaxBaselineBytes)
	if err != nil {
		return nil, fmt.Errorf("loading the baseline: %w", err)
	}
	return ParseBaseline(data)
}

// ParseBaseline reads a baseline.json, checking that every feature's
// histogram has the bins this package uses (a baseline from another
// binning cannot be compared bin by bin).
func ParseBaseline(data []byte) (*Baseline, error) {
	var b Baseline
	if err := json.Unmarshal(data, &b); err != nil {
		return nil, fmt.Errorf("reading %s: %w", BaselineFile, err)
	}
	for _, n := range numerics {
		h := b.Numeric[n.name]
		if h == nil {
			return nil, fmt.Errorf("reading %s: no %s histogram", BaselineFile, n.name)
		}
		if h.Lo != n.lo || h.Hi != n.hi || len(h.Counts) != n.bins {
			return nil, fmt.Errorf("reading %s: %s histogram has %d bins over [%v, %v], want %d over [%v, %v]",
				BaselineFile, n.name, len(h.Counts), h.Lo, h.Hi, n.bins, n.lo, n.hi)
		}
	}
	if b.Labels == nil {
		b.Labels = NewCategorical()
	}
	if b.Formats == nil {
		b.Formats = NewCategorical()
	}
	return &b, nil
}

// Check flags a prediction whose pixel statistics fall outside the range
// the validation set covered, or whose top-1 confidence is below the
// baseline's low percentile, saying why. A nil baseline flags nothing.
func (b *Baseline) Check(st signals.Stats, conf float64) signals.OOD {
	var out signals.OOD
	if b == nil || b.Images == 0 {
		return out
	}
	var why []string
	for _, n := range numerics {
		h := b.Numeric[n.name]
		if !n.pixel || h == nil || h.N == 0 {
			continue
		}
		if v := n.value(st, conf); v < h.Min || v > h.Max {
			out.Features = append(out.Features, n.name)
			why = append(why, fmt.Sprintf("%s %.3f outside the baseline's %.3f..%.3f", n.name, v, h.Min, h.Max))
		}
	}
	if conf < b.ConfidenceLow {
		out.Features = append(out.Features, Confidence)
		why = append(why, fmt.Sprintf("confidence %.3f below the baseline's %gth percentile %.3f", conf, 100*ConfidencePercentile, b.ConfidenceLow))
	}
	out.Flag = len(out.Features) > 0
	out.Reason = strings.Join(why, "; ")
	return out
}

// Summary is the baseline as table rows for a training report: per
// feature its count, range and binned mean, then the confidence
// percentile and the label shares.
func (b *Baseline) Summary() (header []string, rows [][]string) {
	header = []string{"feature", "images", "min", "mean (binned)", "max"}
	for _, n := range numerics {
		h := b.Numeric[n.name]
		if h == nil || h.N == 0 {
			continue
		}
		var mean float64
		w := (h.Hi - h.Lo) / float64(len(h.Counts))
		for i, c := range h.Counts {
			mean += float64(c) * (h.Lo + (float64(i)+0.5)*w)
		}
		mean /= float64(h.N)
		unit := ""
		if !n.pixel && n.name != Confidence {
			unit = " (log2)"
		}
		rows = append(rows, []string{n.name + unit, fmt.Sprint(h.N), fmt.Sprintf("%.3f", h.Min), fmt.Sprintf("%.3f", mean), fmt.Sprintf("%.3f", h.Max)})
	}
	rows = append(rows, []string{fmt.Sprintf("confidence, %gth percentile", 100*ConfidencePercentile), fmt.Sprint(b.Images), "", fmt.Sprintf("%.3f", b.ConfidenceLow), ""})
	for _, c := range []struct {
		name string
		cat  *Categorical
	}{{"predicted label", b.Labels}, {"format", b.Formats}} {
		for _, k := range Keys(c.cat, c.cat) {
			rows = append(rows, []string{c.name + " " + k, fmt.Sprint(c.cat.Counts[k]), "", fmt.Sprintf("%.1f %%", 100*float64(c.cat.Counts[k])/float64(max(1, c.cat.N))), ""})
		}
	}
	return header, rows
}
