package predict

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/shared/modelsource"
	"github.com/orchard-mlops/orchard/shared/onnxrt"
	"github.com/orchard-mlops/orchard/shared/registry"
)

// registryProvider serves the model an alias of the registry names (see
// modelsource.Watcher) and reloads it when the alias moves. The watcher polls
// from Acquire, never from a background goroutine, because Cloud Run
// throttles CPU between requests. The registry is opened on first use so
// that NewApp stays free of I/O.
type registryProvider struct {
	watcher func() (*modelsource.Watcher, error)
	mu      sync.Mutex
	made    *modelsource.Watcher
}

func newRegistryProvider(cfg Config, storage *blob.Opener, log *slog.Logger) *registryProvider {
	p := &registryProvider{}
	p.watcher = sync.OnceValues(func() (*modelsource.Watcher, error) {
		reg, err := registry.Open(context.Background(), cfg.RegistryURI, registry.Options{Logger: log, Storage: storage})
		if err != nil {
			return nil, fmt.Errorf("opening REGISTRY_URI: %w", err)
		}
		w := modelsource.NewWatcher(reg, cfg.ModelName, modelsource.WatcherOptions{
			Alias:      cfg.ModelAlias,
			Interval:   cfg.ModelPoll,
			Classifier: onnxrt.Options{IntraOpThreads: cfg.IntraOpThreads, Limits: cfg.Limits()},
			Logger:     log,
		})
		p.mu.Lock()
		p.made = w
		p.mu.Unlock()
		return w, nil
	})
	return p
}

// Acquire implements modelsource.Provider.
func (p *registryProvider) Acquire(ctx context.Context) (*modelsource.Lease, error) {
	w, err := p.watcher()
	if err != nil {
		// A URI that cannot be opened will not get better by retrying, but
		// it is reported per request like any other missing model.
		return nil, &modelsource.UnavailableError{Err: err, RetryAfter: DefaultRetryAfter}
	}
	return w.Acquire(ctx)
}

// Close releases the served model after in-flight requests.
func (p *registryProvider) Close(ctx context.Context) error {
	p.mu.Lock()
	w := p.made
	p.mu.Unlock()
	if w == nil {
		return nil
	}
	return w.Close(ctx)
}

// validRegistryURI rejects a REGISTRY_URI that could never be opened, at
// configuration time rather than on the first request.
func validRegistryURI(uri string) error {
	_, _, _, err := blob.Parse(uri)
	return err
}
