package train

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/shared/model"
	"github.com/orchard-mlops/orchard/shared/monitor"
	"github.com/orchard-mlops/orchard/trainer/dataset"
	"github.com/orchard-mlops/orchard/trainer/report"
)

// Baseline is the drift monitor's baseline of the exported model: the
// validation set's input statistics (computed by the dataset loader in the
// serving tensor pass) and the model's top-1 label and confidence on each
// image under onnxruntime.
func Baseline(ds *dataset.Dataset, ortLogits []float32) *monitor.Baseline {
	k := len(ds.Labels)
	bb := monitor.NewBaselineBuilder()
	for i, s := range ds.Validation {
		top := model.TopK(ds.Labels, ortLogits[i*k:(i+1)*k], 1)[0] // as serving scores it
		bb.Add(s.Stats, top.Label, top.Score)
	}
	return bb.Baseline()
}

// writeBaseline stores the baseline beside model.json.
func writeBaseline(ctx context.Context, st blob.Store, b *monitor.Baseline) error {
	data, err := json.Marshal(b)
	if err != nil {
		return fmt.Errorf("encoding %s: %w", monitor.BaselineFile, err)
	}
	if _, err := st.Write(ctx, monitor.BaselineFile, data, blob.WriteOptions{ContentType: "application/json"}); err != nil {
		return fmt.Errorf("writing %s: %w", monitor.BaselineFile, err)
	}
	return nil
}

// baselineTable is the baseline as a training report section.
func baselineTable(b *monitor.Baseline) report.Table {
	h, rows := b.Summary()
	return report.Table{Title: "Monitoring baseline (" + monitor.BaselineFile + ", validation set through the serving path)", Header: h, Rows: rows}
}
