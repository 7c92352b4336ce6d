// Command orchard-local runs Orchard on one machine with real emulators.
//
//	orchard-local up   [-model URI | -model-name NAME] [-pubsub auto|emulator|pstest] [-vertex] [-v]
//	orchard-local demo [-train submit|direct|none] [-data DIR] [-photos DIR] [-per-class N]
//	                   [-model DIR] [-set key=value ...] [-timeout D] [-train-timeout D] [-pubsub ...] [-v]
//
// up starts fake-gcs-server (with Pub/Sub notifications for the uploads
// bucket), the Pub/Sub emulator (or pstest), the eventarc bridge, the
// functions server (serving -model, or the registry's production alias of
// -model-name, reloaded when it moves) and, with -vertex, the Vertex AI
// stand-in that SubmitTraining submits to; prints the environment and commands that work against it; and
// runs until Ctrl-C (SIGINT) or SIGTERM, then stops everything it started.
//
// demo runs the whole flow (see package infra/local/demo) and exits 0 only
// if every uploaded photo got a prediction. Run it from the repository.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/orchard-mlops/orchard/infra/local/demo"
	"github.com/orchard-mlops/orchard/infra/local/stack"
	"github.com/orchard-mlops/orchard/shared/model"
)

const usage = `usage: orchard-local <command> [flags]

commands:
  up    start the local stack and wait for Ctrl-C
  demo  run the end-to-end demo (training, uploads, predictions)

run "orchard-local <command> -h" for the command's flags`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "up":
		err = cmdUp(ctx, args[1:], stdout, stderr)
	case "demo":
		err = cmdDemo(ctx, args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprintln(stdout, usage)
		return 0
	default:
		fmt.Fprintln(stderr, usage)
		err = fmt.Errorf("unknown command %q", args[0])
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 2
	default:
		fmt.Fprintf(stderr, "orchard-local: %v\n", err)
		return 1
	}
}

// common flags.
type common struct {
	pubsub  string
	project string
	binDir  string
	verbose bool
}

func (c *common) register(fs *flag.FlagSet) {
	fs.StringVar(&c.pubsub, "pubsub", stack.PubSubAuto, "Pub/Sub backend: auto (the Cloud SDK emulator if installed, else pstest), emulator or pstest")
	fs.StringVar(&c.project, "project", "orchard-local", "project ID used in the emulators")
	fs.StringVar(&c.binDir, "bin-dir", "", "where the functions server and trainer are built (default $XDG_CACHE_HOME/orchard-local/bin)")
	fs.BoolVar(&c.verbose, "v", false, "log every delivery and the functions server's output to stderr")
}

func (c *common) logger(stderr io.Writer) *slog.Logger {
	level := slog.LevelWarn
	if c.verbose {
		level = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
}

func cmdUp(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("up", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c common
	c.register(fs)
	fixedModel := fs.String("model", "", "a fixed MODEL_URI for the functions server (file:///dir, gs://bucket/prefix or a path); default: the registry's production alias of -model-name")
	modelName := fs.String("model-name", model.DefaultName, "registry model the functions serve and training requests should name")
	vertex := fs.Bool("vertex", false, "also run the Vertex AI stand-in, with the trainer built from ./trainer/cmd/trainer as image "+demo.TrainerImage)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("up: unexpected arguments %v", fs.Args())
	}
	log := c.logger(stderr)
	cfg := stack.Config{Project: c.project, PubSub: c.pubsub, BinDir: c.binDir, Logger: log}
	if c.verbose {
		cfg.FunctionsOutput = stderr
	}
	modelURI := *fixedModel
	if modelURI != "" && !strings.Contains(modelURI, "://") {
		abs, err := filepath.Abs(modelURI)
		if err != nil {
			return err
		}
		modelURI = "file://" + abs
	}
	cfg.ModelURI, cfg.ModelName = modelURI, *modelName
	var v *stack.Vertex
	if *vertex {
		root, err := stack.FindRepoRoot("")
		if err != nil {
			return err
		}
		binDir := c.binDir
		if binDir == "" {
			d, _ := os.UserCacheDir()
			binDir = filepath.Join(d, "orchard-local", "bin")
		}
		fmt.Fprintln(stdout, "building the trainer ...")
		bin, err := stack.GoBuild(ctx, root, binDir, "./trainer/cmd/trainer", "trainer", "GOEXPERIMENT=simd")
		if err != nil {
			return err
		}
		v = &stack.Vertex{Images: map[string][]string{demo.TrainerImage: {bin}}, TrainerImage: demo.TrainerImage, Logger: log}
		cfg.Components = append(cfg.Components, v)
	}
	fmt.Fprintln(stdout, "starting the local stack (the first run builds the functions server) ...")
	t0 := time.Now()
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
	printUp(stdout, s, v, time.Since(t0))
	select {
	case <-ctx.Done():
		return nil
	case err := <-s.Failed():
		return err
	}
}

func printUp(w io.Writer, s *stack.Stack, v *stack.Vertex, took time.Duration) {
	c := s.Config
	fmt.Fprintf(w, "\nOrchard local stack is up (%s). Ctrl-C stops everything.\n\n", took.Round(10*time.Millisecond))
	fmt.Fprintf(w, "  Cloud Storage (fake-gcs-server)  %s   buckets: %s (uploads, notifications on), %s, %s\n", s.GCSHost, c.UploadsBucket, c.ResultsBucket, c.ModelsBucket)
	fmt.Fprintf(w, "  Pub/Sub (%s)%s %s   topics: %s, %s, %s, %s, %s\n", s.PubSubBackend, strings.Repeat(" ", max(0, 23-len(s.PubSubBackend))), s.PubSubHost, c.NotificationsTopic, c.TrainingTopic, c.PredictionsTopic, c.ModelsTopic, c.DeadLetterTopic)
	serving := c.ModelURI
	if serving == "" {
		serving = "production alias of " + c.ModelName + " in " + s.RegistryURI() + " (503 until one is promoted)"
	}
	fmt.Fprintf(w, "  functions server                 %s   (pid %d) serving %s\n", s.FunctionsURL, s.FunctionsPID(), serving)
	if v != nil {
		fmt.Fprintf(w, "  Vertex AI stand-in (gRPC)        %s   image %s\n", v.Addr, demo.TrainerImage)
	} else {
		fmt.Fprintln(w, "  Vertex AI stand-in               not started (pass -vertex): SubmitTraining will refuse training requests")
	}
	fmt.Fprintf(w, "  eventarc bridge                  %s finalize → %s/PredictOnUpload\n", c.NotificationsTopic, s.FunctionsURL)
	fmt.Fprintf(w, "                                   %s → %s/SubmitTraining   (dead letters: %s)\n", c.TrainingTopic, s.FunctionsURL, c.DeadLetterTopic)
	fmt.Fprintln(w, "\nIn another shell:")
	for _, kv := range s.Env() {
		fmt.Fprintf(w, "  export %s=%s\n", kv[0], kv[1])
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
  gcloud pubsub topics publish %[5]s --message='{"dataset":"/abs/path/to/train","model":"%[7]s","overrides":["train.epochs=3"]}'
  # the same over the emulator's REST API
  curl -sS -X POST -H 'Content-Type: application/json' \
    "http://$PUBSUB_EMULATOR_HOST/v1/projects/%[4]s/topics/%[5]s:publish" \
    -d '{"messages":[{"data":"'$(printf '{"dataset":"/abs/path/to/train","model":"%[7]s"}' | base64 -w0)'"}]}'
  # the registry: versions, gate decisions, production alias
  go run ./infra/cmd/orchard versions -registry %[8]s -name %[7]s
  # model-published events (kept on the subscription of the same name)
  curl -sS -X POST -H 'Content-Type: application/json' \
    "http://$PUBSUB_EMULATOR_HOST/v1/projects/%[4]s/subscriptions/%[9]s:pull" -d '{"maxMessages":10}'
  # see what was dead-lettered
  curl -sS -X POST -H 'Content-Type: application/json' \
    "http://$PUBSUB_EMULATOR_HOST/v1/projects/%[4]s/subscriptions/%[6]s:pull" -d '{"maxMessages":10}'
  # Go programs: storage.NewClient and pubsub.NewClient pick the emulators up from the variables.
`, c.UploadsBucket, c.ResultsBucket, s.FunctionsURL, c.Project, c.TrainingTopic, c.DeadLetterTopic, c.ModelName, s.RegistryURI(), c.ModelsTopic)
	if s.PubSubBackend == stack.PubSubPstest {
		fmt.Fprintln(w, "  (pstest speaks gRPC only: the Pub/Sub curl lines need the Cloud SDK emulator; Go clients work with both.)")
	}
	fmt.Fprintln(w)
}

func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c common
	c.register(fs)
	defData, defPhotos := defaultDatasets()
	data := fs.String("data", defData, "folder-per-class training set; empty: generated by trainer gen-data")
	photos := fs.String("photos", defPhotos, "folder-per-class photos to upload (folder = expected label); empty: generated")
	perClass := fs.Int("per-class", 5, "photos uploaded per class (-1: all)")
	train := fs.String("train", demo.TrainSubmit, "training: submit (training topic → SubmitTraining → Vertex), direct (the demo submits the Vertex job itself) or none (-model)")
	model := fs.String("model", "", "with -train=none: model directory to register and serve")
	timeout := fs.Duration("timeout", 3*time.Minute, "how long to wait for all results")
	trainTimeout := fs.Duration("train-timeout", 15*time.Minute, "how long training may take")
	save := fs.String("save", "", "where to copy results, model, training report and log (default REPO/.cache/orchard-demo/TIMESTAMP; - for nowhere)")
	var sets multiFlag
	fs.Var(&sets, "set", "trainer config override, repeatable (default: "+strings.Join(demo.DefaultTrainerSets, " ")+")")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("demo: unexpected arguments %v", fs.Args())
	}
	o := demo.Options{
		Data: *data, Photos: *photos, PerClass: *perClass, Train: *train, ModelDir: *model,
		ResultTimeout: *timeout, TrainTimeout: *trainTimeout, Out: stdout, SaveDir: *save,
		Stack: stack.Config{Project: c.project, PubSub: c.pubsub, BinDir: c.binDir, Logger: c.logger(stderr)},
	}
	if len(sets) > 0 {
		o.TrainerSets = sets
	}
	if c.verbose {
		o.Stack.FunctionsOutput = stderr
	}
	rep, err := demo.Run(ctx, o)
	if err != nil {
		if ctx.Err() != nil {
			return errors.New("demo interrupted; everything it started was stopped")
		}
		if rep != nil && len(rep.Steps) > 0 && rep.Steps[len(rep.Steps)-1].Err != nil {
			return fmt.Errorf("demo failed at step %d (%s); see above", len(rep.Steps), rep.Steps[len(rep.Steps)-1].Name)
		}
		return err
	}
	if !rep.OK() {
		return errors.New("not every upload got a prediction")
	}
	return nil
}

// defaultDatasets are ../shared/datasets/fruits360-10/{train,photos}
// relative to the repository, when present.
func defaultDatasets() (train, photos string) {
	root, err := stack.FindRepoRoot("")
	if err != nil {
		return "", ""
	}
	base := filepath.Join(filepath.Dir(root), "shared", "datasets", "fruits360-10")
	if fi, err := os.Stat(filepath.Join(base, "train")); err == nil && fi.IsDir() {
		train = filepath.Join(base, "train")
	}
	if fi, err := os.Stat(filepath.Join(base, "photos")); err == nil && fi.IsDir() {
		photos = filepath.Join(base, "photos")
	}
	return train, photos
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, " ") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }
