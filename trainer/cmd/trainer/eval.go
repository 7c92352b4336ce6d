package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/shared/model"
	"github.com/orchard-mlops/orchard/shared/monitor"
	"github.com/orchard-mlops/orchard/shared/onnxrt"
	"github.com/orchard-mlops/orchard/trainer/evaluate"
)

func cmdEval(ctx context.Context, stores *blob.Opener, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("eval", flag.ContinueOnError)
	fs.SetOutput(stderr)
	modelURI := fs.String("model", "", "model directory: local dir, file:///dir or gs://bucket/prefix (required)")
	data := fs.String("data", "", "folder-per-class dataset (required)")
	corrupt := fs.String("corrupt", "", `corruptions: "all" or a comma-separated list (`+names()+`)`)
	split := fs.String("split", "auto", "auto | stratified | folders (folders/auto with Training/ and Test/: only Test/ is used)")
	seed := fs.Int64("seed", 1, "seed of the random corruptions")
	jsonOut := fs.Bool("json", false, "print JSON lines")
	mon := fs.Bool("monitor", false, "also run the drift monitor on each condition as one window, against the model's "+monitor.BaselineFile)
	winSize := fs.Int("window", 0, "with -monitor: split each condition into windows of this many images (largest divergence shown, alerts as windows raising them)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *modelURI == "" || *data == "" {
		return fmt.Errorf("eval: -model and -data are required")
	}
	corrs, err := evaluate.Select(*corrupt)
	if err != nil {
		return err
	}
	m, err := model.Load(ctx, stores, *modelURI)
	if err != nil {
		return err
	}
	clf, err := onnxrt.NewClassifier(m, onnxrt.Options{})
	if err != nil {
		return err
	}
	defer clf.Close()
	opt := evaluate.Options{DataURI: *data, Storage: stores, Mode: *split, TrainDir: "Training",
		TestDir: "Test", Corruptions: corrs, Seed: *seed, Thresholds: monitor.DefaultThresholds(), WindowSize: *winSize}
	if *mon {
		if opt.Baseline = m.Baseline; opt.Baseline == nil {
			return fmt.Errorf("eval -monitor: model %s has no %s", *modelURI, monitor.BaselineFile)
		}
	}
	res, skipped, err := evaluate.Run(ctx, clf, opt)
	if err != nil {
		return err
	}
	if *jsonOut {
		enc := json.NewEncoder(stdout)
		for _, r := range res {
			if err := enc.Encode(r); err != nil {
				return err
			}
		}
		return nil
	}
	fmt.Fprintf(stdout, "model %s %s on %s (%d unreadable images skipped)\n", m.Metadata.Name, m.Metadata.Version, *data, skipped)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	if *mon {
		return printDrift(stdout, res)
	}
	fmt.Fprintln(tw, "condition\taccuracy\tcorrect/images\tdescription\tmost confused (true -> predicted: images)")
	for _, r := range res {
		fmt.Fprintf(tw, "%s\t%.4f\t%d/%d\t%s\t%s\n", r.Condition, r.Accuracy, r.Correct, r.Images, r.Desc, r.ConfusedText())
	}
	return tw.Flush()
}

func names() string {
	s := ""
	for i, c := range evaluate.Corruptions {
		if i > 0 {
			s += ","
		}
		s += c.Name
	}
	return s
}

// printDrift is the -monitor table: per condition its accuracy, the
// monitor's divergences and OOD share, and the alerts it would raise.
func printDrift(w io.Writer, res []evaluate.Result) error {
	tw := tabwriter.NewWriter(w, 0, 4, 1, ' ', 0)
	fmt.Fprint(tw, "condition\taccuracy")
	feats := append(monitor.NumericFeatures(), monitor.Labels)
	for _, f := range feats {
		fmt.Fprintf(tw, "\t%s", f)
	}
	fmt.Fprintln(tw, "\tood\twindows\talerts")
	for _, r := range res {
		fmt.Fprintf(tw, "%s\t%.3f", r.Condition, r.Accuracy)
		for _, f := range feats {
			fmt.Fprintf(tw, "\t%.3f", r.Monitor.Divergence[f])
		}
		fmt.Fprintf(tw, "\t%.2f\t%d\t%s\n", r.Monitor.OODShare, r.Monitor.Windows, strings.Join(r.Monitor.Alerts, ", "))
	}
	return tw.Flush()
}
