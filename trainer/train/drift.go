package train

import (
	"context"
	"fmt"

	"github.com/orchard-mlops/orchard/shared/model"
	"github.com/orchard-mlops/orchard/shared/onnxrt"
	"github.com/orchard-mlops/orchard/trainer/dataset"
	"github.com/orchard-mlops/orchard/trainer/evaluate"
	"github.com/orchard-mlops/orchard/trainer/report"
)

// driftSuite evaluates the exported model under report.drift's
// corruptions on the validation split, through the serving path as
// `trainer eval -corrupt` does: the photos a run has not trained on,
// under the shifts real uploads bring. Nil when report.drift is empty.
func (r *run) driftSuite(ctx context.Context, res *Result) ([]evaluate.Result, error) {
	corrs, err := evaluate.Select(r.cfg.Report.Drift)
	if err != nil || len(corrs) == 0 {
		return nil, err
	}
	clf, err := onnxrt.NewClassifier(&model.Model{Metadata: *res.Metadata, ONNX: res.ONNX}, onnxrt.Options{})
	if err != nil {
		return nil, fmt.Errorf("drift suite: %w", err)
	}
	defer clf.Close()
	start, ds := r.now(), r.ds
	entries := make([]dataset.Entry, len(ds.Validation))
	for i, s := range ds.Validation {
		entries[i] = dataset.Entry{Path: s.Path, Class: ds.Labels[s.Class]}
	}
	out, skipped, err := evaluate.Run(ctx, clf, evaluate.Options{
		DataURI: ds.Manifest.URI, Storage: r.opt.Storage, Entries: entries, Corruptions: corrs, Seed: r.cfg.Seed,
		Workers: r.cfg.Data.Workers, Limits: r.cfg.Data.Limits(),
	})
	if err != nil {
		return nil, fmt.Errorf("drift suite: %w", err)
	}
	if skipped > 0 {
		return nil, fmt.Errorf("drift suite: %d validation images could not be read again", skipped)
	}
	for _, c := range out {
		r.log.Info("drift suite", "condition", c.Condition, "accuracy", round(c.Accuracy), "images", c.Images)
	}
	r.log.Info("drift suite done", "conditions", len(out), "seconds", round(r.now().Sub(start).Seconds()))
	return out, nil
}

// driftMetrics are the suite's figures for model.json: the accuracy per
// condition, and the lowest and mean over the corruptions.
func driftMetrics(suite []evaluate.Result, extra map[string]float64) {
	if len(suite) < 2 {
		return
	}
	low, sum := 1.0, 0.0
	for _, c := range suite[1:] { // suite[0] is the clean condition
		extra["drift_"+c.Condition] = c.Accuracy
		low, sum = min(low, c.Accuracy), sum+c.Accuracy
	}
	extra["drift_min_accuracy"] = low
	extra["drift_mean_accuracy"] = sum / float64(len(suite)-1)
}

// driftTable is the suite as a training report section.
func driftTable(suite []evaluate.Result) report.Table {
	t := report.Table{Title: "Drift suite (validation split through the serving path, onnxruntime; trainer eval -corrupt)",
		Header: []string{"condition", "accuracy", "images", "what", "most confused (true -> predicted: images)"}}
	for _, c := range suite {
		t.Rows = append(t.Rows, []string{c.Condition, fmt.Sprintf("%.1f %%", 100*c.Accuracy), fmt.Sprint(c.Images), c.Desc, c.ConfusedText()})
	}
	return t
}
