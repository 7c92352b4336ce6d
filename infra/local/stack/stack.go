// Package stack runs Orchard on one machine with real emulators, wired as
// on Google Cloud:
//
//	fake-gcs-server ──(GCS Pub/Sub notifications, uploads bucket)──► Pub/Sub emulator
//	Pub/Sub emulator ──(pull)──► eventarc bridge ──(binary CloudEvents)──► functions server
//	    notifications topic  → /PredictOnUpload  (google.cloud.storage.object.v1.finalized)
//	    training topic       → /SubmitTraining   (google.cloud.pubsub.topic.v1.messagePublished)
//	functions server ──► results bucket (fake-gcs-server)
//
// plus pluggable Components (the Vertex AI stand-in). The Pub/Sub emulator
// is the Cloud SDK's when installed, else the in-process pstest server; the
// bridge pulls, so both work. The functions server is the real
// ./functions/cmd/functions, built with `go build` and run as a subprocess
// in its own process group. Everything listens on loopback and is stopped
// by Close, child process groups included.
package stack

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/pstest"
	"cloud.google.com/go/storage"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/orchard-mlops/orchard/infra/local/eventarc"
	"github.com/orchard-mlops/orchard/shared/emulators"
	"github.com/orchard-mlops/orchard/shared/errlist"
	"github.com/orchard-mlops/orchard/shared/events"
	"github.com/orchard-mlops/orchard/shared/gcp"
	"github.com/orchard-mlops/orchard/shared/model"
	"github.com/orchard-mlops/orchard/shared/proc"
)

// Module is the repository's module path, used to find its root.
const Module = "github.com/orchard-mlops/orchard"

// logLimit bounds the output kept of a child process (the functions
// server, a build): enough for the lines errors and FunctionsLog quote.
const logLimit = 256 << 10

// Pub/Sub backends.
const (
	PubSubAuto     = "auto"     // the emulator if installed, else pstest
	PubSubEmulator = "emulator" // the Cloud SDK emulator, or fail
	PubSubPstest   = "pstest"   // the in-process fake
)

// Config configures a Stack. Zero values take the defaults in comments.
type Config struct {
	Project            string // orchard-local
	UploadsBucket      string // orchard-uploads
	ResultsBucket      string // orchard-results
	ModelsBucket       string // orchard-models (the registry)
	NotificationsTopic string // gcs-uploads (fake-gcs-server publishes here)
	TrainingTopic      string // training-requests
	DeadLetterTopic    string // eventarc-dead-letter
	ModelsTopic        string // model-published (the registry's events; subscription of the same name keeps them)
	PredictionsTopic   string // predictions (PredictOnUpload publishes each result; subscription of the same name keeps them)
	MonitorTopic       string // monitor-tick (→ the Monitor function)
	// MonitorEvery, if set, publishes a monitor tick at this interval, as
	// the Cloud Scheduler job does in the cloud.
	MonitorEvery time.Duration
	PubSub       string // PubSubAuto

	// RepoRoot holds go.mod (default: found upwards from the working
	// directory). BinDir receives built binaries (default
	// DefaultBinDir(RepoRoot)).
	RepoRoot, BinDir string

	// ModelURI, if set, makes the functions server serve this fixed model
	// (MODEL_URI). Otherwise it serves the production alias of ModelName
	// from the registry in ModelsBucket and follows it when it moves, as
	// the deployed functions do (REGISTRY_URI, MODEL_NAME).
	ModelURI string
	// ModelName is the registry model served without ModelURI (default
	// model.DefaultName).
	ModelName string
	// BuildProgress, if set, receives a line every 10 s while the
	// functions server is compiled (minutes on a cold Go build cache).
	BuildProgress io.Writer
	// FunctionsEnv is added to the functions server's environment last.
	FunctionsEnv []string
	// FunctionsOutput receives the functions server's log (default: kept
	// in memory; see FunctionsLog).
	FunctionsOutput io.Writer

	// Bridge tunes the eventarc bridge (retries, backoff, concurrency).
	Bridge eventarc.Options

	// Components start after the emulators and before the functions
	// server, and stop in reverse order (e.g. the Vertex AI stand-in).
	Components []Component

	Logger *slog.Logger
}

// Component is a pluggable part of the stack.
type Component interface {
	Name() string
	// Start may add functions-server environment with s.AddFunctionsEnv.
	Start(ctx context.Context, s *Stack) error
	Close() error
}

func (c *Config) defaults() error {
	def := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	def(&c.Project, "orchard-local")
	def(&c.UploadsBucket, "orchard-uploads")
	def(&c.ResultsBucket, "orchard-results")
	def(&c.ModelsBucket, "orchard-models")
	def(&c.NotificationsTopic, "gcs-uploads")
	def(&c.TrainingTopic, "training-requests")
	def(&c.DeadLetterTopic, "eventarc-dead-letter")
	def(&c.ModelsTopic, "model-published")
	def(&c.PredictionsTopic, "predictions")
	def(&c.MonitorTopic, "monitor-tick")
	def(&c.PubSub, PubSubAuto)
	def(&c.ModelName, model.DefaultName)
	if c.RepoRoot == "" {
		root, err := FindRepoRoot("")
		if err != nil {
			return err
		}
		c.RepoRoot = root
	}
	if c.BinDir == "" {
		c.BinDir = DefaultBinDir(c.RepoRoot)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Stack is a running local system.
type Stack struct {
	Config Config

	// GCSHost and PubSubHost are the emulators' host:port (the values of
	// STORAGE_EMULATOR_HOST and PUBSUB_EMULATOR_HOST).
	GCSHost, PubSubHost string
	// PubSubBackend is PubSubEmulator or PubSubPstest.
	PubSubBackend string
	// FunctionsURL is http://127.0.0.1:PORT (fixed for the stack's life,
	// across StartFunctions calls).
	FunctionsURL string

	Storage *storage.Client
	PubSub  *pubsub.Client
	Bridge  *eventarc.Bridge

	log        *slog.Logger
	funcPort   int
	funcEnv    []string
	funcBin    string
	funcOut    *proc.Tail
	bridgeStop context.CancelFunc
	bridgeDone chan error

	mu        sync.Mutex
	functions *proc.Process
	failed    chan error // first component failure
	closers   []closer   // LIFO
	closeOnce sync.Once
	closeErr  error
}

type closer struct {
	name string
	fn   func() error
}

// Start brings the stack up. On error everything already started is
// stopped again. ctx bounds the startup only.
func Start(ctx context.Context, cfg Config) (s *Stack, err error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	s = &Stack{Config: cfg, log: cfg.Logger, failed: make(chan error, 1), funcOut: proc.NewTail(logLimit)}
	defer func() {
		if err != nil {
			s.Close()
			s = nil
		}
	}()
	if err := s.startPubSub(ctx); err != nil {
		return s, err
	}
	for _, t := range []string{cfg.NotificationsTopic, cfg.TrainingTopic, cfg.DeadLetterTopic, cfg.ModelsTopic, cfg.PredictionsTopic, cfg.MonitorTopic} {
		if err := eventarc.EnsureTopic(ctx, s.PubSub, s.Topic(t)); err != nil {
			return s, err
		}
	}
	// Subscriptions on the dead-letter, model-published and predictions
	// topics, so that their messages are kept and can be inspected (gcloud
	// pubsub subscriptions pull).
	for _, t := range []string{cfg.DeadLetterTopic, cfg.ModelsTopic, cfg.PredictionsTopic} {
		if err := eventarc.EnsureSubscription(ctx, s.PubSub, s.Subscription(t), s.Topic(t), eventarc.SubscriptionOptions{}); err != nil {
			return s, err
		}
	}
	g, err := emulators.StartGCSWithOptions(ctx, emulators.GCSOptions{Notify: &emulators.GCSNotify{
		PubSubHost: s.PubSubHost, Project: cfg.Project, Topic: cfg.NotificationsTopic,
		Events: []string{"finalize"}, Bucket: cfg.UploadsBucket,
	}})
	if err != nil {
		return s, err
	}
	s.GCSHost = g.Host
	s.onClose("fake-gcs-server", g.Close)
	if s.Storage, err = g.Client(context.WithoutCancel(ctx)); err != nil {
		return s, err
	}
	s.onClose("storage client", s.Storage.Close)
	for _, b := range []string{cfg.UploadsBucket, cfg.ResultsBucket, cfg.ModelsBucket} {
		if err := s.Storage.Bucket(b).Create(ctx, cfg.Project, nil); err != nil {
			return s, fmt.Errorf("create bucket %s: %w", b, err)
		}
	}
	s.log.Info("stack: emulators up", "gcs", s.GCSHost, "pubsub", s.PubSubHost, "pubsub_backend", s.PubSubBackend)

	if s.funcPort, err = proc.FreePort(); err != nil {
		return s, err
	}
	s.FunctionsURL = "http://127.0.0.1:" + strconv.Itoa(s.funcPort)
	s.funcEnv = []string{
		"STORAGE_EMULATOR_HOST=" + s.GCSHost,
		"PUBSUB_EMULATOR_HOST=" + s.PubSubHost,
		"GOOGLE_CLOUD_PROJECT=" + cfg.Project,
		"RESULTS_BUCKET=" + cfg.ResultsBucket,
		"UPLOAD_BUCKET=" + cfg.UploadsBucket,
		"PREDICTIONS_TOPIC=" + s.Topic(cfg.PredictionsTopic),
		"HOST=127.0.0.1",
		"PORT=" + strconv.Itoa(s.funcPort),
		"SHUTDOWN_TIMEOUT_SECONDS=3",
		// SubmitTraining publishes trained models here; without MODEL_URI
		// Predict serves MODEL_NAME's production alias from here too.
		"REGISTRY_URI=" + s.RegistryURI(),
		"MODEL_NAME=" + cfg.ModelName,
		// Alias checks are one metadata read each; locally they can be
		// frequent so that a promotion shows at once.
		"MODEL_POLL_SECONDS=1",
		// SubmitTraining hands it to jobs: trainer -publish announces new
		// versions and promotions there.
		"MODEL_PUBLISHED_TOPIC=" + s.Topic(cfg.ModelsTopic),
	}
	for _, c := range cfg.Components {
		if err := c.Start(ctx, s); err != nil {
			return s, fmt.Errorf("start %s: %w", c.Name(), err)
		}
		s.onClose(c.Name(), c.Close)
	}
	s.funcEnv = append(s.funcEnv, cfg.FunctionsEnv...)

	// Closed in reverse: the bridge stops delivering before the server goes.
	s.onClose("functions server", s.stopFunctions)
	if err := s.startBridge(ctx); err != nil {
		return s, err
	}
	if err := s.StartFunctions(ctx, cfg.ModelURI); err != nil {
		return s, err
	}
	s.startMonitorTimer()
	return s, nil
}

// DefaultBinDir is where the local stack's binaries are built: inside the
// clone (git-ignored), so two clones running at once never overwrite each
// other's binaries. `make build` fills the same folder.
func DefaultBinDir(repoRoot string) string { return filepath.Join(repoRoot, ".cache", "bin") }

// RegistryURI is the model registry's root: the models bucket.
func (s *Stack) RegistryURI() string { return "gs://" + s.Config.ModelsBucket }

func (s *Stack) onClose(name string, fn func() error) {
	s.mu.Lock()
	s.closers = append(s.closers, closer{name, fn})
	s.mu.Unlock()
}

// fail records the first failure of a running component.
func (s *Stack) fail(err error) {
	select {
	case s.failed <- err:
	default:
	}
}

// Failed delivers the first failure of a running component (the functions
// server exiting, the bridge stopping with an error).
func (s *Stack) Failed() <-chan error { return s.failed }

// Topic returns the full name of a topic ID in the stack's project.
// An invalid ID is returned as it is, for Pub/Sub's own error to name.
func (s *Stack) Topic(id string) string {
	name, err := gcp.TopicName(s.Config.Project, id)
	if err != nil {
		return id
	}
	return name
}

// Subscription returns the full name of a subscription ID.
func (s *Stack) Subscription(id string) string {
	return "projects/" + s.Config.Project + "/subscriptions/" + id
}

// AddFunctionsEnv adds KEY=VALUE settings for the functions server; for
// Components, during Start.
func (s *Stack) AddFunctionsEnv(kv ...string) { s.funcEnv = append(s.funcEnv, kv...) }

func (s *Stack) startPubSub(ctx context.Context) error {
	cfg := s.Config
	switch cfg.PubSub {
	case PubSubAuto, PubSubEmulator:
		ps, err := emulators.StartPubSub(ctx, cfg.Project)
		if err == nil {
			s.onClose("pubsub emulator", ps.Close)
			s.PubSubHost, s.PubSubBackend = ps.Host, PubSubEmulator
			if s.PubSub, err = ps.Client(context.WithoutCancel(ctx)); err != nil {
				return err
			}
			s.onClose("pubsub client", s.PubSub.Close)
			return nil
		}
		if cfg.PubSub == PubSubEmulator || !errors.Is(err, emulators.ErrNotInstalled) {
			return err
		}
		s.log.Warn("stack: Pub/Sub emulator not installed, using the in-process pstest server", "why", err.Error())
	case PubSubPstest:
	default:
		return fmt.Errorf("stack: unknown Pub/Sub backend %q (want auto, emulator or pstest)", cfg.PubSub)
	}
	srv := pstest.NewServerWithAddress("127.0.0.1:0")
	s.onClose("pstest server", srv.Close)
	s.PubSubHost, s.PubSubBackend = srv.Addr, PubSubPstest
	c, err := pubsub.NewClient(context.WithoutCancel(ctx), cfg.Project,
		option.WithEndpoint(srv.Addr), option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
		option.WithTelemetryDisabled())
	if err != nil {
		return err
	}
	s.PubSub = c
	s.onClose("pubsub client", c.Close)
	return nil
}

// Route names.
const (
	RouteUploads  = "predict-on-upload"
	RouteTraining = "submit-training"
)

func (s *Stack) startBridge(ctx context.Context) error {
	cfg := s.Config
	o := cfg.Bridge
	if o.Logger == nil {
		o.Logger = s.log
	}
	b, err := eventarc.New(s.PubSub, o,
		eventarc.Route{
			Name: RouteUploads, Kind: eventarc.Storage,
			Topic: s.Topic(cfg.NotificationsTopic), Subscription: s.Subscription("eventarc-" + RouteUploads),
			Target: s.FunctionsURL + "/PredictOnUpload", EventTypes: []string{events.StorageFinalized},
			Bucket: cfg.UploadsBucket, DeadLetterTopic: s.Topic(cfg.DeadLetterTopic),
		},
		eventarc.Route{
			Name: RouteTraining, Kind: eventarc.PubSub,
			Topic: s.Topic(cfg.TrainingTopic), Subscription: s.Subscription("eventarc-" + RouteTraining),
			Target: s.FunctionsURL + "/SubmitTraining", DeadLetterTopic: s.Topic(cfg.DeadLetterTopic),
		},
		s.monitorRoute())
	if err != nil {
		return err
	}
	if err := b.Setup(ctx); err != nil {
		return err
	}
	s.Bridge = b
	bctx, cancel := context.WithCancel(context.Background())
	s.bridgeStop, s.bridgeDone = cancel, make(chan error, 1)
	go func() {
		err := b.Run(bctx)
		if err != nil {
			s.fail(fmt.Errorf("eventarc bridge: %w", err))
		}
		s.bridgeDone <- err
	}()
	s.onClose("eventarc bridge", func() error {
		cancel()
		return <-s.bridgeDone
	})
	return nil
}

// FunctionsBinary builds ./functions/cmd/functions (once per Stack) and
// returns its path.
func (s *Stack) FunctionsBinary(ctx context.Context) (string, error) {
	if s.funcBin != "" {
		return s.funcBin, nil
	}
	bin, err := GoBuild(ctx, s.Config.BuildProgress, s.Config.RepoRoot, s.Config.BinDir, "./functions/cmd/functions", "functions")
	if err != nil {
		return "", err
	}
	s.funcBin = bin
	return bin, nil
}

// RunCommand runs argv to completion in its own process group (stopped as
// a whole if ctx ends), returning its output's tail in the error.
func RunCommand(ctx context.Context, argv ...string) error {
	return runIn(ctx, "", os.Environ(), nil, argv...)
}

// RunCommandOutput is RunCommand with the output also copied to w.
func RunCommandOutput(ctx context.Context, w io.Writer, argv ...string) error {
	return runIn(ctx, "", os.Environ(), w, argv...)
}

// runIn runs argv in dir; also, if set, copies its output to also.
func runIn(ctx context.Context, dir string, env []string, also io.Writer, argv ...string) error {
	if len(argv) == 0 {
		return errors.New("run: empty command")
	}
	out := proc.NewTail(logLimit)
	var w io.Writer = out
	if also != nil {
		w = io.MultiWriter(out, also)
	}
	// exec.Command looks a bare name up in PATH.
	p, err := proc.Start(filepath.Base(argv[0]), argv, env, dir, w)
	if err != nil {
		return err
	}
	select {
	case <-p.Done():
	case <-ctx.Done():
		p.Stop(5 * time.Second)
		return fmt.Errorf("%s: %w", strings.Join(argv, " "), ctx.Err())
	}
	// Also after a normal exit: nothing the command left running in its
	// group may outlive it.
	stopErr := p.Stop(5 * time.Second)
	if err := p.Err(); err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, oneLine(out.Lines(20), 5))
	}
	return stopErr
}

// functionsEnvDrop are variables of ours that must not leak into the
// functions server (they would override or confuse what the stack sets).
var functionsEnvDrop = []string{
	"STORAGE_EMULATOR_HOST=", "PUBSUB_EMULATOR_HOST=", "GOOGLE_CLOUD_PROJECT=", "GCP_PROJECT=", "MODEL_URI=",
	"RESULTS_BUCKET=", "UPLOAD_BUCKET=", "UPLOAD_PREFIXES=", "PREDICTIONS_TOPIC=", "PORT=", "HOST=",
	"FUNCTION_TARGET=", "K_SERVICE=", "SHUTDOWN_TIMEOUT_SECONDS=", "REGISTRY_URI=", "MODEL_NAME=", "MODEL_ALIAS=",
	"MODEL_POLL_SECONDS=", "VERTEX_ENDPOINT=", "VERTEX_REGION=", "VERTEX_INSECURE=", "TRAINER_IMAGE=",
	"TRAINING_OUTPUT_URI=", "ALLOW_LOCAL_DATA=", "MODEL_PUBLISHED_TOPIC=",
}

// FunctionsEnv is the functions server's environment: MODEL_URI=modelURI,
// or, with modelURI empty, the registry's production alias.
func (s *Stack) FunctionsEnv(modelURI string) []string {
	env := proc.Env(functionsEnvDrop, s.funcEnv...)
	if modelURI == "" {
		return env
	}
	// MODEL_URI takes precedence over REGISTRY_URI and MODEL_NAME in the
	// functions' configuration; those stay for SubmitTraining.
	return append(env, "MODEL_URI="+modelURI)
}

// StartFunctions (re)starts the functions server on the stack's functions
// port, serving MODEL_URI=modelURI or (empty) the registry's production
// alias of Config.ModelName, and waits until it answers HTTP.
func (s *Stack) StartFunctions(ctx context.Context, modelURI string) error {
	bin, err := s.FunctionsBinary(ctx)
	if err != nil {
		return err
	}
	if err := s.stopFunctions(); err != nil {
		return err
	}
	var out io.Writer = s.funcOut
	if s.Config.FunctionsOutput != nil {
		out = io.MultiWriter(s.funcOut, s.Config.FunctionsOutput)
	}
	p, err := proc.Start("functions server", []string{bin}, s.FunctionsEnv(modelURI), s.Config.RepoRoot, out)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.functions = p
	s.mu.Unlock()
	if err := waitHTTP(ctx, s.FunctionsURL+"/", p, 60*time.Second); err != nil {
		s.stopFunctions()
		return fmt.Errorf("functions server: %w (last log line: %s)", err, oneLine(s.FunctionsLog(25), 1))
	}
	go func() {
		<-p.Done()
		s.mu.Lock()
		current := s.functions == p
		s.mu.Unlock()
		if current {
			s.fail(fmt.Errorf("functions server exited (%v; last log line: %s)", p.Err(), oneLine(s.FunctionsLog(25), 1)))
		}
	}()
	s.log.Info("stack: functions server up", "url", s.FunctionsURL, "pid", p.PID(), "model_uri", modelURI, "model_name", s.Config.ModelName)
	return nil
}

// FunctionsPID is the functions server's process (group) ID, 0 if none.
func (s *Stack) FunctionsPID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.functions == nil {
		return 0
	}
	return s.functions.PID()
}

// StopFunctions stops the functions server (a StartFunctions brings it
// back): events meanwhile fail, are retried, and end dead-lettered.
func (s *Stack) StopFunctions() error { return s.stopFunctions() }

func (s *Stack) stopFunctions() error {
	s.mu.Lock()
	p := s.functions
	s.functions = nil
	s.mu.Unlock()
	if p == nil {
		return nil
	}
	return p.Stop(10 * time.Second)
}

// FunctionsLog returns the last n lines of the functions server's output.
func (s *Stack) FunctionsLog(n int) string { return s.funcOut.Lines(n) }

// waitHTTP polls url until it answers (any status), p exits or the time is up.
func waitHTTP(ctx context.Context, url string, p *proc.Process, d time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	c := &http.Client{Timeout: 2 * time.Second}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := c.Do(req); err == nil {
			resp.Body.Close()
			return nil
		}
		select {
		case <-p.Done():
			return fmt.Errorf("exited before serving (%v)", p.Err())
		case <-ctx.Done():
			return fmt.Errorf("not serving %s: %w", url, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Close stops everything in reverse order of start. It is safe to call
// more than once.
func (s *Stack) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		cs := s.closers
		s.closers = nil
		s.mu.Unlock()
		var errs []error
		for i := len(cs) - 1; i >= 0; i-- {
			if err := cs[i].fn(); err != nil {
				errs = append(errs, fmt.Errorf("stop %s: %w", cs[i].name, err))
			}
		}
		s.closeErr = errlist.Join(errs...)
	})
	return s.closeErr
}

// Env returns the variables a shell needs to talk to the stack.
func (s *Stack) Env() [][2]string {
	return [][2]string{
		{"STORAGE_EMULATOR_HOST", s.GCSHost},
		{"PUBSUB_EMULATOR_HOST", s.PubSubHost},
		{"GOOGLE_CLOUD_PROJECT", s.Config.Project},
		{"CLOUDSDK_API_ENDPOINT_OVERRIDES_PUBSUB", "http://" + s.PubSubHost + "/"},
		{"CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE", "http://" + s.GCSHost + "/storage/v1/"},
		{"CLOUDSDK_CORE_PROJECT", s.Config.Project},
		{"CLOUDSDK_AUTH_DISABLE_CREDENTIALS", "true"},
	}
}

// FindRepoRoot walks up from dir (default the working directory) to the
// go.mod of Module.
func FindRepoRoot(dir string) (string, error) {
	if dir == "" {
		wd, err := os.Getwd()
		if err != nil {
			return "", err
		}
		dir = wd
	}
	for d := dir; ; {
		if f, err := os.Open(filepath.Join(d, "go.mod")); err == nil {
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				if strings.TrimSpace(sc.Text()) == "module "+Module {
					f.Close()
					return d, nil
				}
			}
			f.Close()
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", fmt.Errorf("no go.mod of %s above %s: run from the repository (or pass its root)", Module, dir)
		}
		d = parent
	}
}
