package monitor

import (
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"sort"
	"time"

	"github.com/orchard-mlops/orchard/shared/results"
	"github.com/orchard-mlops/orchard/shared/signals"
)

// Prediction is the monitor's view of one prediction record.
type Prediction struct {
	// Object is the uploaded object's name; its folder names the true
	// label when it is one of the model's labels. Empty for HTTP.
	Object         string
	Model, Version string
	Label          string  // top-1
	Score          float64 // top-1 confidence
	Stats          *signals.Stats
	OOD            *signals.OOD
	Time           time.Time
	Failed         bool // the record is a failure: no prediction
}

// ErrMalformed marks a record the monitor cannot use.
var ErrMalformed = errors.New("malformed prediction record")

// DecodeRecord reads one prediction result, a results.Upload (the results
// bucket's <name>.json and the predictions topic's message). A record that
// is not JSON, or names no time, or (unless it is a failure) no model
// version or label, is ErrMalformed.
func DecodeRecord(b []byte) (Prediction, error) {
	var r results.Upload
	if err := json.Unmarshal(b, &r); err != nil {
		return Prediction{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	p := Prediction{Object: r.Name, Label: r.Label, Score: r.Score, Stats: r.Input, OOD: r.OOD, Time: r.Time, Failed: r.Failed()}
	if r.Model != nil {
		p.Model, p.Version = r.Model.Name, r.Model.Version
	}
	switch {
	case r.Time.IsZero():
		return p, fmt.Errorf("%w: no time", ErrMalformed)
	case p.Failed:
		return p, nil
	case p.Model == "" || p.Version == "" || p.Label == "":
		return p, fmt.Errorf("%w: no model version or label", ErrMalformed)
	case p.Score < 0 || p.Score > 1:
		return p, fmt.Errorf("%w: score %v outside 0..1", ErrMalformed, p.Score)
	}
	return p, nil
}

// Key is a model version.
type Key struct{ Model, Version string }

func (k Key) String() string { return k.Model + "/" + k.Version }

// Window aggregates the predictions of [Start, End) per model version in
// memory bounded by the number of versions: fixed bins, and categoricals
// capped at MaxCategories.
type Window struct {
	Start, End time.Time
	versions   map[Key]*versionAgg
	// Malformed counts records that could not be read (skipped); Failed
	// counts failure records (no prediction); Outside counts records
	// outside [Start, End).
	Malformed, Failed, Outside int64
}

type versionAgg struct {
	features
	n, noStats, ood int64
	oodFeatures     map[string]int64
	// confusion[folder][predicted] over uploads in a folder; the report
	// keeps the folders that are labels of the model.
	confusion map[string]*Categorical
}

// NewWindow is an empty window over [start, end).
func NewWindow(start, end time.Time) *Window {
	return &Window{Start: start, End: end, versions: map[Key]*versionAgg{}}
}

// AddRecord decodes one result and adds it; malformed records are counted
// and skipped.
func (w *Window) AddRecord(b []byte) {
	p, err := DecodeRecord(b)
	if err != nil {
		w.Malformed++
		return
	}
	w.Add(p)
}

// Add counts one prediction if it falls in the window.
func (w *Window) Add(p Prediction) {
	if p.Time.Before(w.Start) || !p.Time.Before(w.End) {
		w.Outside++
		return
	}
	if p.Failed {
		w.Failed++
		return
	}
	k := Key{p.Model, p.Version}
	v := w.versions[k]
	if v == nil {
		if len(w.versions) >= MaxCategories {
			w.Malformed++ // a flood of invented versions is not a model
			return
		}
		v = &versionAgg{features: newFeatures(), oodFeatures: map[string]int64{}, confusion: map[string]*Categorical{}}
		w.versions[k] = v
	}
	v.n++
	if p.Stats != nil {
		v.add(*p.Stats, p.Label, p.Score)
	} else {
		v.noStats++
		v.Labels.Add(p.Label)
		v.Numeric[Confidence].Add(p.Score)
	}
	if p.OOD != nil && p.OOD.Flag {
		v.ood++
		for _, f := range p.OOD.Features {
			if _, ok := v.oodFeatures[f]; ok || len(v.oodFeatures) < MaxCategories {
				v.oodFeatures[f]++
			}
		}
	}
	if dir := path.Dir(p.Object); p.Object != "" && dir != "." {
		folder := path.Base(dir)
		c := v.confusion[folder]
		if c == nil && len(v.confusion) < MaxCategories {
			c = NewCategorical()
			v.confusion[folder] = c
		}
		if c != nil {
			c.Add(p.Label)
		}
	}
}

// Versions are the model versions seen, sorted.
func (w *Window) Versions() []Key {
	out := make([]Key, 0, len(w.versions))
	for k := range w.versions {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}
