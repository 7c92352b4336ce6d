// Package demo runs Orchard's end-to-end flow on the local stack, step by
// step with progress and timings: buckets and topics → training → quality
// gate and promotion → photo uploads → PredictOnUpload results → a table
// with accuracy.
//
// Training has three modes (Options.Train):
//
//   - TrainSubmit, the production path: publish a training request to the
//     training topic; the bridge delivers it to SubmitTraining, which creates
//     a Vertex AI job on the local stand-in; the trainer exports, verifies
//     and publishes the model to the registry, where the quality gate
//     promotes it to production.
//   - TrainDirect: the demo itself submits the Vertex AI custom job to the
//     local stand-in and publishes the trained model through the gate. Real
//     training, but not through Pub/Sub and SubmitTraining; the output says so.
//   - TrainNone: no training; Options.ModelDir is published and promoted.
//
// In every mode the functions server runs from the start, serving the
// registry's production alias; it picks up the promoted version by
// watching the alias, without a restart.
package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"cloud.google.com/go/aiplatform/apiv1/aiplatformpb"
	"cloud.google.com/go/pubsub/v2"

	"github.com/orchard-mlops/orchard/functions/monitor"
	"github.com/orchard-mlops/orchard/functions/submittraining"
	"github.com/orchard-mlops/orchard/infra/local/stack"
	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/shared/errlist"
	"github.com/orchard-mlops/orchard/shared/model"
	"github.com/orchard-mlops/orchard/shared/onnxrt"
	"github.com/orchard-mlops/orchard/shared/pubsubx"
	"github.com/orchard-mlops/orchard/shared/registry"
)

// Training modes.
const (
	TrainSubmit = "submit"
	TrainDirect = "direct"
	TrainNone   = "none"
)

// TrainerImage is the container image the demo's Vertex jobs name; the
// stand-in maps it to the locally built trainer.
const TrainerImage = "orchard-local/trainer:latest"

// Options configure Run.
type Options struct {
	// Data is a folder-per-class training set; empty: the trainer generates
	// one (trainer gen-data).
	Data string
	// Photos is a folder-per-class set of photos to upload (the folder name
	// is the expected label); empty: generated like Data, with another seed.
	Photos string
	// PerClass caps the photos uploaded per class (default 5; <0: all).
	PerClass int
	// Train is TrainSubmit (default), TrainDirect or TrainNone.
	Train string
	// ModelDir is the model published with TrainNone.
	ModelDir string
	// ModelName is the registry model trained and served (default
	// model.DefaultName; with TrainNone, ModelDir's name).
	ModelName string
	// TrainerSets are -set overrides for a demo-sized training run.
	TrainerSets []string
	// ResultTimeout bounds waiting for the results (default 3m);
	// TrainTimeout bounds training (default 15m).
	ResultTimeout, TrainTimeout time.Duration
	// Stack configures the stack (ports, buckets, Pub/Sub backend).
	Stack stack.Config
	// Out receives progress and the report (default os.Stdout).
	Out io.Writer
	// SaveDir receives copies of the results, the model with its training
	// report, and the training log, since the emulators keep everything in
	// memory (default REPO/.cache/orchard-demo/TIMESTAMP; "-" disables).
	SaveDir string
	// Drift is the corruptions (trainer eval names) of the second batch the
	// demo uploads for the monitor (default DefaultDrift; "none": no
	// second batch).
	Drift string
}

// DefaultTrainerSets make a demo-sized run: 32x32 input, a few epochs.
var DefaultTrainerSets = []string{"train.epochs=3", "train.early_stopping_patience=0", "report.worst_images=4"}

// Row is one upload's outcome.
type Row struct {
	File, Expected, Predicted string
	Score                     float64
	Error                     string
	Result                    string // where the result is stored
}

// StepTiming is one step's name and duration.
type StepTiming struct {
	Name string
	Took time.Duration
	Err  error
}

// Report is what Run produced.
type Report struct {
	Steps        []StepTiming
	Rows         []Row
	Correct      int
	Missing      []string
	ModelURI     string // the production version in the registry
	ModelVersion string
	ReportURI    string // the training report (in the version folder)
	JobLog       string // the Vertex job's log, when trained
	ResultsURI   string
	SavedTo      string // local copies (Options.SaveDir)
	// Monitor holds the monitor's reports on the clean and the drifted
	// batch, side by side.
	Monitor []monitor.Column
}

// OK reports whether every upload got a prediction.
func (r *Report) OK() bool {
	if len(r.Missing) > 0 || len(r.Rows) == 0 {
		return false
	}
	for _, row := range r.Rows {
		if row.Error != "" || row.Predicted == "" {
			return false
		}
	}
	return true
}

// Accuracy is the share of uploads predicted as their folder's label.
func (r *Report) Accuracy() float64 {
	if len(r.Rows) == 0 {
		return 0
	}
	return float64(r.Correct) / float64(len(r.Rows))
}

type runner struct {
	o   Options
	out io.Writer
	rep *Report
	cfg stack.Config // Options.Stack, completed by configure
	st  *stack.Stack
	tmp string
	// trainer is the trainer binary, built when needsTrainer; vertex is
	// the Vertex AI stand-in that runs it.
	trainer string
	vertex  *stack.Vertex
}

// step runs fn as a numbered step, printing progress and timing.
func (r *runner) step(name string, fn func() (string, error)) error {
	n := len(r.rep.Steps) + 1
	fmt.Fprintf(r.out, "==> [%d] %s ...\n", n, name)
	t0 := time.Now()
	note, err := fn()
	took := time.Since(t0)
	r.rep.Steps = append(r.rep.Steps, StepTiming{Name: name, Took: took, Err: err})
	if err != nil {
		fmt.Fprintf(r.out, "    FAILED after %s: %v\n", round(took), err)
		return fmt.Errorf("step %d (%s): %w", n, name, err)
	}
	if note != "" {
		note = ": " + note
	}
	fmt.Fprintf(r.out, "    done in %s%s\n", round(took), note)
	return nil
}

func round(d time.Duration) time.Duration {
	if d < time.Second {
		return d.Round(time.Millisecond)
	}
	return d.Round(10 * time.Millisecond)
}

// Run executes the demo. The report is returned even on error, with what
// was done; the stack is stopped before Run returns.
func Run(ctx context.Context, o Options) (*Report, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	r := &runner{o: o, out: o.Out, rep: &Report{}}
	tmp, err := os.MkdirTemp("", "orchard-demo-")
	if err != nil {
		return r.rep, err
	}
	r.tmp = tmp
	defer os.RemoveAll(tmp)
	err = r.run(ctx)
	if err != nil && r.st != nil && r.st.FunctionsPID() != 0 {
		fmt.Fprintf(r.out, "functions server log (last lines):\n%s\n", r.st.FunctionsLog(15))
	}
	if r.st != nil {
		fmt.Fprintln(r.out, "==> stopping the local stack")
		if cerr := r.st.Close(); cerr != nil {
			err = errlist.Join(err, cerr)
		}
	}
	r.print()
	return r.rep, err
}

// withDefaults fills in the defaults documented on Options and checks the
// training mode.
func (o Options) withDefaults() (Options, error) {
	if o.Out == nil {
		o.Out = os.Stdout
	}
	if o.Train == "" {
		o.Train = TrainSubmit
	}
	if o.PerClass == 0 {
		o.PerClass = 5
	}
	if o.Drift == "" {
		o.Drift = DefaultDrift
	}
	if o.ResultTimeout <= 0 {
		o.ResultTimeout = 3 * time.Minute
	}
	if o.TrainTimeout <= 0 {
		o.TrainTimeout = 15 * time.Minute
	}
	if o.TrainerSets == nil {
		o.TrainerSets = DefaultTrainerSets
	}
	if o.ModelName == "" {
		o.ModelName = model.DefaultName
	}
	switch o.Train {
	case TrainSubmit, TrainDirect:
	case TrainNone:
		if o.ModelDir == "" {
			return o, errors.New("demo: -train=none needs -model DIR")
		}
	default:
		return o, fmt.Errorf("demo: unknown training mode %q (submit, direct or none)", o.Train)
	}
	return o, nil
}

// run is the demo's flow, one step after the other; the results are
// tabulated and saved even when some are missing.
func (r *runner) run(ctx context.Context) error {
	if err := r.configure(ctx); err != nil {
		return err
	}
	if err := r.startStack(ctx); err != nil {
		return err
	}
	data, err := r.trainingData(ctx)
	if err != nil {
		return err
	}
	reg := registry.New(blob.NewGCS(r.st.Storage, r.st.Config.ModelsBucket, ""), registry.Options{})
	version, err := r.train(ctx, reg, data)
	if err != nil {
		return err
	}
	r.rep.ModelVersion = version
	r.rep.ModelURI = reg.VersionURI(r.cfg.ModelName, version)
	r.rep.ReportURI = r.rep.ModelURI + "report/index.html"
	if err := r.waitServing(ctx, version); err != nil {
		return err
	}
	cleanStart := time.Now()
	names, err := r.uploadPhotos(ctx)
	if err != nil {
		return err
	}
	werr := r.collectResults(ctx, names)
	if werr == nil && r.rep.OK() && r.o.Drift != "none" {
		werr = r.drift(ctx, names, cleanStart)
	}
	r.saveCopies(ctx)
	if werr != nil {
		return werr
	}
	if !r.rep.OK() {
		return errors.New("not every upload got a prediction")
	}
	return nil
}

// needsTrainer reports whether the demo trains or generates data, so needs
// the trainer binary (and, to train, the Vertex AI stand-in).
func (r *runner) needsTrainer() bool {
	return r.o.Train != TrainNone || r.o.Data == "" || r.o.Photos == ""
}

// configure completes the stack's configuration: the repository, the
// trainer with the Vertex AI stand-in when needed, and the model served.
func (r *runner) configure(ctx context.Context) error {
	r.cfg = r.o.Stack
	if r.cfg.RepoRoot == "" {
		root, err := stack.FindRepoRoot("")
		if err != nil {
			return err
		}
		r.cfg.RepoRoot = root
	}
	if r.cfg.BuildProgress == nil {
		r.cfg.BuildProgress = r.out
	}
	r.vertex = &stack.Vertex{}
	if r.needsTrainer() {
		if err := r.buildTrainer(ctx); err != nil {
			return err
		}
	}
	// The functions serve the registry's production alias of this model,
	// as deployed functions do; nothing restarts them when it moves.
	r.cfg.ModelName = r.o.ModelName
	if r.o.Train == TrainNone {
		m, err := model.Load(ctx, nil, r.o.ModelDir) // a local directory
		if err != nil {
			return fmt.Errorf("reading -model %s: %w", r.o.ModelDir, err)
		}
		r.cfg.ModelName = m.Metadata.Name
	}
	return nil
}

// buildTrainer builds the trainer binary and adds the Vertex AI stand-in,
// running it for TrainerImage, to the stack.
func (r *runner) buildTrainer(ctx context.Context) error {
	cfg := &r.cfg
	err := r.step("build the trainer (go build ./trainer/cmd/trainer, GOEXPERIMENT=simd)", func() (string, error) {
		binDir := cfg.BinDir
		if binDir == "" {
			binDir = stack.DefaultBinDir(cfg.RepoRoot)
		}
		var err error
		r.trainer, err = stack.GoBuild(ctx, r.out, cfg.RepoRoot, binDir, "./trainer/cmd/trainer", "trainer", "GOEXPERIMENT=simd")
		return r.trainer, err
	})
	if err != nil {
		return err
	}
	r.vertex.Images = map[string][]string{TrainerImage: {r.trainer}}
	r.vertex.TrainerImage = TrainerImage
	cfg.Components = append(cfg.Components, r.vertex)
	return nil
}

// startStack starts the local stack with the completed configuration.
func (r *runner) startStack(ctx context.Context) error {
	what := "start the local stack (emulators, buckets, topics, bridge, functions server)"
	if r.needsTrainer() {
		what = "start the local stack (emulators, buckets, topics, bridge, functions server, Vertex AI stand-in)"
	}
	if err := r.step(what, func() (string, error) {
		st, err := stack.Start(ctx, r.cfg)
		if err != nil {
			return "", err
		}
		r.st = st
		return fmt.Sprintf("GCS %s, Pub/Sub %s (%s), functions %s serving %s/%s", st.GCSHost, st.PubSubHost, st.PubSubBackend,
			st.FunctionsURL, st.RegistryURI(), r.cfg.ModelName), nil
	}); err != nil {
		return err
	}
	r.rep.ResultsURI = "gs://" + r.st.Config.ResultsBucket + "/"
	return nil
}

// trainingData is Options.Data, or a training set the trainer generates.
func (r *runner) trainingData(ctx context.Context) (string, error) {
	if r.o.Data != "" {
		return r.o.Data, nil
	}
	data := filepath.Join(r.tmp, "train")
	return data, r.step("generate a training set (trainer gen-data)", func() (string, error) {
		return data, runCmd(ctx, r.trainer, "gen-data", "-out", data, "-per-class", "60", "-seed", "1")
	})
}

// train puts a model into production in the registry by the training mode
// and returns its version.
func (r *runner) train(ctx context.Context, reg *registry.Registry, data string) (string, error) {
	switch r.o.Train {
	case TrainSubmit:
		return r.submitTraining(ctx, r.vertex, reg, data)
	case TrainDirect:
		var modelDir string
		if err := r.step("train on the local Vertex AI stand-in (job submitted by the demo, not through SubmitTraining)", func() (string, error) {
			var err error
			modelDir, err = r.trainDirect(ctx, r.vertex, data)
			return modelDir, err
		}); err != nil {
			return "", err
		}
		return r.publishStep(ctx, reg, "register the model and run the quality gate", modelDir, "demo training run")
	default: // TrainNone (withDefaults refuses other modes)
		return r.publishStep(ctx, reg, "register "+r.o.ModelDir+" (training skipped: -train=none) and run the quality gate",
			r.o.ModelDir, "provided model")
	}
}

// publishStep runs publish as the step called name and returns the
// version published.
func (r *runner) publishStep(ctx context.Context, reg *registry.Registry, name, dir, reason string) (string, error) {
	var version string
	err := r.step(name, func() (string, error) {
		pub, err := r.publish(ctx, reg, dir, reason)
		if pub != nil {
			version = pub.Version
		}
		return gateNote(pub), err
	})
	return version, err
}

// waitServing waits until the running functions serve version.
func (r *runner) waitServing(ctx context.Context, version string) error {
	url := r.st.FunctionsURL + "/Predict"
	return r.step("wait for the functions to serve "+r.cfg.ModelName+" "+version+" (alias watch, no restart)", func() (string, error) {
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		return url, WaitServing(wctx, url, version)
	})
}

// uploadPhotos uploads Options.Photos, or photos the trainer generates, to
// the uploads bucket and returns their object names.
func (r *runner) uploadPhotos(ctx context.Context) ([]string, error) {
	photos := r.o.Photos
	if photos == "" {
		photos = filepath.Join(r.tmp, "photos")
		r.o.Photos = photos // the drifted batch reads them again
		if err := r.step("generate sample photos (trainer gen-data, another seed)", func() (string, error) {
			return photos, runCmd(ctx, r.trainer, "gen-data", "-out", photos, "-per-class", "3", "-seed", "7")
		}); err != nil {
			return nil, err
		}
	}
	var names []string
	err := r.step("upload sample photos to gs://"+r.st.Config.UploadsBucket, func() (string, error) {
		var err error
		names, err = r.upload(ctx, photos)
		return fmt.Sprintf("%d photos", len(names)), err
	})
	return names, err
}

// collectResults waits for the result of every upload in names, printing
// each as it comes, and puts what came into the report's rows (the rest
// into Missing), also when waiting fails.
func (r *runner) collectResults(ctx context.Context, names []string) error {
	st := r.st
	var res map[string]stack.Result
	err := r.step("wait for every result in gs://"+st.Config.ResultsBucket, func() (string, error) {
		wctx, cancel := context.WithTimeout(ctx, r.o.ResultTimeout)
		defer cancel()
		n := 0
		var err error
		res, err = st.WaitResults(wctx, names, func(x stack.Result) {
			n++
			fmt.Fprintf(r.out, "    [%d/%d] %s → %s %.3f%s\n", n, len(names), x.Name, x.Label, x.Score, errNote(x.Error))
		})
		return fmt.Sprintf("%d of %d", len(res), len(names)), err
	})
	for _, n := range names {
		x, ok := res[n]
		if !ok {
			r.rep.Missing = append(r.rep.Missing, n)
			continue
		}
		row := Row{File: n, Expected: expected(n), Predicted: x.Label, Score: x.Score, Error: x.Error, Result: x.Object}
		if row.Predicted == row.Expected {
			r.rep.Correct++
		}
		r.rep.Rows = append(r.rep.Rows, row)
	}
	return err
}

// saveCopies saves the results, the model and the training log under
// Options.SaveDir unless it is "-". It runs even when results are missing
// (that is when they matter); a failure shows as a failed step only.
func (r *runner) saveCopies(ctx context.Context) {
	if r.o.SaveDir == "-" {
		return
	}
	dir := r.o.SaveDir
	if dir == "" {
		dir = filepath.Join(r.cfg.RepoRoot, ".cache", "orchard-demo", time.Now().Format("20060102-150405"))
	}
	if err := r.step("save results, model and training report to "+dir, func() (string, error) {
		return "", r.save(ctx, dir, r.rep.ModelURI)
	}); err == nil {
		r.rep.SavedTo = dir
	}
}

// open returns a store for a model directory: gs:// URIs through the
// stack's storage client (this process has no STORAGE_EMULATOR_HOST), local
// paths and file:// directly.
func (r *runner) open(ctx context.Context, uri string) (blob.Store, error) {
	return blob.NewOpener(r.st.Storage).Open(ctx, uri)
}

func gateNote(p *registry.PublishResult) string {
	if p == nil || p.Decision == nil {
		return ""
	}
	verdict := "rejected"
	if p.Decision.Accepted {
		verdict = "accepted, production → " + p.Version
	}
	return fmt.Sprintf("%s %s: gate %s (%s)", p.Name, p.Version, verdict, p.Decision.Reason)
}

func errNote(e string) string {
	if e == "" {
		return ""
	}
	return " ERROR " + e
}

// expected is the label an upload should get: its parent folder's name.
func expected(name string) string {
	dir := filepath.Dir(name)
	return filepath.Base(dir)
}

// submitTraining is the production path: a training request on the
// training topic, delivered by the bridge to SubmitTraining, which creates a
// Vertex AI job on the stand-in; the trainer publishes its model to the
// registry, where the quality gate decides on production. It returns the
// production version.
func (r *runner) submitTraining(ctx context.Context, v *stack.Vertex, reg *registry.Registry, data string) (string, error) {
	st := r.st
	name := st.Config.ModelName
	var msgID string
	if err := r.step("publish a training request to "+st.Config.TrainingTopic, func() (string, error) {
		body, err := json.Marshal(submittraining.Request{
			Dataset: data, Model: name, Overrides: r.o.TrainerSets,
			Requester: "orchard-local-demo", Notes: "make demo",
		})
		if err != nil {
			return "", err
		}
		p := pubsubx.New(st.PubSub, st.Topic(st.Config.TrainingTopic))
		defer p.Close()
		msgID, err = p.Send(ctx, &pubsub.Message{Data: body})
		return "message " + msgID + ": " + string(body), err
	}); err != nil {
		return "", err
	}
	var job *aiplatformpb.CustomJob
	if err := r.step("Eventarc bridge → SubmitTraining → Vertex AI custom job", func() (string, error) {
		var err error
		job, err = r.findJob(ctx, v, name, msgID)
		if err != nil {
			return "", err
		}
		return job.GetName() + " (" + job.GetDisplayName() + ")", nil
	}); err != nil {
		return "", err
	}
	if err := r.step("train: the stand-in runs the trainer, which exports, verifies and publishes the model", func() (string, error) {
		return "", r.waitJob(ctx, v, job.GetName())
	}); err != nil {
		return "", err
	}
	var version string
	err := r.step("quality gate and production alias in "+reg.URI(), func() (string, error) {
		a, err := reg.Alias(ctx, name, registry.Production)
		if err != nil {
			return "", fmt.Errorf("the job succeeded but %s has no production version: %w", name, err)
		}
		version = a.Version
		d, err := reg.Decision(ctx, name, a.Version)
		if err != nil {
			return "production → " + a.Version, nil
		}
		if !d.Accepted {
			return "", fmt.Errorf("the quality gate rejected %s: %s", a.Version, d.Reason)
		}
		return fmt.Sprintf("%s %s: gate accepted (%s), production → %s", name, a.Version, d.Reason, a.Version), nil
	})
	if err != nil {
		return "", err
	}
	err = r.step("model-published event on "+st.Config.ModelsTopic, func() (string, error) {
		return r.modelEvent(ctx, name, version)
	})
	return version, err
}

// findJob waits up to 2 minutes for the custom job SubmitTraining creates
// for the training request msgID.
func (r *runner) findJob(ctx context.Context, v *stack.Vertex, name, msgID string) (*aiplatformpb.CustomJob, error) {
	st := r.st
	_, label := submittraining.JobNames(name, msgID)
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for {
		var job *aiplatformpb.CustomJob
		for _, j := range v.Server.Jobs() {
			if j.GetLabels()[submittraining.LabelMessageID] == label {
				job = j
			}
		}
		if job != nil {
			return job, nil
		}
		select {
		case <-wctx.Done():
			return nil, fmt.Errorf("no job for message %s after 2m (bridge: %+v)\nfunctions server log:\n%s",
				msgID, st.Bridge.Stats()[stack.RouteTraining], st.FunctionsLog(15))
		case err := <-st.Failed():
			return nil, err
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// modelEvent waits for the trainer's model-published event for version on
// the models topic's subscription.
func (r *runner) modelEvent(ctx context.Context, name, version string) (string, error) {
	st := r.st
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var got *registry.Event
	err := st.PubSub.Subscriber(st.Subscription(st.Config.ModelsTopic)).Receive(ctx, func(_ context.Context, m *pubsub.Message) {
		m.Ack()
		var e registry.Event
		if json.Unmarshal(m.Data, &e) == nil && e.Type == registry.EventPublished && e.Model == name && e.Version == version {
			got = &e
			cancel()
		}
	})
	if got == nil {
		return "", fmt.Errorf("no %s event for %s %s within 30s (receive: %v)", registry.EventPublished, name, version, err)
	}
	return fmt.Sprintf("%s %s %s promoted=%v", got.Type, got.Model, got.Version, got.Promoted), nil
}

// publish registers a model directory and promotes it through the gate.
func (r *runner) publish(ctx context.Context, reg *registry.Registry, dir, reason string) (*registry.PublishResult, error) {
	src, err := r.open(ctx, dir)
	if err != nil {
		return nil, err
	}
	pub, err := registry.PublishFrom(ctx, reg, src, registry.PublishOptions{Promote: true, By: "orchard-local demo", Reason: reason, Runtime: onnxrt.Runtime{}})
	if err != nil {
		return pub, err
	}
	if !pub.Promoted() {
		return pub, fmt.Errorf("the quality gate rejected %s %s: %s", pub.Name, pub.Version, pub.Decision.Reason)
	}
	return pub, nil
}

// WaitServing polls GET url (a Predict endpoint) until the functions report
// version.
func WaitServing(ctx context.Context, url, version string) error {
	c := &http.Client{Timeout: 5 * time.Second}
	last := "no answer"
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := c.Do(req); err == nil {
			var info struct {
				Model struct{ Version string } `json:"model"`
			}
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			resp.Body.Close()
			if json.Unmarshal(b, &info) == nil && info.Model.Version == version {
				return nil
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(b)))
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s never served version %s (last answer: %.300s)", url, version, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// trainDirect submits a custom job to the Vertex stand-in and waits for it.
func (r *runner) trainDirect(ctx context.Context, v *stack.Vertex, data string) (string, error) {
	st := r.st
	base := "gs://" + st.Config.ModelsBucket + "/training/" + time.Now().UTC().Format("20060102-150405")
	args := []string{"train", "-data", data, "-set", "name=" + st.Config.ModelName}
	for _, s := range r.o.TrainerSets {
		args = append(args, "-set", s)
	}
	job, err := v.Server.CreateCustomJob(ctx, &aiplatformpb.CreateCustomJobRequest{
		Parent: "projects/" + st.Config.Project + "/locations/" + stack.VertexRegion,
		CustomJob: &aiplatformpb.CustomJob{
			DisplayName: "orchard-demo-training",
			Labels:      map[string]string{"orchard": "demo"},
			JobSpec: &aiplatformpb.CustomJobSpec{
				WorkerPoolSpecs: []*aiplatformpb.WorkerPoolSpec{{
					ReplicaCount: 1,
					Task:         &aiplatformpb.WorkerPoolSpec_ContainerSpec{ContainerSpec: &aiplatformpb.ContainerSpec{ImageUri: TrainerImage, Args: args}},
				}},
				BaseOutputDirectory: &aiplatformpb.GcsDestination{OutputUriPrefix: base},
			},
		},
	})
	if err != nil {
		return "", err
	}
	if err := r.waitJob(ctx, v, job.GetName()); err != nil {
		return "", err
	}
	return base + "/model/", nil
}

// waitJob follows a job's log until it ends; an error unless it succeeded.
func (r *runner) waitJob(ctx context.Context, v *stack.Vertex, name string) error {
	r.rep.JobLog = v.Server.LogPath(name)
	fmt.Fprintf(r.out, "    job %s (log %s)\n", name, r.rep.JobLog)
	wctx, cancel := context.WithTimeout(ctx, r.o.TrainTimeout)
	defer cancel()
	stop := r.tailLog(wctx, r.rep.JobLog)
	done, err := v.Server.Wait(wctx, name)
	stop()
	if err != nil {
		v.Server.CancelCustomJob(context.Background(), &aiplatformpb.CancelCustomJobRequest{Name: name})
		return fmt.Errorf("waiting for job %s: %w", name, err)
	}
	if done.GetState() != aiplatformpb.JobState_JOB_STATE_SUCCEEDED {
		return fmt.Errorf("job %s ended %s: %s (log %s)", name, done.GetState(), done.GetError().GetMessage(), r.rep.JobLog)
	}
	return nil
}

// quietTick is how long the job's log may stay quiet before tailLog says
// the job is still running (the trainer logs once per epoch when not on a
// terminal; an epoch can take half a minute on 2 cores).
const quietTick = 10 * time.Second

// tailLog prints lines appended to path until stop is called, and a
// "still running" line whenever it has been quiet for quietTick.
func (r *runner) tailLog(ctx context.Context, path string) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		var off int64
		var partial string
		t0, last := time.Now(), time.Now()
		for {
			if time.Since(last) >= quietTick {
				fmt.Fprintf(r.out, "    ... job running, %s so far\n", time.Since(t0).Round(time.Second))
				last = time.Now()
			}
			if f, err := os.Open(path); err == nil {
				f.Seek(off, io.SeekStart)
				b, _ := io.ReadAll(f)
				f.Close()
				off += int64(len(b))
				s := partial + string(b)
				lines := strings.Split(strings.ReplaceAll(s, "\r", "\n"), "\n")
				partial = lines[len(lines)-1]
				for _, l := range lines[:len(lines)-1] {
					if l = CompactLogLine(strings.TrimSpace(l)); l != "" {
						fmt.Fprintf(r.out, "    | %s\n", l)
						last = time.Now()
					}
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(500 * time.Millisecond):
			}
		}
	}()
	return func() { cancel(); <-done }
}

// save copies the results bucket, the model version folder and the job
// log into dir.
func (r *runner) save(ctx context.Context, dir, modelURI string) error {
	copyAll := func(src blob.Store, to string) error {
		for a, err := range src.List(ctx, blob.ListOptions{}) {
			if err != nil {
				return err
			}
			data, _, err := src.Read(ctx, a.Key, 64<<20)
			if err != nil {
				return err
			}
			p := filepath.Join(to, filepath.FromSlash(a.Key))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(p, data, 0o644); err != nil {
				return err
			}
		}
		return nil
	}
	if err := copyAll(blob.NewGCS(r.st.Storage, r.st.Config.ResultsBucket, ""), filepath.Join(dir, "results")); err != nil {
		return fmt.Errorf("saving results: %w", err)
	}
	if modelURI != "" {
		src, err := r.open(ctx, modelURI)
		if err != nil {
			return err
		}
		if err := copyAll(src, filepath.Join(dir, "model")); err != nil {
			return fmt.Errorf("saving the model: %w", err)
		}
	}
	if r.rep.JobLog != "" {
		if b, err := os.ReadFile(r.rep.JobLog); err == nil {
			if err := os.WriteFile(filepath.Join(dir, "training.log"), b, 0o644); err != nil {
				return err
			}
		}
	}
	return nil
}

// CompactLogLine shortens a JSON log line to its message and scalar fields
// (other lines are returned as they are), for progress people read.
func CompactLogLine(l string) string {
	if !strings.HasPrefix(l, "{") {
		return l
	}
	var m map[string]any
	if json.Unmarshal([]byte(l), &m) != nil {
		return l
	}
	msg, _ := m["message"].(string)
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString(msg)
	for _, k := range keys {
		switch k {
		case "message", "time", "severity", "digest", "logging.googleapis.com/sourceLocation":
			continue
		}
		switch v := m[k].(type) {
		case string, bool:
			fmt.Fprintf(&b, " %s=%v", k, v)
		case float64:
			fmt.Fprintf(&b, " %s=%s", k, roundFloat(v))
		}
	}
	return b.String()
}

// roundFloat prints whole numbers as such and others to 4 significant
// digits: log values are read by people here.
func roundFloat(v float64) string {
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'g', 4, 64)
}

// upload writes up to PerClass images of every class folder of dir into
// the uploads bucket, as CLASS/FILE.
func (r *runner) upload(ctx context.Context, dir string) ([]string, error) {
	perClass := map[string]int{}
	var names []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		ct := contentType(p)
		if ct == "" {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		class := expected(rel)
		if !strings.Contains(rel, "/") {
			return nil // not in a class folder: no expected label
		}
		if r.o.PerClass > 0 && perClass[class] >= r.o.PerClass {
			return nil
		}
		perClass[class]++
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if err := r.st.Upload(ctx, rel, ct, data); err != nil {
			return err
		}
		names = append(names, rel)
		return nil
	})
	if err == nil && len(names) == 0 {
		err = fmt.Errorf("no images in class folders under %s", dir)
	}
	return names, err
}

func contentType(p string) string {
	switch strings.ToLower(filepath.Ext(p)) {
	case ".jpg", ".jpeg":
		return "image/jpeg"
	case ".png":
		return "image/png"
	case ".webp":
		return "image/webp"
	}
	return ""
}

func runCmd(ctx context.Context, argv ...string) error {
	return stack.RunCommand(ctx, argv...)
}

// print writes the table, accuracy, timings and locations.
func (r *runner) print() {
	rep, w := r.rep, r.out
	if len(rep.Rows) > 0 || len(rep.Missing) > 0 {
		fmt.Fprintln(w)
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "FILE\tPREDICTED\tEXPECTED\tSCORE\t")
		rows := append([]Row(nil), rep.Rows...)
		sort.Slice(rows, func(i, j int) bool { return rows[i].File < rows[j].File })
		for _, row := range rows {
			mark := ""
			if row.Predicted != row.Expected {
				mark = "✗"
			}
			pred := row.Predicted
			if row.Error != "" {
				pred = "ERROR: " + row.Error
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%.3f\t%s\n", row.File, pred, row.Expected, row.Score, mark)
		}
		for _, m := range rep.Missing {
			fmt.Fprintf(tw, "%s\t(no result)\t%s\t\t✗\n", m, expected(m))
		}
		tw.Flush()
		total := len(rep.Rows) + len(rep.Missing)
		fmt.Fprintf(w, "\naccuracy: %d/%d = %.1f%% (results for %d of %d uploads)\n",
			rep.Correct, total, 100*float64(rep.Correct)/float64(max(total, 1)), len(rep.Rows), total)
	}
	if len(rep.Monitor) > 0 {
		fmt.Fprintln(w, "\nthe monitor, both windows side by side (! marks a threshold crossed; each one is a WARNING line in the functions' log):")
		monitor.WriteTable(w, rep.Monitor)
	}
	fmt.Fprintln(w, "\nstep timings:")
	var total time.Duration
	for i, s := range rep.Steps {
		status := "ok"
		if s.Err != nil {
			status = "FAILED"
		}
		fmt.Fprintf(w, "  %2d. %-100s %10s  %s\n", i+1, s.Name, round(s.Took), status)
		total += s.Took
	}
	fmt.Fprintf(w, "      %-100s %10s\n", "total", round(total))
	if rep.ModelURI != "" || len(rep.Rows) > 0 {
		fmt.Fprintln(w, "\nwhere things are (in the emulators, gone when the demo exits):")
		if rep.ResultsURI != "" {
			fmt.Fprintf(w, "  results:         %s<upload name>.json\n", rep.ResultsURI)
		}
		if rep.ModelURI != "" {
			fmt.Fprintf(w, "  model:           %s (version %s, alias production)\n", rep.ModelURI, rep.ModelVersion)
			fmt.Fprintf(w, "  training report: %s (report files beside model.json)\n", rep.ReportURI)
		}
		if _, err := os.Stat(rep.JobLog); rep.JobLog != "" && err == nil {
			fmt.Fprintf(w, "  training log:    %s\n", rep.JobLog)
		}
	}
	if rep.SavedTo != "" {
		fmt.Fprintf(w, "\nsaved copies:      %s/{results,model,training.log} (model/ holds model.json, model.onnx and the training report)\n", rep.SavedTo)
	}
}
