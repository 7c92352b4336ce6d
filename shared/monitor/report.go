package monitor

import (
	"fmt"
	"slices"
	"time"
)

// Thresholds decide which figures of a window raise an alert.
type Thresholds struct {
	JS       float64 `json:"js"`        // JS divergence of a numeric feature, above which it alerts
	LInf     float64 `json:"linf"`      // L-infinity distance of the predicted labels, above which they alert
	OODShare float64 `json:"ood_share"` // share flagged out of distribution, above which it alerts
	Accuracy float64 `json:"accuracy"`  // live accuracy, below which it alerts
	// MinPredictions is the smallest window (per version, and of labelled
	// uploads for accuracy) that may alert: small samples are noisy.
	MinPredictions int64 `json:"min_predictions"`
	// AlertFeatures are the numeric features whose divergence may alert;
	// the others are reported only.
	AlertFeatures []string `json:"alert_features"`
}

// DefaultThresholds are the defaults docs/monitoring.md justifies with the
// clean-vs-corrupted experiment.
func DefaultThresholds() Thresholds {
	return Thresholds{
		JS: 0.15, LInf: 0.3, OODShare: 0.3, Accuracy: 0.8, MinPredictions: 50,
		AlertFeatures: []string{Luminance, Contrast, Saturation, Foreground, Confidence},
	}
}

// Drift is one feature of a window against the baseline, with both
// distributions for the report page.
type Drift struct {
	Feature   string  `json:"feature"`
	Measure   string  `json:"measure"` // "js" or "linf"
	Value     float64 `json:"value"`
	Threshold float64 `json:"threshold,omitempty"` // 0: reported only
	Alert     bool    `json:"alert"`
	// Numeric: bins over [Lo, Hi]; categorical: Categories.
	Lo         float64   `json:"lo,omitempty"`
	Hi         float64   `json:"hi,omitempty"`
	Categories []string  `json:"categories,omitempty"`
	Baseline   []float64 `json:"baseline"` // shares
	Window     []float64 `json:"window"`   // shares
}

// Live is the accuracy over uploads whose folder is a label.
type Live struct {
	Labelled  int64     `json:"labelled"`
	Correct   int64     `json:"correct"`
	Accuracy  float64   `json:"accuracy"`
	Labels    []string  `json:"labels"`    // rows (true) and columns (predicted)
	Confusion [][]int64 `json:"confusion"` // [true][predicted]
	Alert     bool      `json:"alert"`
}

// Alert is one threshold crossed.
type Alert struct {
	Feature   string  `json:"feature"`
	Measure   string  `json:"measure"` // js, linf, share, accuracy
	Value     float64 `json:"value"`
	Threshold float64 `json:"threshold"`
}

func (a Alert) String() string {
	if a.Measure == "accuracy" {
		return fmt.Sprintf("%s %.3f < %.3f", a.Feature, a.Value, a.Threshold)
	}
	return fmt.Sprintf("%s %s %.3f > %.3f", a.Feature, a.Measure, a.Value, a.Threshold)
}

// Report is one model version's window.
type Report struct {
	Model       string    `json:"model"`
	Version     string    `json:"version"`
	WindowStart time.Time `json:"window_start"`
	WindowEnd   time.Time `json:"window_end"`
	Predictions int64     `json:"predictions"`
	NoStats     int64     `json:"no_stats"` // predictions without input statistics (older functions)
	// Window-wide counts (every version's report carries them).
	Malformed int64 `json:"malformed"`
	Failed    int64 `json:"failed"`
	// Baseline says whether the version had one; without it only counts,
	// confidence and live accuracy are reported.
	Baseline    bool             `json:"baseline"`
	Drift       []Drift          `json:"drift"`
	OODFlagged  int64            `json:"ood_flagged"`
	OODShare    float64          `json:"ood_share"`
	OODFeatures map[string]int64 `json:"ood_features,omitempty"`
	Live        *Live            `json:"live,omitempty"`
	Alerts      []Alert          `json:"alerts"`
	Thresholds  Thresholds       `json:"thresholds"`
}

// Report compares version k's part of the window with its baseline (nil
// when the version has none); labels are the model's labels, for live
// accuracy. A version absent from the window gives an empty report.
func (w *Window) Report(k Key, b *Baseline, labels []string, th Thresholds) *Report {
	r := &Report{Model: k.Model, Version: k.Version, WindowStart: w.Start, WindowEnd: w.End,
		Malformed: w.Malformed, Failed: w.Failed, Baseline: b != nil, Thresholds: th, Alerts: []Alert{}, Drift: []Drift{}}
	v := w.versions[k]
	if v == nil {
		return r
	}
	r.Predictions, r.NoStats, r.OODFlagged, r.OODFeatures = v.n, v.noStats, v.ood, v.oodFeatures
	r.OODShare = float64(v.ood) / float64(v.n)
	enough := v.n >= th.MinPredictions
	if b != nil {
		r.Drift = drifts(v, b, th, enough)
	}
	for _, d := range r.Drift {
		if d.Alert {
			r.Alerts = append(r.Alerts, Alert{Feature: d.Feature, Measure: d.Measure, Value: d.Value, Threshold: d.Threshold})
		}
	}
	if b != nil && enough && th.OODShare > 0 && r.OODShare > th.OODShare {
		r.Alerts = append(r.Alerts, Alert{Feature: OODShare, Measure: "share", Value: r.OODShare, Threshold: th.OODShare})
	}
	r.Live = live(v, labels)
	if r.Live != nil && r.Live.Labelled >= th.MinPredictions && r.Live.Accuracy < th.Accuracy {
		r.Live.Alert = true
		r.Alerts = append(r.Alerts, Alert{Feature: Accuracy, Measure: "accuracy", Value: r.Live.Accuracy, Threshold: th.Accuracy})
	}
	return r
}

func drifts(v *versionAgg, b *Baseline, th Thresholds, enough bool) []Drift {
	var out []Drift
	for _, n := range numerics {
		bh, wh := b.Numeric[n.name], v.Numeric[n.name]
		if bh == nil || bh.N == 0 || wh.N == 0 {
			continue
		}
		d := Drift{Feature: n.name, Measure: "js", Lo: n.lo, Hi: n.hi, Baseline: bh.Shares(), Window: wh.Shares()}
		d.Value = JSDivergence(d.Baseline, d.Window)
		if slices.Contains(th.AlertFeatures, n.name) {
			d.Threshold = th.JS
			d.Alert = enough && th.JS > 0 && d.Value > th.JS
		}
		out = append(out, d)
	}
	for _, c := range []struct {
		name   string
		bc, wc *Categorical
		th     float64
	}{{Labels, b.Labels, v.Labels, th.LInf}, {Format, b.Formats, v.Formats, 0}} {
		if c.bc.N == 0 || c.wc.N == 0 {
			continue
		}
		d := Drift{Feature: c.name, Measure: "linf", Value: LInfDistance(c.bc, c.wc), Threshold: c.th, Categories: Keys(c.bc, c.wc)}
		for _, k := range d.Categories {
			d.Baseline = append(d.Baseline, float64(c.bc.Counts[k])/float64(c.bc.N))
			d.Window = append(d.Window, float64(c.wc.Counts[k])/float64(c.wc.N))
		}
		d.Alert = enough && c.th > 0 && d.Value > c.th
		out = append(out, d)
	}
	return out
}

// live is the accuracy and confusion over the folders that are labels;
// nil when no upload was in one.
func live(v *versionAgg, labels []string) *Live {
	l := &Live{Labels: labels}
	for _, want := range labels {
		row := make([]int64, len(labels))
		if c := v.confusion[want]; c != nil {
			for j, got := range labels {
				row[j] = c.Counts[got]
			}
			l.Labelled += c.N // predictions of a label not in labels count as wrong
			l.Correct += c.Counts[want]
		}
		l.Confusion = append(l.Confusion, row)
	}
	if l.Labelled == 0 {
		return nil
	}
	l.Accuracy = float64(l.Correct) / float64(l.Labelled)
	return l
}
