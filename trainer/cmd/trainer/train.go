package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/shared/gcp"
	"github.com/orchard-mlops/orchard/shared/onnxrt"
	"github.com/orchard-mlops/orchard/shared/pubsubx"
	"github.com/orchard-mlops/orchard/shared/registry"
	"github.com/orchard-mlops/orchard/shared/training"
	"github.com/orchard-mlops/orchard/trainer/config"
	"github.com/orchard-mlops/orchard/trainer/gendata"
	"github.com/orchard-mlops/orchard/trainer/train"
)

func loadConfig(file string, sets []string, data string) (*config.Config, error) {
	if data != "" {
		sets = append([]string{"data.uri=" + yamlQuote(data)}, sets...)
	}
	return config.LoadFile(file, sets)
}

// yamlQuote makes an arbitrary string a YAML scalar for -set.
func yamlQuote(s string) string { return fmt.Sprintf("%q", s) }

func cmdTrain(ctx context.Context, stores *blob.Opener, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("train", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "", "model directory (default: $AIP_MODEL_DIR)")
	ckpt := fs.String("checkpoints", "", "checkpoint directory (default: $AIP_CHECKPOINT_DIR, else OUT/checkpoints)")
	metrics := fs.String("metrics", "", "extra metrics/TensorBoard directory (default: $AIP_TENSORBOARD_LOG_DIR)")
	cfgFile := fs.String("config", "", "YAML config merged over the built-in default")
	verbose := fs.Bool("v", false, "debug logging")
	margin := fs.Float64("margin", 0, "with -publish: accuracy margin of the quality gate (see shared/registry)")
	hpMetric := fs.String("hypertune-metric", "", "after the run, report this model.json metric (e.g. validation_accuracy) in the cloudml-hypertune file Vertex AI tuning reads ($CLOUD_ML_HP_METRIC_FILE)")
	var prof profiles
	prof.register(fs)
	// The job's flags: what SubmitTraining asks for (a tuning trial's
	// --key=value arguments are read as -set).
	var job training.Job
	job.Flags(fs)
	args, hpSets := hyperparameterArgs(fs, args)
	if err := fs.Parse(args); err != nil {
		return err
	}
	job.ReadEnv(os.Getenv)
	sets := append(job.Overrides, hpSets...)
	if fs.NArg() > 0 {
		return fmt.Errorf("train: unexpected arguments %v", fs.Args())
	}
	if job.Model != "" {
		sets = append(sets, "name="+yamlQuote(job.Model))
	}
	cfg, err := loadConfig(*cfgFile, sets, job.Dataset)
	if err != nil {
		return err
	}
	asTrial(cfg, *hpMetric)
	modelDir := firstNonEmpty(*out, os.Getenv(training.EnvModelDir))
	if modelDir == "" {
		return fmt.Errorf("train: no output: pass -out DIR or set AIP_MODEL_DIR")
	}
	terminal := isTerminal(stdout)
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := newLogger(stderr, terminal, level)
	var progress io.Writer
	if terminal {
		progress = stdout
	}
	stopProfiles, err := prof.start(stores)
	if err != nil {
		return err
	}
	res, err := train.Run(ctx, train.Options{
		Config:        cfg,
		ModelURI:      modelDir,
		CheckpointURI: firstNonEmpty(*ckpt, os.Getenv(training.EnvCheckpointDir)),
		MetricsURI:    firstNonEmpty(*metrics, os.Getenv(training.EnvTensorBoard)),
		Logger:        log,
		Progress:      progress,
		Storage:       stores,
	})
	if perr := stopProfiles(ctx, modelDir); err == nil {
		err = perr
	}
	if err != nil {
		return err
	}
	if *hpMetric != "" {
		if err := reportMetric(res, *hpMetric); err != nil {
			return err
		}
	}
	m := res.Metadata
	fmt.Fprintf(stdout, "model %s %s: validation accuracy %.4f (onnxruntime, %d images), %d epochs (best %d), max |logit diff| %.2g -> %s\n",
		m.Name, m.Version, m.Metrics.ValidationAccuracy, m.Metrics.ValidationImages, m.Metrics.Epochs, res.BestEpoch,
		res.Verification.MaxAbsDiff, modelDir)
	if job.Registry == "" {
		return nil
	}
	ro := registry.Options{Storage: stores}
	if topic := job.ModelPublishedTopic; topic != "" {
		// Running functions also poll the alias; the event makes them (and
		// any other subscriber) hear of a promotion at once.
		n, err := pubsubx.DialModelNotifier(ctx, gcp.Project(), topic)
		if err != nil {
			return fmt.Errorf("publish: %w", err)
		}
		defer n.Close()
		ro.Notifier = n
	}
	reg, err := registry.Open(ctx, job.Registry, ro)
	if err != nil {
		return err
	}
	// EVAL_URI is the operator's evaluation set, set by the deployment
	// (SubmitTraining passes its own), never by the training request.
	var eval *registry.EvalSet
	if uri := job.EvalURI; uri != "" {
		if eval, err = registry.OpenEvalSet(ctx, stores, uri); err != nil {
			return fmt.Errorf("publish: EVAL_URI: %w", err)
		}
	}
	pub, err := registry.Publish(ctx, reg, modelDir, registry.PublishOptions{Name: cfg.Name, Promote: true,
		AllowNewLabels: job.AllowNewLabels, Margin: *margin, Eval: eval, By: "trainer:" + firstNonEmpty(os.Getenv(training.EnvJobID), "local"),
		Reason: job.PublishReason(os.Getenv(training.EnvJobID)), Runtime: onnxrt.Runtime{}})
	if err != nil {
		return err
	}
	reason := ""
	if pub.Decision != nil {
		reason = pub.Decision.Reason
	}
	log.Info("published", "registry", job.Registry, "name", pub.Name, "version", pub.Version, "uri", pub.URI,
		"promoted", pub.Promoted(), "reason", reason)
	fmt.Fprintf(stdout, "published %s %s to %s: promoted=%v (%s)\n", pub.Name, pub.Version, pub.URI, pub.Promoted(), reason)
	return nil
}

func cmdConfig(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("config", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgFile := fs.String("config", "", "YAML config merged over the built-in default")
	var sets multiFlag
	fs.Var(&sets, "set", "override a config key (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := config.LoadFile(*cfgFile, sets)
	if err != nil {
		return err
	}
	_, err = stdout.Write(cfg.YAML())
	return err
}

func cmdGenData(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("gen-data", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "", "output directory (required)")
	classes := fs.Int("classes", 4, "number of classes")
	perClass := fs.Int("per-class", 40, "images per class")
	size := fs.Int("size", 64, "image side in pixels")
	seed := fs.Int64("seed", 1, "random seed")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" {
		return fmt.Errorf("gen-data: -out is required")
	}
	names, err := gendata.Generate(*out, gendata.Options{Classes: *classes, PerClass: *perClass, Size: *size, Seed: *seed})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %d classes x %d images to %s: %q\n", len(names), *perClass, *out, names)
	return nil
}

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}
