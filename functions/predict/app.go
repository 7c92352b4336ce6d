package predict

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/storage"
	"google.golang.org/api/option"

	"github.com/orchard-mlops/orchard/functions/telemetry"
	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/shared/model"
	"github.com/orchard-mlops/orchard/shared/modelsource"
)

// App wires both functions from a Config: one model provider (one
// onnxruntime session per process, shared by Predict and PredictOnUpload),
// one storage client made on first use, the metrics, and the optional
// Pub/Sub publisher.
type App struct {
	Config   Config
	Provider modelsource.Provider
	Metrics  *telemetry.Metrics
	Log      *slog.Logger
	HTTP     *Server
	// Budget is the process's one decode memory budget, used by both
	// functions (Config.DecodeMemory, Config.DecodeWait).
	Budget *DecodeBudget

	storage  func() (*storage.Client, error)
	objects  Objects
	upload   func() (*Uploader, error)
	closeFns []func() error
	mu       sync.Mutex
}

// AppOptions supply dependencies; zero values get production defaults.
type AppOptions struct {
	// Provider overrides the lazy MODEL_URI loader (e.g. the registry's
	// hot-reloading provider, or a static classifier in tests).
	Provider modelsource.Provider
	// Storage is the client for source objects and results; nil makes one
	// on first use with storage.NewClient (which honours
	// STORAGE_EMULATOR_HOST and Application Default Credentials).
	Storage *storage.Client
	// PubSubOptions are extra options for the Pub/Sub client (emulators
	// are found through PUBSUB_EMULATOR_HOST without them).
	PubSubOptions []option.ClientOption
	Metrics       *telemetry.Metrics
	Log           *slog.Logger
}

// NewApp builds the functions. It does no I/O: the model, the storage
// client and the Pub/Sub client are made on first use, so a missing model
// or credentials surface as per-request errors, not a crash at start-up.
func NewApp(cfg Config, o AppOptions) *App {
	a := &App{Config: cfg, Metrics: o.Metrics, Log: o.Log, Budget: NewDecodeBudget(cfg.decodeMemory(), cfg.DecodeWait)}
	if a.Log == nil {
		a.Log = slog.Default()
	}
	switch {
	case o.Provider != nil:
		a.Provider = o.Provider
	case cfg.ServesRegistry():
		w := newRegistryProvider(cfg, a.Log)
		a.Provider = w
		a.closeFns = append(a.closeFns, func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			return w.Close(ctx)
		})
	default:
		lazy := modelsource.NewLazy(modelsource.FromURI(blob.LazyOpener(), cfg.ModelURI, model.Options{
			IntraOpThreads: cfg.IntraOpThreads,
			Limits:         cfg.Limits(),
		}), modelsource.Backoff{Initial: time.Second, Max: cfg.ModelRetry})
		a.Provider = lazy
		a.closeFns = append(a.closeFns, func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			return lazy.Close(ctx)
		})
	}
	if o.Storage != nil {
		a.storage = func() (*storage.Client, error) { return o.Storage, nil }
	} else {
		a.storage = sync.OnceValues(func() (*storage.Client, error) {
			c, err := storage.NewClient(context.Background())
			if err != nil {
				return nil, fmt.Errorf("creating the storage client: %w", err)
			}
			a.addClose(c.Close)
			return c, nil
		})
	}
	a.objects = lazyObjects{a.storage}
	a.HTTP = &Server{Config: cfg, Provider: a.Provider, Objects: a.objects, Budget: a.Budget, Metrics: a.Metrics, Log: a.Log}
	a.upload = sync.OnceValues(func() (*Uploader, error) { return a.newUploader(o.PubSubOptions) })
	return a
}

func (a *App) addClose(f func() error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.closeFns = append(a.closeFns, f)
}

// Uploader returns the PredictOnUpload core, or the configuration error
// that stops it from running.
func (a *App) Uploader() (*Uploader, error) { return a.upload() }

func (a *App) newUploader(psOpts []option.ClientOption) (*Uploader, error) {
	if err := a.Config.ValidateUpload(); err != nil {
		return nil, err
	}
	c, err := a.storage()
	if err != nil {
		return nil, err
	}
	u := &Uploader{
		Config:   a.Config,
		Provider: a.Provider,
		Objects:  a.objects,
		Results:  blob.NewGCS(c, a.Config.ResultsBucket, ""),
		Budget:   a.Budget,
		Metrics:  a.Metrics,
		Log:      a.Log,
	}
	if a.Config.Topic != "" {
		p, err := NewPubSubPublisher(context.Background(), a.Config.Project, a.Config.Topic, psOpts...)
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
	return errors.Join(errs...)
}

// lazyObjects makes the storage client on first use.
type lazyObjects struct {
	client func() (*storage.Client, error)
}

func (l lazyObjects) Read(ctx context.Context, bucket, name string, generation, maxBytes int64) ([]byte, ObjectInfo, error) {
	c, err := l.client()
	if err != nil {
		return nil, ObjectInfo{Bucket: bucket, Name: name}, err
	}
	return GCSObjects{Client: c}.Read(ctx, bucket, name, generation, maxBytes)
}

func (l lazyObjects) List(ctx context.Context, bucket, prefix string, keep func(ObjectInfo) bool, limit, scanLimit int) ([]ObjectInfo, error) {
	c, err := l.client()
	if err != nil {
		return nil, err
	}
	return GCSObjects{Client: c}.List(ctx, bucket, prefix, keep, limit, scanLimit)
}

// PubSubPublisher publishes results to one topic.
type PubSubPublisher struct {
	client *pubsub.Client
	pub    *pubsub.Publisher
}

// NewPubSubPublisher connects to topic, an ID in project or a full
// projects/P/topics/T name.
func NewPubSubPublisher(ctx context.Context, project, topic string, opts ...option.ClientOption) (*PubSubPublisher, error) {
	if parts := strings.Split(topic, "/"); len(parts) == 4 && parts[0] == "projects" && parts[2] == "topics" && project == "" {
		project = parts[1]
	}
	c, err := pubsub.NewClient(ctx, project, opts...)
	if err != nil {
		return nil, fmt.Errorf("creating the Pub/Sub client: %w", err)
	}
	p := c.Publisher(topic)
	// One message per event: do not wait to fill a batch.
	p.PublishSettings.DelayThreshold = time.Millisecond
	return &PubSubPublisher{client: c, pub: p}, nil
}

// Publish implements Publisher; it waits for the server's acknowledgement.
func (p *PubSubPublisher) Publish(ctx context.Context, data []byte, attrs map[string]string) error {
	_, err := p.pub.Publish(ctx, &pubsub.Message{Data: data, Attributes: attrs}).Get(ctx)
	return err
}

// Close flushes and closes.
func (p *PubSubPublisher) Close() error {
	p.pub.Stop()
	return p.client.Close()
}
