package monitor

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/shared/emulators"
	"github.com/orchard-mlops/orchard/shared/logging"
	"github.com/orchard-mlops/orchard/shared/model/modeltest"
	mon "github.com/orchard-mlops/orchard/shared/monitor"
	"github.com/orchard-mlops/orchard/shared/registry"
	"github.com/orchard-mlops/orchard/shared/signals"
)

// stats draws input statistics like a bright photo's; dark scales them as
// the trainer's "dark" corruption does.
func stats(r *rand.Rand, dark bool) signals.Stats {
	st := signals.Stats{Luminance: 0.75 + 0.04*r.NormFloat64(), Contrast: 0.2 + 0.02*r.NormFloat64(),
		Saturation: 0.3 + 0.04*r.NormFloat64(), Foreground: 0.4 + 0.04*r.NormFloat64(),
		Width: 100, Height: 100, Aspect: 1, Format: "jpeg"}
	if dark {
		st.Luminance, st.Contrast, st.Saturation = 0.45*st.Luminance, 0.45*st.Contrast, 0.45*st.Saturation
	}
	return st
}

type fixture struct {
	results blob.Store
	models  blob.Store // the registry's bucket
	reg     *registry.Registry
	base    *mon.Baseline
	logs    *bytes.Buffer
	runner  *Runner
}

// setup starts fake-gcs-server with a results bucket and a registry
// holding versions v1 and v2 of the colour model, both with a baseline.
func setup(t *testing.T) *fixture {
	g := emulators.GCSForTest(t)
	c := g.ClientForTest(t)
	ctx := t.Context()
	buckets := map[string]string{}
	for _, b := range []string{"results", "models"} {
		buckets[b] = emulators.UniqueName(t) + "-" + b
		if err := c.Bucket(buckets[b]).Create(ctx, "test", nil); err != nil {
			t.Fatal(err)
		}
	}
	f := &fixture{results: blob.NewGCS(c, buckets["results"], ""), models: blob.NewGCS(c, buckets["models"], ""), logs: &bytes.Buffer{}}
	f.reg = registry.New(f.models, registry.Options{})
	r := rand.New(rand.NewPCG(1, 1))
	bb := mon.NewBaselineBuilder()
	for i := range 600 {
		bb.Add(stats(r, false), modeltest.Colours[i%3], 0.9+0.1*r.Float64())
	}
	f.base = bb.Baseline()
	data, _ := json.Marshal(f.base)
	for _, v := range []string{"v1", "v2"} {
		dir, err := blob.NewDir(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		modeltest.Save(t, modeltest.Colour(t, modeltest.Options{Version: v}), dir)
		if _, err := dir.Write(ctx, mon.BaselineFile, data, blob.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := f.reg.PutVersion(ctx, "colours", v, dir); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := ConfigFromEnv(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	f.runner = &Runner{Config: cfg, Results: f.results, Registry: f.reg, Log: logging.New(f.logs)}
	return f
}

// put writes n results of version v as PredictOnUpload does, under
// prefix/<label>/ (a labelled prefix), the first wrong ones mislabelled.
func (f *fixture) put(t *testing.T, prefix, v string, n, wrong int, dark bool, seed uint64) {
	r := rand.New(rand.NewPCG(seed, 2))
	for i := range n {
		st := stats(r, dark)
		want, got := modeltest.Colours[i%3], modeltest.Colours[i%3]
		if i < wrong {
			got = modeltest.Colours[(i+1)%3]
		}
		conf := 0.9 + 0.1*r.Float64()
		o := f.base.Check(st, conf)
		name := fmt.Sprintf("%s/%s/%d.jpg", prefix, want, i)
		rec, _ := json.Marshal(map[string]any{"bucket": "uploads", "name": name, "model": map[string]string{"name": "colours", "version": v},
			"label": got, "score": conf, "input": st, "ood": o, "time": time.Now().UTC()})
		if _, err := f.results.Write(t.Context(), name+".json", rec, blob.WriteOptions{ContentType: "application/json"}); err != nil {
			t.Fatal(err)
		}
	}
}

func (f *fixture) run(t *testing.T) *Summary {
	t.Helper()
	s, err := f.runner.Run(t.Context(), time.Now().Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func alerted(r *mon.Report) string {
	var out []string
	for _, a := range r.Alerts {
		out = append(out, a.Feature)
	}
	return strings.Join(out, ",")
}

func TestCleanAndShiftedVersionsReportedApart(t *testing.T) {
	f := setup(t)
	f.put(t, "clean", "v1", 60, 0, false, 1)
	f.put(t, "dark", "v2", 60, 30, true, 2) // a version change inside the window
	s := f.run(t)
	if len(s.Reports) != 2 || s.Reports[0].Version != "v1" || s.Reports[1].Version != "v2" {
		t.Fatalf("reports %+v", s.URIs)
	}
	clean, dark := s.Reports[0], s.Reports[1]
	if clean.Predictions != 60 || len(clean.Alerts) != 0 || clean.Live == nil || clean.Live.Accuracy != 1 {
		t.Errorf("clean window: %d predictions, alerts %v, live %+v", clean.Predictions, clean.Alerts, clean.Live)
	}
	if got := alerted(dark); got != "luminance,contrast,saturation,ood_share,live_accuracy" {
		t.Errorf("dark window alerts %s", got)
	}
	if dark.Live.Accuracy != 0.5 {
		t.Errorf("dark live accuracy %v, want 0.5", dark.Live.Accuracy)
	}
	// The reports are in the results bucket, JSON and page.
	key := ReportKey("colours", "v2", s.WindowEnd, "report.json")
	if s.URIs[1] != f.results.URI(key) {
		t.Errorf("report URI %s, want %s", s.URIs[1], f.results.URI(key))
	}
	b, _, err := f.results.Read(t.Context(), key, 0)
	if err != nil {
		t.Fatal(err)
	}
	var stored mon.Report
	if err := json.Unmarshal(b, &stored); err != nil || alerted(&stored) != alerted(dark) {
		t.Errorf("stored report: %v, alerts %s", err, alerted(&stored))
	}
	page, _, err := f.results.Read(t.Context(), ReportKey("colours", "v2", s.WindowEnd, "report.html"), 0)
	if err != nil || !bytes.Contains(page, []byte("<svg")) {
		t.Errorf("report page: %v", err)
	}
	// One WARNING line per alert, with the fields the alert policy reads.
	var warnings []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(f.logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if m["severity"] == "WARNING" {
			warnings = append(warnings, m)
		}
	}
	if len(warnings) != len(dark.Alerts) {
		t.Fatalf("%d WARNING lines for %d alerts:\n%s", len(warnings), len(dark.Alerts), f.logs)
	}
	w := warnings[0]
	if w["drift_alert"] != "luminance" || w["model"] != "colours" || w["version"] != "v2" || w["measure"] != "js" ||
		w["report"] != s.URIs[1] || !strings.HasPrefix(w["message"].(string), "drift: ") {
		t.Errorf("WARNING line %v", w)
	}
	// One INFO line per figure of each report, with the fields the
	// log-based metric drift_figures extracts (infra/terraform/monitoring.tf).
	figures := map[string]map[string]any{}
	for _, line := range strings.Split(strings.TrimSpace(f.logs.String()), "\n") {
		var m map[string]any
		_ = json.Unmarshal([]byte(line), &m)
		if feat, ok := m["drift_figure"].(string); ok && m["severity"] == "INFO" {
			figures[m["version"].(string)+" "+feat] = m
		}
	}
	if want := 2*len(dark.Drift) + 2 + 2; len(figures) != want {
		t.Errorf("%d figure lines, want %d (each drift, ood_share and live_accuracy of two versions):\n%s", len(figures), want, f.logs)
	}
	for _, d := range dark.Drift {
		if m := figures["v2 "+d.Feature]; m == nil || m["value"] != d.Value || m["measure"] != d.Measure || m["model"] != "colours" {
			t.Errorf("figure line of v2 %s: %v, want %s %v", d.Feature, m, d.Measure, d.Value)
		}
	}
	if m := figures["v2 ood_share"]; m == nil || m["value"] != dark.OODShare || m["measure"] != "share" {
		t.Errorf("figure line of v2 ood_share: %v, want %v", m, dark.OODShare)
	}
	if m := figures["v2 live_accuracy"]; m == nil || m["value"] != 0.5 || m["measure"] != "accuracy" {
		t.Errorf("figure line of v2 live_accuracy: %v, want 0.5", m)
	}
	// A second run over the same window reads the same results, not the reports.
	if again := f.run(t); again.Read != s.Read || again.Read != 120 {
		t.Errorf("second run read %d objects, first %d, want 120", again.Read, s.Read)
	}
}

func TestEmptyWindow(t *testing.T) {
	f := setup(t)
	s := f.run(t)
	if s.Read != 0 || len(s.Reports) != 0 || s.Alerts() != 0 {
		t.Errorf("empty window %+v", s)
	}
	// Results older than the window are not read.
	f.put(t, "old", "v1", 3, 0, false, 3)
	s, err := f.runner.Run(t.Context(), time.Now().Add(-2*time.Hour))
	if err != nil || s.Read != 0 || len(s.Reports) != 0 {
		t.Errorf("a window before the results: %+v, %v", s, err)
	}
}

func TestMalformedRecordsSkippedAndCounted(t *testing.T) {
	f := setup(t)
	f.put(t, "clean", "v1", 5, 0, false, 4)
	for name, body := range map[string]string{
		"x/garbage.jpg.json":   `{"name":`,
		"x/noversion.jpg.json": `{"name":"x/noversion.jpg","label":"red","score":0.9,"time":"` + time.Now().UTC().Format(time.RFC3339Nano) + `"}`,
		"x/bad.jpg.error.json": `{"name":"x/bad.jpg","error":"corrupt image","kind":"corrupt","time":"` + time.Now().UTC().Format(time.RFC3339Nano) + `"}`,
		"x/evil.jpg.json": `{"name":"x/evil.jpg","model":{"name":"colours","version":"../v1"},"label":"red","score":0.9,"time":"` +
			time.Now().UTC().Format(time.RFC3339Nano) + `"}`,
	} {
		if _, err := f.results.Write(t.Context(), name, []byte(body), blob.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	s := f.run(t)
	if s.Read != 9 || s.Malformed != 3 || s.Failed != 1 || len(s.Reports) != 1 || s.Reports[0].Predictions != 5 {
		t.Errorf("read %d, malformed %d, failed %d, %d reports", s.Read, s.Malformed, s.Failed, len(s.Reports))
	}
}

func TestConfigFromEnv(t *testing.T) {
	env := map[string]string{"MONITOR_WINDOW": "15m", "MONITOR_JS_THRESHOLD": "0.2", "MONITOR_MIN_PREDICTIONS": "10", "MONITOR_ALERT_FEATURES": "luminance, width"}
	c, err := ConfigFromEnv(func(k string) string { return env[k] })
	if err != nil || c.Window != 15*time.Minute || c.Thresholds.JS != 0.2 || c.Thresholds.MinPredictions != 10 ||
		fmt.Sprint(c.Thresholds.AlertFeatures) != "[luminance width]" || c.Thresholds.LInf != mon.DefaultThresholds().LInf {
		t.Errorf("config %+v, %v", c, err)
	}
	for k, v := range map[string]string{"MONITOR_WINDOW": "-1h", "MONITOR_OOD_THRESHOLD": "x", "MONITOR_ALERT_FEATURES": "colour"} {
		if _, err := ConfigFromEnv(func(key string) string {
			if key == k {
				return v
			}
			return ""
		}); err == nil || !strings.Contains(err.Error(), k) {
			t.Errorf("%s=%s: %v", k, v, err)
		}
	}
}
