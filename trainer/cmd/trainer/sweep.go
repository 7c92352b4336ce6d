package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/shared/onnxrt"
	"github.com/orchard-mlops/orchard/trainer/config"
	"github.com/orchard-mlops/orchard/trainer/sweep"
	"github.com/orchard-mlops/orchard/trainer/train"
)

// trainerArgv is the command line prefix that runs this binary (tests
// replace the test binary's role through TestMain).
var trainerArgv = func() ([]string, error) {
	exe, err := os.Executable()
	return []string{exe}, err
}

func cmdSweep(ctx context.Context, stores *blob.Opener, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sweep", flag.ContinueOnError)
	fs.SetOutput(stderr)
	specFile := fs.String("spec", "", "sweep spec (YAML; required)")
	data := fs.String("data", "", "dataset root: local dir, file:///dir or gs://bucket/prefix (required)")
	out := fs.String("out", "", "sweep directory: trial N writes OUT/N/model, the comparison page goes to OUT/compare (required)")
	parallel := fs.Int("parallel", 0, "trials at once (default: the spec's parallel)")
	version := fs.String("version", "", "sweep version; trial N's model is VERSION-tN (default: sweep-<UTC time>)")
	publish := fs.String("publish", "", "publish the best trial to this registry through the quality gate")
	margin := fs.Float64("margin", 0, "with -publish: accuracy margin of the quality gate")
	allowNew := fs.Bool("allow-new-labels", false, "with -publish: let the gate promote a different label set")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *specFile == "" || *data == "" || *out == "" {
		return fmt.Errorf("sweep: -spec, -data and -out are required")
	}
	spec, err := sweep.Load(*specFile)
	if err != nil {
		return err
	}
	if *parallel > 0 {
		spec.Parallel = *parallel
	}
	if *version == "" {
		*version = "sweep-" + time.Now().UTC().Format("20060102-150405")
	}
	argv, err := trainerArgv()
	if err != nil {
		return err
	}
	// Trial logs and metric files are local files: beside the trials for a
	// local sweep directory, in a temporary directory for gs:// ones.
	_, local, isGCS, err := blob.Parse(*out)
	if err != nil {
		return err
	}
	logDir := filepath.Join(local, "logs")
	if isGCS {
		if logDir, err = os.MkdirTemp("", "orchard-sweep-"); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "sweep %s: %s search, %d trials, %d at a time, maximising %s (goal %s); logs in %s\n",
		*version, spec.Algorithm, len(spec.Expand()), spec.Parallel, spec.Metric, spec.Goal, logDir)
	results, runErr := sweep.RunLocal(ctx, spec, sweep.LocalOptions{Trainer: argv, Data: *data, Out: *out,
		Version: *version, LogDir: logDir, Stdout: stdout})
	sweep.PrintResults(stdout, spec, results)
	if runErr != nil {
		return runErr
	}
	fo := sweep.FinishOptions{Storage: stores, Registry: *publish, CompareOut: strings.TrimRight(*out, "/") + "/compare", Margin: *margin,
		AllowNewLabels: *allowNew, By: "trainer sweep", Reason: "sweep " + *version, Runtime: onnxrt.Runtime{}}
	sum, err := sweep.Finish(ctx, spec, results, fo)
	if err != nil {
		return err
	}
	sweep.PrintSummary(stdout, spec, sum, fo.CompareOut)
	return nil
}

// hyperparameterArgs takes out the --key=value (or --key value)
// arguments that name no flag of fs, which is how Vertex AI passes a tuning
// trial's parameters (the parameter IDs are config keys), and returns them
// as -set overrides. Unknown keys then fail in the config, by name.
func hyperparameterArgs(fs *flag.FlagSet, args []string) (rest, sets []string) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, ok := strings.CutPrefix(a, "--")
		k, v, hasValue := strings.Cut(name, "=")
		if !ok || k == "" || fs.Lookup(k) != nil {
			rest = append(rest, a)
			continue
		}
		switch {
		case hasValue:
			sets = append(sets, k+"="+v)
		case i+1 < len(args):
			sets = append(sets, k+"="+args[i+1])
			i++
		default:
			rest = append(rest, a)
		}
	}
	return rest, sets
}

// asTrial gives a tuning trial's model its own version (see sweep.TrialArgs).
func asTrial(cfg *config.Config, metric string) {
	if id := os.Getenv(sweep.TrialIDEnv); id != "" && metric != "" && cfg.Version != "" {
		cfg.Version = sweep.TrialVersion(cfg.Version, id)
	}
}

// reportMetric writes the run's metric where Vertex AI's tuning service
// (and trainer sweep, and the stand-in) read it.
func reportMetric(res *train.Result, metric string) error {
	v, err := sweep.MetricValue(res.Metadata, metric)
	if err != nil {
		return err
	}
	var step int64
	if n := len(res.History); n > 0 {
		step = res.History[n-1].Step
	}
	return sweep.Report(sweep.MetricFile(), metric, v, step)
}
