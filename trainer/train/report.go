package train

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"time"

	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/trainer/config"
	"github.com/orchard-mlops/orchard/trainer/report"
)

// softmax returns the probabilities of one row of logits.
func softmax(row []float32) []float64 {
	ls := logSoftmax(row)
	for i := range ls {
		ls[i] = math.Exp(ls[i])
	}
	return ls
}

// Confusion counts [true][predicted] from logits.
func Confusion(logits []float32, y []int32, k int) [][]int {
	m := make([][]int, k)
	for i := range m {
		m[i] = make([]int, k)
	}
	for i, label := range y {
		m[label][argmax(logits[i*k:(i+1)*k])]++
	}
	return m
}

func writeReport(ctx context.Context, st blob.Store, cfg *config.Config, res *Result, start, end time.Time) error {
	ds := res.Dataset
	meta := res.Metadata
	k := len(ds.Labels)
	y := make([]int32, len(ds.Validation))
	probs := make([][]float64, len(ds.Validation))
	truth := make([]int, len(ds.Validation))
	for i, s := range ds.Validation {
		y[i] = int32(s.Class)
		truth[i] = s.Class
		probs[i] = softmax(res.ORTLogits[i*k : (i+1)*k])
	}
	in := report.Input{
		Title:      fmt.Sprintf("%s %s", meta.Name, meta.Version),
		Labels:     ds.Labels,
		Confusion:  Confusion(res.ORTLogits, y, k),
		ConfigYAML: string(cfg.YAML()),
		Summary: [][2]string{
			{"dataset", fmt.Sprintf("%s (%s)", meta.Dataset.URI, meta.Dataset.ManifestDigest)},
			{"images", fmt.Sprintf("%d train, %d validation, %d skipped, %d classes", len(ds.Train), len(ds.Validation), len(ds.Skipped), k)},
			{"validation accuracy (onnxruntime)", fmt.Sprintf("%.4f", meta.Metrics.ValidationAccuracy)},
			{"validation loss (onnxruntime)", fmt.Sprintf("%.4f", meta.Metrics.ValidationLoss)},
			{"epochs", fmt.Sprintf("%d (best %d)", meta.Metrics.Epochs, res.BestEpoch)},
			{"ONNX vs GoMLX", fmt.Sprintf("max |logit diff| %.2g (tolerance %.0e), top-1 mismatches %d, near ties %d",
				res.Verification.MaxAbsDiff, res.Verification.Tolerance, res.Verification.Top1Mismatches, res.Verification.NearTies)},
			{"model", fmt.Sprintf("input %v (per-image standardisation %v, space %q), widths %v x%d, conv %s, batch norm %v",
				meta.Input.Shape, cfg.Model.InputNorm, cmp.Or(cfg.Model.InputSpace, "linear"), cfg.Model.Widths, cfg.Model.ConvsPerBlock, cfg.Model.Conv, cfg.Model.BatchNorm)},
			{"wall time", fmt.Sprintf("%.1f s (until the report)", end.Sub(start).Seconds())},
			{"source revision", cmp.Or(meta.SourceRevision, "unknown")},
		},
	}
	for _, h := range res.History {
		in.History = append(in.History, report.Point{Epoch: h.Epoch, TrainLoss: h.TrainLoss, ValLoss: h.ValLoss,
			TrainAcc: h.TrainAccuracy, ValAcc: h.ValAccuracy, LearningRate: h.LearningRate, ImagesPerSec: h.ImagesPerSec, Seconds: h.Seconds})
	}
	for _, p := range res.Steps {
		in.Steps = append(in.Steps, report.StepPoint{Epoch: p.Epoch, TrainLoss: p.TrainLoss, TrainAcc: p.TrainAccuracy, LearningRate: p.LearningRate})
	}
	for _, i := range report.Worst(probs, truth, cfg.Report.WorstImages) {
		s := ds.Validation[i]
		pred := argmax(res.ORTLogits[i*k : (i+1)*k])
		in.Examples = append(in.Examples, report.Example{Image: s.Canvas, Path: s.Path, True: ds.Labels[s.Class],
			Pred: ds.Labels[pred], Confidence: probs[i][pred], Correct: pred == s.Class})
	}
	if len(res.Drift) > 0 {
		in.Tables = append(in.Tables, driftTable(res.Drift))
	}
	if res.Baseline != nil {
		in.Tables = append(in.Tables, baselineTable(res.Baseline))
	}
	for _, e := range ds.Skipped {
		in.Skipped = append(in.Skipped, [2]string{e.Path, e.Reason})
	}
	files, err := report.Render(in)
	if err != nil {
		return err
	}
	for name, b := range files {
		ct := "image/png"
		if name == "index.html" {
			ct = "text/html; charset=utf-8"
		}
		if _, err := st.Write(ctx, ReportDir+"/"+name, b, blob.WriteOptions{ContentType: ct}); err != nil {
			return err
		}
	}
	return nil
}
