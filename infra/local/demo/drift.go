package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/orchard-mlops/orchard/functions/monitor"
	mon "github.com/orchard-mlops/orchard/shared/monitor"
	"github.com/orchard-mlops/orchard/trainer/evaluate"
)

// DefaultDrift is the drift of the demo's second batch: the same photos
// zoomed out and under-exposed by the trainer's corruption code, two
// conditions that cost the model accuracy (docs/monitoring.md).
const DefaultDrift = "zoom_out,dark"

// DriftPrefix is where the drifted batch is uploaded; its class folders
// keep it labelled, so the monitor measures its live accuracy.
const DriftPrefix = "drift/"

// drift uploads the clean batch again under Options.Drift, waits for the
// results, then ticks the Monitor function once per window (the clean
// batch's, from cleanStart, and the drifted one's) and keeps both reports
// for the side-by-side table.
func (r *runner) drift(ctx context.Context, names []string, cleanStart time.Time) error {
	st, photos := r.st, r.o.Photos
	corrs, err := evaluate.Select(r.o.Drift)
	if err != nil {
		return err
	}
	// Reports are keyed by their window's end to the second, so the two
	// windows must end in different seconds: the clean one ends on the next
	// whole second, before any drifted upload.
	cleanEnd := time.Now().Truncate(time.Second).Add(time.Second)
	time.Sleep(time.Until(cleanEnd))
	var drifted []string
	if err := r.step("upload the same photos again under a drift ("+r.o.Drift+") to gs://"+st.Config.UploadsBucket+"/"+DriftPrefix, func() (string, error) {
		for i, n := range names {
			b, err := os.ReadFile(filepath.Join(photos, filepath.FromSlash(n)))
			if err != nil {
				return "", err
			}
			if b, err = evaluate.CorruptJPEG(b, corrs, 1, i); err != nil {
				return "", fmt.Errorf("%s: %w", n, err)
			}
			name := DriftPrefix + strings.TrimSuffix(n, filepath.Ext(n)) + ".jpg"
			if err := st.Upload(ctx, name, "image/jpeg", b); err != nil {
				return "", err
			}
			drifted = append(drifted, name)
		}
		return fmt.Sprintf("%d photos", len(drifted)), nil
	}); err != nil {
		return err
	}
	if err := r.step("wait for the drifted batch's results", func() (string, error) {
		wctx, cancel := context.WithTimeout(ctx, r.o.ResultTimeout)
		defer cancel()
		res, err := st.WaitResults(wctx, drifted, nil)
		return fmt.Sprintf("%d of %d", len(res), len(drifted)), err
	}); err != nil {
		return err
	}
	driftEnd := time.Now()
	if next := cleanEnd.Add(time.Second); driftEnd.Before(next) {
		time.Sleep(time.Until(next))
		driftEnd = next
	}
	windows := []struct {
		title      string
		start, end time.Time
	}{{"clean batch", cleanStart, cleanEnd}, {"drifted batch (" + r.o.Drift + ")", cleanEnd, driftEnd}}
	return r.step("monitor-tick → Monitor, once per window; reports in gs://"+st.Config.ResultsBucket+"/"+monitor.ReportPrefix, func() (string, error) {
		for _, w := range windows {
			if err := st.Tick(ctx, w.start, w.end); err != nil {
				return "", err
			}
		}
		for _, w := range windows {
			rep, uri, err := r.waitReport(ctx, w.end)
			if err != nil {
				return "", fmt.Errorf("%s: %w", w.title, err)
			}
			r.rep.Monitor = append(r.rep.Monitor, monitor.Column{Title: w.title, Report: rep, URI: uri})
		}
		return fmt.Sprintf("%d reports", len(r.rep.Monitor)), nil
	})
}

// waitReport reads the production version's report for the window ending
// at end, once the Monitor function has written it.
func (r *runner) waitReport(ctx context.Context, end time.Time) (*mon.Report, string, error) {
	key := monitor.ReportKey(r.st.Config.ModelName, r.rep.ModelVersion, end, "report.json")
	obj := r.st.Storage.Bucket(r.st.Config.ResultsBucket).Object(key)
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		rd, err := obj.NewReader(wctx)
		if err == nil {
			var buf bytes.Buffer
			_, err = buf.ReadFrom(rd)
			rd.Close()
			var rep mon.Report
			if err == nil {
				err = json.Unmarshal(buf.Bytes(), &rep)
			}
			return &rep, "gs://" + r.st.Config.ResultsBucket + "/" + key, err
		}
		select {
		case <-wctx.Done():
			return nil, "", fmt.Errorf("no report at gs://%s/%s: %w", r.st.Config.ResultsBucket, key, wctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}
