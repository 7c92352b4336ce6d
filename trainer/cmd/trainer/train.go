package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/shared/registry"
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
	data := fs.String("data", "", "dataset root: local dir, file:///dir or gs://bucket/prefix (default: data.uri)")
	out := fs.String("out", "", "model directory (default: $AIP_MODEL_DIR)")
	ckpt := fs.String("checkpoints", "", "checkpoint directory (default: $AIP_CHECKPOINT_DIR, else OUT/checkpoints)")
	metrics := fs.String("metrics", "", "extra metrics/TensorBoard directory (default: $AIP_TENSORBOARD_LOG_DIR)")
	cfgFile := fs.String("config", "", "YAML config merged over the built-in default")
	verbose := fs.Bool("v", false, "debug logging")
	publish := fs.String("publish", "", "after a verified export, publish the model directory to this registry (gs://... or dir) and promote it if it passes the quality gate")
	name := fs.String("name", "", "model name (same as -set name=N; with -publish, the registry model name)")
	allowNew := fs.Bool("allow-new-labels", false, "with -publish: let the gate promote a model whose labels differ from production's")
	margin := fs.Float64("margin", 0, "with -publish: accuracy margin of the quality gate (see shared/registry)")
	hpMetric := fs.String("hypertune-metric", "", "after the run, report this model.json metric (e.g. validation_accuracy) in the cloudml-hypertune file Vertex AI tuning reads ($CLOUD_ML_HP_METRIC_FILE)")
	var prof profiles
	prof.register(fs)
	var sets multiFlag
	fs.Var(&sets, "set", "override a config key, e.g. -set train.epochs=20 (repeatable); a tuning trial's --key=value arguments are read as -set")
	args, hpSets := hyperparameterArgs(fs, args)
	if err := fs.Parse(args); err != nil {
		return err
	}
	sets = append(sets, hpSets...)
	if fs.NArg() > 0 {
		return fmt.Errorf("train: unexpected arguments %v", fs.Args())
	}
	if *name != "" {
		sets = append(sets, "name="+yamlQuote(*name))
	}
	cfg, err := loadConfig(*cfgFile, sets, *data)
	if err != nil {
		return err
	}
	asTrial(cfg, *hpMetric)
	modelDir := firstNonEmpty(*out, os.Getenv("AIP_MODEL_DIR"))
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
		CheckpointURI: firstNonEmpty(*ckpt, os.Getenv("AIP_CHECKPOINT_DIR")),
		MetricsURI:    firstNonEmpty(*metrics, os.Getenv("AIP_TENSORBOARD_LOG_DIR")),
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
	if *publish == "" {
		return nil
	}
	ro := registry.Options{Storage: stores}
	if topic := os.Getenv("MODEL_PUBLISHED_TOPIC"); topic != "" {
		// Running functions also poll the alias; the event makes them (and
		// any other subscriber) hear of a promotion at once.
		n, err := registry.DialPubSubNotifier(ctx, firstNonEmpty(os.Getenv("GOOGLE_CLOUD_PROJECT"), os.Getenv("CLOUD_ML_PROJECT_ID")), topic)
		if err != nil {
			return fmt.Errorf("publish: %w", err)
		}
		defer n.Stop()
		ro.Notifier = n
	}
	reg, err := registry.Open(ctx, *publish, ro)
	if err != nil {
		return err
	}
	// EVAL_URI is the operator's evaluation set, set by the deployment
	// (SubmitTraining passes its own), never by the training request.
	var eval *registry.EvalSet
	if uri := os.Getenv("EVAL_URI"); uri != "" {
		if eval, err = registry.OpenEvalSet(ctx, stores, uri); err != nil {
			return fmt.Errorf("publish: EVAL_URI: %w", err)
		}
	}
	pub, err := registry.Publish(ctx, reg, modelDir, registry.PublishOptions{Name: cfg.Name, Promote: true,
		AllowNewLabels: *allowNew, Margin: *margin, Eval: eval, By: "trainer:" + firstNonEmpty(os.Getenv("CLOUD_ML_JOB_ID"), "local"),
		Reason: publishReason(os.Getenv)})
	if err != nil {
		return err
	}
	reason := ""
	if pub.Decision != nil {
		reason = pub.Decision.Reason
	}
	log.Info("published", "registry", *publish, "name", pub.Name, "version", pub.Version, "uri", pub.URI,
		"promoted", pub.Promoted(), "reason", reason)
	fmt.Fprintf(stdout, "published %s %s to %s: promoted=%v (%s)\n", pub.Name, pub.Version, pub.URI, pub.Promoted(), reason)
	return nil
}

// publishReason is the reason recorded with the alias move: the job, the
// training request's message, its requester and notes (set by
// SubmitTraining), so the history says who asked for what and why.
func publishReason(getenv func(string) string) string {
	var parts []string
	add := func(label, key string) {
		if v := getenv(key); v != "" {
			parts = append(parts, label+" "+v)
		}
	}
	add("job", "CLOUD_ML_JOB_ID")
	add("message", "ORCHARD_MESSAGE_ID")
	add("requested by", "ORCHARD_REQUESTER")
	reason := "trainer -publish"
	if len(parts) > 0 {
		reason = "training " + strings.Join(parts, ", ")
	}
	if notes := getenv("ORCHARD_NOTES"); notes != "" {
		reason += ": " + notes
	}
	return reason
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
