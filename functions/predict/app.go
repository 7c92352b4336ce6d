package predict

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"cloud.google.com/go/storage"
	"google.golang.org/api/option"

	"github.com/orchard-mlops/orchard/functions/telemetry"
	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/shared/errlist"
	"github.com/orchard-mlops/orchard/shared/modelsource"
	"github.com/orchard-mlops/orchard/shared/onnxrt"
	"github.com/orchard-mlops/orchard/shared/pubsubx"
)

// App wires both functions from a Config: one Service (one model
// provider, so one onnxruntime session per process, shared by Predict and
// PredictOnUpload; one decode budget; one storage client), the Predict
// server over it, and PredictOnUpload's uploader on demand.
type App struct {
	Service *Service
	HTTP    *Server

	storage  *blob.Opener // the one storage client, for sources, results and models
	psOpts   []option.ClientOption
	mu       sync.Mutex
	closeFns []func() error
}

// AppOptions supply dependencies; zero values get production defaults.
type AppOptions struct {
	// Provider overrides the MODEL_URI or REGISTRY_URI model (e.g. a
	// static classifier in tests).
	Provider modelsource.Provider
	// Storage is the client for source objects, results and models; nil
	// makes one with storage.NewClient on first use (which honours
	// STORAGE_EMULATOR_HOST and Application Default Credentials), closed
	// by Close.
	Storage *storage.Client
	// PubSubOptions are extra options for the Pub/Sub client (emulators
	// are found through PUBSUB_EMULATOR_HOST without them).
	PubSubOptions []option.ClientOption
	Metrics       *telemetry.Metrics
	Log           *slog.Logger
}

// NewApp builds the functions. It does no network I/O: the model is loaded
// on first use, so a missing model surfaces as per-request errors, not a
// crash at start-up; so does a storage client that cannot be made.
func NewApp(cfg Config, o AppOptions) *App {
	svc := &Service{Config: cfg, Provider: o.Provider, Metrics: o.Metrics, Log: o.Log,
		Budget: NewDecodeBudget(cfg.DecodeMemory, cfg.DecodeWait)}
	a := &App{Service: svc, HTTP: &Server{Service: svc}, storage: blob.NewOpener(o.Storage), psOpts: o.PubSubOptions}
	if o.Storage == nil {
		a.storage = blob.LazyOpener()
		a.addClose(a.storage.Close)
	}
	svc.Storage = a.storage
	if svc.Provider == nil {
		svc.Provider = a.modelProvider(cfg, svc.log())
	}
	return a
}

// modelProvider is the registry alias's hot-reloading provider, or a lazy
// loader of MODEL_URI; Close releases it.
func (a *App) modelProvider(cfg Config, log *slog.Logger) modelsource.Provider {
	type closer interface {
		modelsource.Provider
		Close(context.Context) error
	}
	var p closer
	if cfg.ServesRegistry() {
		p = newRegistryProvider(cfg, a.storage, log)
	} else {
		p = modelsource.NewLazy(modelsource.FromURI(a.storage, cfg.ModelURI, onnxrt.Options{
			IntraOpThreads: cfg.IntraOpThreads,
			Limits:         cfg.Limits(),
		}), modelsource.Backoff{Initial: time.Second, Max: cfg.ModelRetry})
	}
	a.addClose(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return p.Close(ctx)
	})
	return p
}

func (a *App) addClose(f func() error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.closeFns = append(a.closeFns, f)
}

// Uploader builds the PredictOnUpload core, or returns the configuration
// error that stops it from running. Close releases its publisher.
func (a *App) Uploader() (*Uploader, error) {
	cfg := a.Service.Config
	if err := cfg.ValidateUpload(); err != nil {
		return nil, err
	}
	results, err := a.storage.Open(context.Background(), "gs://"+cfg.ResultsBucket)
	if err != nil {
		return nil, err
	}
	u := &Uploader{
		Service: a.Service,
		Results: &Results{Store: results, Timeout: cfg.StorageTimeout},
	}
	if cfg.Topic != "" {
		p, err := pubsubx.Dial(context.Background(), cfg.Project, cfg.Topic, a.psOpts...)
		if err != nil {
			return nil, err
		}
		a.addClose(p.Close)
		u.Publisher = p
	}
	return u, nil
}

// Close releases the clients and the model (after in-flight requests).
func (a *App) Close() error {
	a.mu.Lock()
	fns := a.closeFns
	a.closeFns = nil
	a.mu.Unlock()
	var errs []error
	for i := len(fns) - 1; i >= 0; i-- {
		errs = append(errs, fns[i]())
	}
	return errlist.Join(errs...)
}
