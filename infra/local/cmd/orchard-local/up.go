package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/orchard-mlops/orchard/infra/local/demo"
	"github.com/orchard-mlops/orchard/infra/local/stack"
	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/shared/model"
	"github.com/orchard-mlops/orchard/shared/onnxrt"
	"github.com/orchard-mlops/orchard/shared/registry"
)

const upUsage = `usage: orchard-local up [flags]

Starts the local stack (fake-gcs-server, the Pub/Sub emulator, the Eventarc
bridge, the functions server and, with -vertex, the Vertex AI stand-in),
puts a model in production so that Predict answers at once (-seed), prints
the commands that work against it, then a live log of what it does (training
jobs and their logs, gate decisions and promotions, each upload's result,
dead letters) until Ctrl-C, which stops everything and exits 0.

flags:`

// Seed modes: what the registry's production alias starts with.
const (
	seedAuto  = "auto"  // the newest model a demo saved, else seedTrain
	seedTrain = "train" // a small model trained at start
	seedNone  = "none"  // nothing: Predict answers 503 until a run is promoted
)

// seedSets make the start-up training run short (well under a minute on
// 2 cores with the fruits data).
var seedSets = []string{"train.epochs=1", "train.early_stopping_patience=0", "report.worst_images=4"}

func cmdUp(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("up", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprintln(fs.Output(), upUsage); fs.PrintDefaults() }
	var c common
	c.register(fs)
	fixedModel := fs.String("model", "", "serve this fixed model (MODEL_URI: a directory, file:///dir or gs://bucket/prefix) instead of the registry's production alias; e.g. a demo's .cache/orchard-demo/TIME/model")
	modelName := fs.String("model-name", model.DefaultName, "registry model the functions serve and training requests should name")
	monitorEvery := fs.Duration("monitor-every", 5*time.Minute, "publish a monitor tick (→ the Monitor function) at this interval, as Cloud Scheduler does; 0: never")
	vertex := fs.Bool("vertex", false, "also run the Vertex AI stand-in, with the trainer built from ./trainer/cmd/trainer as image "+demo.TrainerImage+" (make up sets it)")
	seed := fs.String("seed", seedAuto, "the production model at start, so Predict answers at once: auto (the newest model under .cache/orchard-demo with -model-name's name, else train), train (a 1-epoch run on -seed-data, with progress), none (503 until a training run is promoted), or a model directory")
	defData, _ := defaultDatasets()
	seedData := fs.String("seed-data", defData, "training set for -seed=train (default ../shared/datasets/fruits360-10/train when present; empty: generated)")
	fg := fs.Bool("foreground", false, "take the terminal's foreground process group, so that Ctrl-C reaches only orchard-local and not a make above it (make up sets it, so that make exits 0 too)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("up: unexpected arguments %v", fs.Args())
	}
	if *fg {
		defer takeForeground()()
	}
	t0 := time.Now()
	root, err := stack.FindRepoRoot("")
	if err != nil {
		return err
	}
	binDir := c.binDir
	if binDir == "" {
		binDir = stack.DefaultBinDir(root)
	}
	log := c.logger(stderr)
	cfg := stack.Config{Project: c.project, PubSub: c.pubsub, RepoRoot: root, BinDir: binDir, Logger: log, BuildProgress: stdout,
		MonitorEvery: *monitorEvery}
	if c.verbose {
		cfg.FunctionsOutput = stderr
	}
	if *fixedModel != "" {
		cfg.ModelURI = fileURI(*fixedModel)
		*seed = seedNone
	}
	cfg.ModelName = *modelName
	seedDir, how, err := pickSeed(ctx, *seed, root, cfg.ModelName)
	if err != nil {
		return err
	}
	if seedDir != "" && *seed != seedAuto {
		// An explicit start-up model is served under its own name.
		m, err := model.Load(ctx, nil, seedDir) // a local directory
		if err != nil {
			return fmt.Errorf("up: -seed %s: %w", seedDir, err)
		}
		cfg.ModelName = m.Metadata.Name
	}
	var trainer string
	if *vertex || (seedDir == "" && *seed != seedNone) {
		fmt.Fprintln(stdout, "==> building the trainer (go build ./trainer/cmd/trainer, GOEXPERIMENT=simd) ...")
		if trainer, err = stack.GoBuild(ctx, stdout, root, binDir, "./trainer/cmd/trainer", "trainer", "GOEXPERIMENT=simd"); err != nil {
			return err
		}
	}
	var v *stack.Vertex
	if *vertex {
		v = &stack.Vertex{Images: map[string][]string{demo.TrainerImage: {trainer}}, TrainerImage: demo.TrainerImage, Logger: log}
		cfg.Components = append(cfg.Components, v)
	}
	// The batch prediction job behind `orchard batch` (its binary comes
	// from make build).
	b := &stack.Batch{Logger: log}
	cfg.Components = append(cfg.Components, b)
	fmt.Fprintln(stdout, "==> starting the local stack (emulators, buckets, topics, bridge, functions server) ...")
	s, err := stack.Start(ctx, cfg)
	if err != nil {
		return err
	}
	defer func() {
		fmt.Fprintln(stdout, "stopping ...")
		if err := s.Close(); err != nil {
			fmt.Fprintf(stderr, "orchard-local: %v\n", err)
		}
		fmt.Fprintln(stdout, "stopped")
	}()
	if seedDir == "" && *seed != seedNone {
		if seedDir, how, err = trainSeed(ctx, stdout, trainer, *seedData, cfg.ModelName); err != nil {
			return fmt.Errorf("up: training the start-up model: %w", err)
		}
	}
	serving := ""
	if seedDir != "" {
		if serving, err = publishSeed(ctx, s, seedDir, how); err != nil {
			return fmt.Errorf("up: %w", err)
		}
	}
	printUp(stdout, s, v, b, serving, time.Since(t0))
	lctx, stopLog := context.WithCancel(ctx)
	logDone := follow(lctx, stdout, s, v)
	defer func() { stopLog(); <-logDone }()
	select {
	case <-ctx.Done():
		return nil
	case err := <-s.Failed():
		return err
	}
}

// fileURI makes a local path absolute (file://); URIs pass unchanged.
func fileURI(p string) string {
	if strings.Contains(p, "://") {
		return p
	}
	if abs, err := filepath.Abs(p); err == nil {
		p = abs
	}
	return "file://" + p
}

// pickSeed resolves -seed to a model directory and a phrase saying where
// it comes from; an empty directory with seedAuto or seedTrain means
// "train one once the stack is up".
func pickSeed(ctx context.Context, seed, root, name string) (dir, how string, err error) {
	switch seed {
	case seedNone, seedTrain:
		return "", "", nil
	case seedAuto:
		dir, err := newestSavedModel(ctx, filepath.Join(root, ".cache", "orchard-demo"), name)
		if err != nil || dir == "" {
			return "", "", err
		}
		return dir, "the newest model a demo saved, " + dir, nil
	}
	return seed, seed, nil
}

// newestSavedModel returns the newest DIR/*/model that loads and is named
// name (`make demo` saves one per run), or "".
func newestSavedModel(ctx context.Context, dir, name string) (string, error) {
	runs, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	// The folders are timestamps (YYYYMMDD-HHMMSS): newest last.
	sort.Slice(runs, func(i, j int) bool { return runs[i].Name() < runs[j].Name() })
	for i := len(runs) - 1; i >= 0; i-- {
		p := filepath.Join(dir, runs[i].Name(), "model")
		if m, err := model.Load(ctx, nil, p); err == nil && m.Metadata.Name == name {
			return p, nil
		}
	}
	return "", nil
}

// trainSeed trains a small model with the trainer binary, its progress
// lines shown, and returns the model directory.
func trainSeed(ctx context.Context, w io.Writer, trainer, data, name string) (dir, how string, err error) {
	tmp, err := os.MkdirTemp("", "orchard-up-seed-")
	if err != nil {
		return "", "", err
	}
	// The model is copied into the registry; the folder may go at exit,
	// but is needed until then only.
	if data == "" {
		data = filepath.Join(tmp, "data")
		fmt.Fprintf(w, "==> generating a training set (trainer gen-data -out %s) ...\n", data)
		if err := stack.RunCommand(ctx, trainer, "gen-data", "-out", data, "-per-class", "60", "-seed", "1"); err != nil {
			return "", "", err
		}
	}
	dir = filepath.Join(tmp, "model")
	args := []string{trainer, "train", "-data", data, "-out", dir, "-set", "name=" + name}
	for _, s := range seedSets {
		args = append(args, "-set", s)
	}
	fmt.Fprintf(w, "==> no saved model: training a small one so that Predict answers (about 20-45 s on 2 cores with the fruits data)\n    %s\n", strings.Join(args, " "))
	t0 := time.Now()
	// The trainer logs once per epoch off a terminal: say it is alive.
	stop := stack.Tick(10*time.Second, func(d time.Duration) {
		fmt.Fprintf(w, "    ... training, %s so far\n", d.Round(time.Second))
	})
	err = stack.RunCommandOutput(ctx, &prefixWriter{w: w, prefix: "    | "}, args...)
	stop()
	if err != nil {
		return "", "", err
	}
	fmt.Fprintf(w, "    trained in %s\n", time.Since(t0).Round(100*time.Millisecond))
	return dir, fmt.Sprintf("a 1-epoch model trained at start on %s", data), nil
}

// publishSeed registers dir in the stack's registry through the quality
// gate and waits until the functions serve it.
func publishSeed(ctx context.Context, s *stack.Stack, dir, how string) (string, error) {
	src, err := blob.NewOpener(s.Storage).Open(ctx, dir)
	if err != nil {
		return "", err
	}
	reg := registry.New(blob.NewGCS(s.Storage, s.Config.ModelsBucket, ""), registry.Options{})
	pub, err := registry.PublishFrom(ctx, reg, src, registry.PublishOptions{Promote: true, By: "orchard-local up", Reason: "start-up model: " + how,
		Runtime: onnxrt.Runtime{}})
	if err != nil {
		return "", fmt.Errorf("publishing the start-up model %s: %w", dir, err)
	}
	if !pub.Promoted() {
		return "", fmt.Errorf("the quality gate rejected the start-up model %s %s: %s", pub.Name, pub.Version, pub.Decision.Reason)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := demo.WaitServing(wctx, s.FunctionsURL+"/Predict", pub.Version); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s %s (production alias; %s)", pub.Name, pub.Version, how), nil
}

// prefixWriter writes each complete line with a prefix, JSON log lines
// compacted.
type prefixWriter struct {
	w       io.Writer
	prefix  string
	partial string
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	s := p.partial + strings.ReplaceAll(string(b), "\r", "\n")
	lines := strings.Split(s, "\n")
	p.partial = lines[len(lines)-1]
	for _, l := range lines[:len(lines)-1] {
		if l = demo.CompactLogLine(strings.TrimSpace(l)); l != "" {
			fmt.Fprintf(p.w, "%s%s\n", p.prefix, l)
		}
	}
	return len(b), nil
}

func printUp(w io.Writer, s *stack.Stack, v *stack.Vertex, b *stack.Batch, seeded string, took time.Duration) {
	c := s.Config
	fmt.Fprintf(w, "\nOrchard local stack is up (%s). Ctrl-C stops everything.\n\n", took.Round(10*time.Millisecond))
	fmt.Fprintf(w, "  Cloud Storage (fake-gcs-server)  %s   buckets: %s (uploads, notifications on), %s, %s\n", s.GCSHost, c.UploadsBucket, c.ResultsBucket, c.ModelsBucket)
	fmt.Fprintf(w, "  Pub/Sub (%s)%s %s   topics: %s, %s, %s, %s, %s\n", s.PubSubBackend, strings.Repeat(" ", max(0, 23-len(s.PubSubBackend))), s.PubSubHost, c.NotificationsTopic, c.TrainingTopic, c.PredictionsTopic, c.ModelsTopic, c.DeadLetterTopic)
	serving := c.ModelURI
	switch {
	case serving != "":
	case seeded != "":
		serving = seeded
	default:
		serving = "production alias of " + c.ModelName + " in " + s.RegistryURI() + " (503 until one is promoted)"
	}
	fmt.Fprintf(w, "  functions server                 %s   (pid %d) serving %s\n", s.FunctionsURL, s.FunctionsPID(), serving)
	if v != nil {
		fmt.Fprintf(w, "  Vertex AI stand-in (gRPC)        %s   image %s\n", v.Addr, demo.TrainerImage)
	} else {
		fmt.Fprintln(w, "  Vertex AI stand-in               not started (pass -vertex): SubmitTraining will refuse training requests")
	}
	fmt.Fprintf(w, "  Cloud Run jobs stand-in (gRPC)   %s   job %s (batch prediction, %s)\n", b.Addr, stack.BatchJobID, stack.BatchBinary)
	fmt.Fprintf(w, "  eventarc bridge                  %s finalize → %s/PredictOnUpload\n", c.NotificationsTopic, s.FunctionsURL)
	fmt.Fprintf(w, "                                   %s → %s/SubmitTraining   (dead letters: %s)\n", c.TrainingTopic, s.FunctionsURL, c.DeadLetterTopic)
	fmt.Fprintf(w, "                                   %s → %s/Monitor   (a tick every %s; 0: none)\n", c.MonitorTopic, s.FunctionsURL, c.MonitorEvery)
	fmt.Fprintln(w, "\nIn another shell:")
	for _, kv := range append(s.Env(), b.Env()...) {
		fmt.Fprintf(w, "  export %s=%s\n", kv[0], kv[1])
	}
	data, _ := defaultDatasets()
	if data == "" {
		data = "/abs/path/to/train"
	}
	fmt.Fprintf(w, `
  # upload a photo (JSON API; fake-gcs-server speaks it without auth)
  curl -sS -X POST -H 'Content-Type: image/jpeg' --data-binary @apple.jpg \
    "http://$STORAGE_EMULATOR_HOST/upload/storage/v1/b/%[1]s/o?uploadType=media&name=apple/1.jpg"
  # list and read results
  curl -sS "http://$STORAGE_EMULATOR_HOST/storage/v1/b/%[2]s/o" | jq -r '.items[].name'
  curl -sS "http://$STORAGE_EMULATOR_HOST/storage/v1/b/%[2]s/o/apple%%2F1.jpg.json?alt=media"
  # classify directly over HTTP
  curl -sS -H 'Content-Type: image/jpeg' --data-binary @apple.jpg %[3]s/Predict
  # gcloud storage and gcloud pubsub use the overrides exported above (gsutil does not: use curl or gcloud storage)
  gcloud storage ls gs://%[2]s
  # ask for a training run (needs -vertex; the dataset may be a local folder-per-class directory here)
  gcloud pubsub topics publish %[5]s --message='{"dataset":"%[10]s","model":"%[7]s","overrides":["train.epochs=3"],"notes":"from the README"}'
  # the same with the CLI (a built copy is in .cache/bin after make up)
  .cache/bin/orchard train -topic %[5]s -name %[7]s -data %[10]s -set train.epochs=3 -notes "more epochs"
  # the registry: versions, gate decisions, production alias and its history
  .cache/bin/orchard versions -registry %[8]s -name %[7]s
  .cache/bin/orchard alias show -registry %[8]s -name %[7]s
  # classify a whole prefix with the batch job (2 tasks; the results land beside the uploads' ones)
  .cache/bin/orchard batch -prefix gs://%[1]s/ -tasks 2
  .cache/bin/orchard batch status
  # model-published events (kept on the subscription of the same name)
  curl -sS -X POST -H 'Content-Type: application/json' \
    "http://$PUBSUB_EMULATOR_HOST/v1/projects/%[4]s/subscriptions/%[9]s:pull" -d '{"maxMessages":10}'
  # see what was dead-lettered
  curl -sS -X POST -H 'Content-Type: application/json' \
    "http://$PUBSUB_EMULATOR_HOST/v1/projects/%[4]s/subscriptions/%[6]s:pull" -d '{"maxMessages":10}'
  # the drift monitor now, over the last hour: a report per model version, alerts, figures side by side
  .cache/bin/orchard monitor -results gs://%[2]s -registry %[8]s -window 1h
  # or tick the Monitor function as the timer does, then open a report page
  gcloud pubsub topics publish %[11]s --message=''
  curl -sS "http://$STORAGE_EMULATOR_HOST/storage/v1/b/%[2]s/o?prefix=monitoring/" | jq -r '.items[].name'
  curl -sS "http://$STORAGE_EMULATOR_HOST/storage/v1/b/%[2]s/o/$(jq -rn --arg n NAME '$n|@uri')?alt=media" > report.html   # NAME: a report.html above
  # Go programs: storage.NewClient and pubsub.NewClient pick the emulators up from the variables.
`, c.UploadsBucket, c.ResultsBucket, s.FunctionsURL, c.Project, c.TrainingTopic, c.DeadLetterTopic, c.ModelName, s.RegistryURI(), c.ModelsTopic, data, c.MonitorTopic)
	if s.PubSubBackend == stack.PubSubPstest {
		fmt.Fprintln(w, "  (pstest speaks gRPC only: the Pub/Sub curl lines need the Cloud SDK emulator; Go clients work with both.)")
	}
	fmt.Fprintln(w, "\nLive log (jobs, gate decisions, promotions, uploads, dead letters):")
}
