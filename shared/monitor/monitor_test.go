package monitor

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/orchard-mlops/orchard/shared/results"
	"github.com/orchard-mlops/orchard/shared/signals"
)

func TestJSDivergenceAndLInf(t *testing.T) {
	if d := JSDivergence([]float64{1, 2, 3}, []float64{2, 4, 6}); d != 0 {
		t.Errorf("JS of proportional distributions = %v, want 0", d)
	}
	if d := JSDivergence([]float64{1, 0}, []float64{0, 1}); math.Abs(d-1) > 1e-12 {
		t.Errorf("JS of disjoint distributions = %v, want 1", d)
	}
	// p = (1/2, 1/2), q = (1, 0): m = (3/4, 1/4);
	// JS = 1/2 [1/2 log2(2/3) + 1/2 log2(2)] + 1/2 [log2(4/3)].
	want := 0.5*(0.5*math.Log2(2.0/3)+0.5) + 0.5*math.Log2(4.0/3)
	if d := JSDivergence([]float64{1, 1}, []float64{1, 0}); math.Abs(d-want) > 1e-12 {
		t.Errorf("JS = %v, want %v", d, want)
	}
	if d := JSDivergence([]float64{0, 0}, []float64{1, 0}); !math.IsNaN(d) {
		t.Errorf("JS with an empty side = %v, want NaN", d)
	}
	a, b := NewCategorical(), NewCategorical()
	for _, v := range []string{"x", "x", "y", "z"} {
		a.Add(v)
	}
	for _, v := range []string{"x", "y", "y", "y"} {
		b.Add(v)
	}
	if d := LInfDistance(a, b); math.Abs(d-0.5) > 1e-12 { // y: 1/4 vs 3/4
		t.Errorf("L-inf = %v, want 0.5", d)
	}
}

func TestHistogramClampsAndKeepsRange(t *testing.T) {
	h := NewHistogram(0, 1, 4)
	for _, v := range []float64{-3, 0, 0.3, 0.99, 1, 7, math.NaN()} {
		h.Add(v)
	}
	if fmt.Sprint(h.Counts) != "[2 1 0 3]" || h.N != 6 || h.Min != -3 || h.Max != 7 {
		t.Errorf("histogram %+v", h)
	}
}

func TestCategoricalIsBounded(t *testing.T) {
	c := NewCategorical()
	for i := range 3 * MaxCategories {
		c.Add(fmt.Sprint(i))
	}
	if len(c.Counts) != MaxCategories+1 || c.Counts[Other] != 2*MaxCategories || c.N != 3*MaxCategories {
		t.Errorf("%d categories, %d other, n %d", len(c.Counts), c.Counts[Other], c.N)
	}
}

// photo draws statistics like the fruits photos' (bright, white
// background); dark scales the pixel values as the trainer's "dark"
// corruption does.
func photo(r *rand.Rand, dark bool) signals.Stats {
	st := signals.Stats{
		Luminance: 0.75 + 0.05*r.NormFloat64(), Contrast: 0.2 + 0.03*r.NormFloat64(),
		Saturation: 0.3 + 0.05*r.NormFloat64(), Foreground: 0.4 + 0.05*r.NormFloat64(),
		Width: 100, Height: 100, Aspect: 1, Format: "jpeg",
	}
	if dark {
		st.Luminance *= 0.45
		st.Contrast *= 0.45
	}
	return st
}

var labels = []string{"apple", "pear", "plum"}

func baseline(t testing.TB) *Baseline {
	r := rand.New(rand.NewPCG(1, 2))
	bb := NewBaselineBuilder()
	for i := range 900 {
		bb.Add(photo(r, false), labels[i%3], 0.9+0.1*r.Float64())
	}
	data, err := json.Marshal(bb.Baseline())
	if err != nil {
		t.Fatal(err)
	}
	b, err := ParseBaseline(data) // what a version stores, read back
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestBaselineRoundTripAndBins(t *testing.T) {
	b := baseline(t)
	if b.Images != 900 || b.Numeric[Luminance].N != 900 || b.Labels.Counts["pear"] != 300 || b.Formats.Counts["jpeg"] != 900 {
		t.Fatalf("baseline read back: images %d, luminance n %d, labels %v, formats %v", b.Images, b.Numeric[Luminance].N, b.Labels.Counts, b.Formats.Counts)
	}
	if b.ConfidenceLow < 0.9 || b.ConfidenceLow > 0.91 {
		t.Errorf("confidence low %v, want the 5th percentile of U(0.9, 1)", b.ConfidenceLow)
	}
	data, _ := json.Marshal(b)
	bad := strings.Replace(string(data), `"lo":0,"hi":0.5`, `"lo":0,"hi":0.6`, 1)
	if _, err := ParseBaseline([]byte(bad)); err == nil || !strings.Contains(err.Error(), "contrast") {
		t.Errorf("a baseline with other bins: %v, want an error naming contrast", err)
	}
}

func TestCheckFlagsWithReasons(t *testing.T) {
	b := baseline(t)
	in := photo(rand.New(rand.NewPCG(3, 4)), false)
	if o := b.Check(in, 0.95); o.Flag {
		t.Errorf("a typical photo is flagged: %s", o.Reason)
	}
	in.Luminance = 0.2
	o := b.Check(in, 0.5)
	if !o.Flag || fmt.Sprint(o.Features) != "[luminance confidence]" ||
		!strings.Contains(o.Reason, "luminance 0.200 outside the baseline's") || !strings.Contains(o.Reason, "confidence 0.500 below") {
		t.Errorf("a dark, unsure prediction: %+v", o)
	}
	var none *Baseline
	if o := none.Check(in, 0); o.Flag {
		t.Error("no baseline flags")
	}
}

func at(i int) time.Time { return time.Date(2026, 12, 2, 10, 0, i%3600, 0, time.UTC) }

var (
	winStart = time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	winEnd   = winStart.Add(time.Hour)
)

// fill adds n predictions of version v under the folder of their label
// (a labelled prefix), the first wrong ones wrong.
func fill(w *Window, b *Baseline, v string, n, wrong int, dark bool, seed uint64) {
	r := rand.New(rand.NewPCG(seed, 9))
	for i := range n {
		st := photo(r, dark)
		want, got := labels[i%3], labels[i%3]
		if i < wrong {
			got = labels[(i+1)%3]
		}
		conf := 0.9 + 0.1*r.Float64()
		o := b.Check(st, conf)
		w.Add(Prediction{Object: fmt.Sprintf("batch/%s/%d.jpg", want, i), Model: "fruits", Version: v,
			Label: got, Score: conf, Stats: &st, OOD: &o, Time: at(i)})
	}
}

func TestWindowCleanVersusShifted(t *testing.T) {
	b := baseline(t)
	th := DefaultThresholds()
	w := NewWindow(winStart, winEnd)
	fill(w, b, "v1", 60, 0, false, 5)
	fill(w, b, "v2", 60, 0, true, 6)
	if got := fmt.Sprint(w.Versions()); got != "[fruits/v1 fruits/v2]" {
		t.Fatalf("versions %s", got)
	}
	clean := w.Report(Key{"fruits", "v1"}, b, labels, th)
	if clean.Predictions != 60 || len(clean.Alerts) != 0 {
		t.Errorf("clean window: %d predictions, alerts %v", clean.Predictions, clean.Alerts)
	}
	shifted := w.Report(Key{"fruits", "v2"}, b, labels, th)
	var named []string
	for _, a := range shifted.Alerts {
		named = append(named, a.Feature)
	}
	if fmt.Sprint(named) != "[luminance contrast ood_share]" {
		t.Errorf("shifted window alerts %v, want luminance, contrast and ood_share", shifted.Alerts)
	}
	if shifted.OODShare < 0.9 || shifted.OODFeatures[Luminance] == 0 {
		t.Errorf("shifted OOD share %v, features %v", shifted.OODShare, shifted.OODFeatures)
	}
	for _, d := range shifted.Drift {
		if d.Feature == Width && (d.Value != 0 || d.Alert) {
			t.Errorf("width did not move but reads %+v", d)
		}
	}
}

func TestWindowLiveAccuracyAndConfusion(t *testing.T) {
	b := baseline(t)
	w := NewWindow(winStart, winEnd)
	fill(w, b, "v1", 60, 24, false, 7)
	// HTTP predictions and uploads outside label folders are not labelled.
	st := photo(rand.New(rand.NewPCG(8, 8)), false)
	w.Add(Prediction{Model: "fruits", Version: "v1", Label: "plum", Score: 0.95, Stats: &st, Time: at(1)})
	w.Add(Prediction{Object: "misc/x.jpg", Model: "fruits", Version: "v1", Label: "plum", Score: 0.95, Stats: &st, Time: at(2)})
	w.Add(Prediction{Object: "top.jpg", Model: "fruits", Version: "v1", Label: "plum", Score: 0.95, Stats: &st, Time: at(3)})
	r := w.Report(Key{"fruits", "v1"}, b, labels, DefaultThresholds())
	if r.Predictions != 63 || r.Live == nil || r.Live.Labelled != 60 || r.Live.Correct != 36 || r.Live.Accuracy != 0.6 {
		t.Fatalf("live %+v of %d predictions", r.Live, r.Predictions)
	}
	// Wrong ones are i < 24: i%3 == 0 (apple) predicted pear, and so on.
	if got := fmt.Sprint(r.Live.Confusion); got != "[[12 8 0] [0 12 8] [8 0 12]]" {
		t.Errorf("confusion %s", got)
	}
	if !r.Live.Alert || r.Alerts[len(r.Alerts)-1].Feature != Accuracy {
		t.Errorf("accuracy 0.6 under 0.8 does not alert: %v", r.Alerts)
	}
}

func TestWindowSkipsMalformedFailedAndOutside(t *testing.T) {
	w := NewWindow(winStart, winEnd)
	good := `{"name":"apple/1.jpg","model":{"name":"fruits","version":"v1"},"label":"apple","score":0.9,` +
		`"input":{"luminance":0.7,"contrast":0.2,"saturation":0.3,"foreground":0.4,"width":100,"height":100,"aspect":1,"format":"jpeg"},` +
		`"ood":{"flag":true,"features":["confidence"]},"time":"2026-12-02T10:30:00Z"}`
	for _, rec := range []string{
		good,
		`{"name":"apple/2.jpg","error":"corrupt image","kind":"corrupt","time":"2026-12-02T10:31:00Z"}`, // failed
		strings.Replace(good, "10:30", "11:30", 1),                                                      // outside
		`{"name":"apple/3.jpg"`,                            // not JSON
		`{"name":"apple/4.jpg","label":"apple","score":1}`, // no time
		strings.Replace(good, `"score":0.9`, `"score":7`, 1),
		strings.Replace(good, `"version":"v1"`, `"version":""`, 1),
	} {
		w.AddRecord([]byte(rec))
	}
	if w.Malformed != 4 || w.Failed != 1 || w.Outside != 1 {
		t.Errorf("malformed %d failed %d outside %d, want 4 1 1", w.Malformed, w.Failed, w.Outside)
	}
	r := w.Report(Key{"fruits", "v1"}, nil, labels, DefaultThresholds())
	if r.Predictions != 1 || r.OODFlagged != 1 || r.Malformed != 4 || r.Baseline || len(r.Drift) != 0 || r.Live.Correct != 1 {
		t.Errorf("report %+v", r)
	}
	if _, err := DecodeRecord([]byte(`[]`)); !errors.Is(err, ErrMalformed) {
		t.Errorf("DecodeRecord([]) = %v", err)
	}
}

func TestEmptyWindow(t *testing.T) {
	w := NewWindow(winStart, winEnd)
	if len(w.Versions()) != 0 {
		t.Fatal("versions in an empty window")
	}
	r := w.Report(Key{"fruits", "v1"}, baseline(t), labels, DefaultThresholds())
	if r.Predictions != 0 || len(r.Alerts) != 0 || len(r.Drift) != 0 || r.Live != nil {
		t.Errorf("empty window report %+v", r)
	}
	if _, err := json.Marshal(r); err != nil {
		t.Errorf("an empty report does not encode: %v", err)
	}
}

func TestSmallWindowsDoNotAlert(t *testing.T) {
	b := baseline(t)
	w := NewWindow(winStart, winEnd)
	fill(w, b, "v1", 49, 0, true, 10)
	if r := w.Report(Key{"fruits", "v1"}, b, labels, DefaultThresholds()); len(r.Alerts) != 0 {
		t.Errorf("49 predictions alert: %v", r.Alerts)
	}
}

func TestReportHTML(t *testing.T) {
	b := baseline(t)
	w := NewWindow(winStart, winEnd)
	fill(w, b, "v<2>", 60, 30, true, 11)
	page, err := w.Report(Key{"fruits", "v<2>"}, b, labels, DefaultThresholds()).HTML()
	if err != nil {
		t.Fatal(err)
	}
	s := string(page)
	for _, want := range []string{"<svg", "luminance: js", "live_accuracy", "v&lt;2&gt;", "<th>apple</th>"} {
		if !strings.Contains(s, want) {
			t.Errorf("report page lacks %q", want)
		}
	}
	if strings.Contains(s, "v<2>") {
		t.Error("the page does not escape the version")
	}
}

// BenchmarkWindow100k aggregates 100,000 prediction records as the monitor
// reads them (JSON, decoded one at a time): the target is 30 s on
// 2 cores.
func BenchmarkWindow100k(b *testing.B) {
	bl := baseline(b)
	r := rand.New(rand.NewPCG(12, 12))
	recs := make([][]byte, 100_000)
	for i := range recs {
		st := photo(r, i%2 == 0)
		conf := r.Float64()
		o := bl.Check(st, conf)
		rec := results.Upload{Name: fmt.Sprintf("up/%s/%d.jpg", labels[i%3], i), Model: &results.Model{Name: "fruits", Version: fmt.Sprint("v", i%2)},
			Label: labels[(i/3)%3], Score: conf, Signals: results.Signals{Input: &st, OOD: &o}, Time: at(i)}
		recs[i], _ = json.Marshal(rec)
	}
	b.ReportAllocs()
	for b.Loop() {
		w := NewWindow(winStart, winEnd)
		for _, rec := range recs {
			w.AddRecord(rec)
		}
		for _, k := range w.Versions() {
			w.Report(k, bl, labels, DefaultThresholds())
		}
		if w.Malformed != 0 {
			b.Fatal("malformed records")
		}
	}
}
