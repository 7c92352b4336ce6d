// Package monitor is the Monitor function's core, also run by `orchard
// monitor` and the local stack's timer: it reads the prediction results of
// a window from the results bucket, aggregates them per model version
// (shared/monitor), compares each version with the baseline stored beside
// its model.json in the registry, writes a report (JSON and an HTML page)
// under monitoring/ in the results bucket, logs an INFO line per figure
// and a WARNING line per threshold crossed (what the deployed dashboard and
// alert read, through log-based metrics), and records the figures as OTel
// gauges for deployments with a collector. The names are a contract with
// the monitoring Terraform: see docs/monitoring.md.
package monitor

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/orchard-mlops/orchard/shared/blob"
	mon "github.com/orchard-mlops/orchard/shared/monitor"
	"github.com/orchard-mlops/orchard/shared/registry"
)

// ReportPrefix is where reports go in the results bucket; the prediction
// functions never write there and the monitor never reads it as results.
const ReportPrefix = "monitoring/"

// WindowEndLayout names a report's window end in its path.
const WindowEndLayout = "20060102T150405Z"

// MaxRecordBytes bounds one result read (a result is about 1 kB).
const MaxRecordBytes = 1 << 20

// Tick is the optional content of a monitor-tick message: the window to
// report on (a backfill); without it the window ends at the tick.
type Tick struct {
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
}

// Config is the monitor's configuration (MONITOR_* in the environment).
type Config struct {
	Window     time.Duration  // MONITOR_WINDOW
	Thresholds mon.Thresholds // MONITOR_*_THRESHOLD, MONITOR_MIN_PREDICTIONS, MONITOR_ALERT_FEATURES
	Readers    int            // MONITOR_READERS: parallel result reads
}

// ConfigFromEnv reads MONITOR_*; unset variables take the defaults.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	c := Config{Window: time.Hour, Thresholds: mon.DefaultThresholds(), Readers: 16}
	var errs []error
	dur := func(key string, dst *time.Duration) {
		if v := getenv(key); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				errs = append(errs, fmt.Errorf("%s=%q is not a positive duration", key, v))
				return
			}
			*dst = d
		}
	}
	num := func(key string, dst *float64) {
		if v := getenv(key); v != "" {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil || f < 0 {
				errs = append(errs, fmt.Errorf("%s=%q is not a non-negative number", key, v))
				return
			}
			*dst = f
		}
	}
	count := func(key string, dst *int) {
		if v := getenv(key); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				errs = append(errs, fmt.Errorf("%s=%q is not a positive integer", key, v))
				return
			}
			*dst = n
		}
	}
	dur("MONITOR_WINDOW", &c.Window)
	num("MONITOR_JS_THRESHOLD", &c.Thresholds.JS)
	num("MONITOR_LINF_THRESHOLD", &c.Thresholds.LInf)
	num("MONITOR_OOD_THRESHOLD", &c.Thresholds.OODShare)
	num("MONITOR_ACCURACY_THRESHOLD", &c.Thresholds.Accuracy)
	minPred := int(c.Thresholds.MinPredictions)
	count("MONITOR_MIN_PREDICTIONS", &minPred)
	c.Thresholds.MinPredictions = int64(minPred)
	count("MONITOR_READERS", &c.Readers)
	if v := getenv("MONITOR_ALERT_FEATURES"); v != "" {
		c.Thresholds.AlertFeatures = nil
		known := mon.NumericFeatures()
		for _, f := range strings.Split(v, ",") {
			f = strings.TrimSpace(f)
			if !contains(known, f) {
				errs = append(errs, fmt.Errorf("MONITOR_ALERT_FEATURES: %q is not one of %s", f, strings.Join(known, ", ")))
			}
			c.Thresholds.AlertFeatures = append(c.Thresholds.AlertFeatures, f)
		}
	}
	if len(errs) > 0 {
		return c, fmt.Errorf("monitor configuration: %w", errs[0])
	}
	return c, nil
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// Gauges records each report's figures: telemetry.Monitor's OTel gauges in
// the Monitor function. An interface, so that `orchard monitor` links no
// metrics SDK.
type Gauges interface {
	Report(ctx context.Context, r *mon.Report)
}

// Runner runs the monitor over a window.
type Runner struct {
	Config   Config
	Results  blob.Store         // the results bucket: predictions in, reports out
	Registry *registry.Registry // baselines and labels of each version
	Gauges   Gauges             // nil records nothing
	Log      *slog.Logger
}

// Summary is what one run found and wrote.
type Summary struct {
	WindowStart time.Time     `json:"window_start"`
	WindowEnd   time.Time     `json:"window_end"`
	Read        int64         `json:"read"` // result objects read
	Malformed   int64         `json:"malformed"`
	Failed      int64         `json:"failed"`
	Reports     []*mon.Report `json:"reports"`
	URIs        []string      `json:"uris"` // report.json of each report
}

// Alerts counts the thresholds crossed over all reports.
func (s *Summary) Alerts() int {
	n := 0
	for _, r := range s.Reports {
		n += len(r.Alerts)
	}
	return n
}

// Run aggregates the window [end-Window, end).
func (r *Runner) Run(ctx context.Context, end time.Time) (*Summary, error) {
	return r.RunWindow(ctx, end.Add(-r.Config.Window), end)
}

// RunWindow aggregates [start, end): every result object whose update time
// falls in the window (with a minute's slack: the record's own time
// decides), per model version.
func (r *Runner) RunWindow(ctx context.Context, start, end time.Time) (*Summary, error) {
	w := mon.NewWindow(start, end)
	read, err := r.aggregate(ctx, w)
	if err != nil {
		return nil, err
	}
	s := &Summary{WindowStart: start, WindowEnd: end, Read: read, Malformed: w.Malformed, Failed: w.Failed, Reports: []*mon.Report{}, URIs: []string{}}
	for _, k := range w.Versions() {
		if registry.ValidName(k.Model) != nil || registry.ValidVersion(k.Version) != nil {
			s.Malformed++ // not a name a report path may hold
			continue
		}
		b, labels, err := r.baseline(ctx, k)
		if err != nil {
			return nil, err
		}
		rep := w.Report(k, b, labels, r.Config.Thresholds)
		uri, err := r.write(ctx, rep)
		if err != nil {
			return nil, err
		}
		s.Reports, s.URIs = append(s.Reports, rep), append(s.URIs, uri)
		if r.Gauges != nil {
			r.Gauges.Report(ctx, rep)
		}
		r.figures(ctx, rep)
		r.warn(ctx, rep, uri)
	}
	r.log().InfoContext(ctx, "monitor: window aggregated", "window_start", start, "window_end", end, "read", read,
		"versions", len(s.Reports), "malformed", w.Malformed, "failed", w.Failed, "alerts", s.Alerts())
	return s, nil
}

func (r *Runner) log() *slog.Logger { return cmp.Or(r.Log, slog.Default()) }

// slack is how far an object's update time may be from its record's.
const slack = time.Minute

// aggregate lists the results bucket and reads the window's results with
// Config.Readers parallel reads feeding one aggregator.
func (r *Runner) aggregate(ctx context.Context, w *mon.Window) (int64, error) {
	keys := make(chan string)
	recs := make(chan []byte, 64)
	var wg sync.WaitGroup
	var readErr error
	var mu sync.Mutex
	for range max(1, r.Config.Readers) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range keys {
				b, _, err := r.Results.Read(ctx, k, MaxRecordBytes)
				if err != nil && !errors.Is(err, blob.ErrNotFound) && !errors.Is(err, blob.ErrTooLarge) {
					mu.Lock()
					readErr = cmp.Or(readErr, fmt.Errorf("monitor: reading %s: %w", r.Results.URI(k), err))
					mu.Unlock()
				}
				recs <- b // nil (gone or too large) counts as malformed
			}
		}()
	}
	go func() {
		defer close(recs)
		defer wg.Wait()
		defer close(keys)
		// The listing streams page by page: memory stays bounded by the
		// readers however many results the bucket holds.
		for o, err := range r.Results.List(ctx, blob.ListOptions{}) {
			if err != nil {
				mu.Lock()
				readErr = cmp.Or(readErr, fmt.Errorf("monitor: listing results: %w", err))
				mu.Unlock()
				return
			}
			if strings.HasPrefix(o.Key, ReportPrefix) || !strings.HasSuffix(o.Key, ".json") ||
				o.Updated.Before(w.Start.Add(-slack)) || o.Updated.After(w.End.Add(slack)) {
				continue
			}
			select {
			case keys <- o.Key:
			case <-ctx.Done():
				return
			}
		}
	}()
	var read int64
	for b := range recs {
		read++
		w.AddRecord(b)
	}
	if err := cmp.Or(ctx.Err(), readErr); err != nil {
		return read, err
	}
	return read, nil
}

// baseline loads version k's baseline and labels; a version without a
// baseline (trained before them) is reported without drift.
func (r *Runner) baseline(ctx context.Context, k mon.Key) (*mon.Baseline, []string, error) {
	meta, err := r.Registry.Metadata(ctx, k.Model, k.Version)
	if errors.Is(err, blob.ErrNotFound) || errors.Is(err, registry.ErrNotFound) {
		r.log().WarnContext(ctx, "monitor: predictions of a version not in the registry", "model", k.Model, "version", k.Version)
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("monitor: %s: %w", k, err)
	}
	b, err := r.Registry.Baseline(ctx, k.Model, k.Version)
	if errors.Is(err, blob.ErrNotFound) {
		return nil, meta.Labels, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("monitor: %s: %w", k, err)
	}
	return b, meta.Labels, nil
}

// ReportKey is where a version's report for a window ending at end goes.
func ReportKey(model, version string, end time.Time, file string) string {
	return ReportPrefix + model + "/" + version + "/" + end.UTC().Format(WindowEndLayout) + "/" + file
}

func (r *Runner) write(ctx context.Context, rep *mon.Report) (string, error) {
	js, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return "", fmt.Errorf("monitor: encoding the report: %w", err)
	}
	page, err := rep.HTML()
	if err != nil {
		return "", fmt.Errorf("monitor: %w", err)
	}
	jsonKey := ReportKey(rep.Model, rep.Version, rep.WindowEnd, "report.json")
	if _, err := r.Results.Write(ctx, jsonKey, js, blob.WriteOptions{ContentType: "application/json"}); err != nil {
		return "", fmt.Errorf("monitor: writing the report: %w", err)
	}
	htmlKey := ReportKey(rep.Model, rep.Version, rep.WindowEnd, "report.html")
	if _, err := r.Results.Write(ctx, htmlKey, page, blob.WriteOptions{ContentType: "text/html; charset=utf-8"}); err != nil {
		return "", fmt.Errorf("monitor: writing the report page: %w", err)
	}
	return r.Results.URI(jsonKey), nil
}

// figures logs one INFO line per figure of a report (each feature's
// divergence, the OOD share, live accuracy): the log-based metric
// drift_figures turns them into the dashboard's drift charts, with no OTLP
// collector deployed (docs/monitoring.md names the fields).
func (r *Runner) figures(ctx context.Context, rep *mon.Report) {
	line := func(feature, measure string, value float64) {
		r.log().InfoContext(ctx, "drift figure: "+rep.Model+" "+rep.Version+": "+feature+" "+measure+" "+strconv.FormatFloat(value, 'f', 3, 64),
			"drift_figure", feature, "model", rep.Model, "version", rep.Version, "measure", measure, "value", value,
			"window_end", rep.WindowEnd, "predictions", rep.Predictions)
	}
	for _, d := range rep.Drift {
		line(d.Feature, d.Measure, d.Value)
	}
	if rep.Baseline {
		line(mon.OODShare, "share", rep.OODShare)
	}
	if rep.Live != nil {
		line(mon.Accuracy, "accuracy", rep.Live.Accuracy)
	}
}

// warn logs one WARNING line per alert, with the fields the log-based
// alert policy matches (docs/monitoring.md).
func (r *Runner) warn(ctx context.Context, rep *mon.Report, uri string) {
	for _, a := range rep.Alerts {
		r.log().WarnContext(ctx, "drift: "+rep.Model+" "+rep.Version+": "+a.String(),
			"drift_alert", a.Feature, "model", rep.Model, "version", rep.Version, "measure", a.Measure,
			"value", a.Value, "threshold", a.Threshold, "window_start", rep.WindowStart, "window_end", rep.WindowEnd,
			"predictions", rep.Predictions, "report", uri)
	}
}
