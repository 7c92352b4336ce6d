package modelsource

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/orchard-mlops/orchard/shared/model"
	"github.com/orchard-mlops/orchard/shared/onnxrt"
	"github.com/orchard-mlops/orchard/shared/registry"
)

// WatcherOptions configure a Watcher.
type WatcherOptions struct {
	// Alias to follow; default registry.Production.
	Alias string
	// Interval is the least time between two polls of the alias object
	// (one metadata request each); default 10s.
	Interval time.Duration
	// Background polls every Interval from a goroutine started by Start.
	// Without it the watcher polls only when Acquire finds the last poll
	// older than Interval (which suits Cloud Run, where CPU outside
	// requests is throttled), or when Check or Refresh is called.
	Background bool
	// RetryFailed is how long a version that failed to load is left alone
	// before the next attempt (unless the alias moves again); default
	// max(6*Interval, 1m), so a broken model is not re-read on every poll.
	RetryFailed time.Duration
	// Classifier options for models the default loader builds.
	Classifier onnxrt.Options
	// Load builds a classifier from a model; default onnxrt.NewClassifier.
	Load func(ctx context.Context, m *model.Model) (*onnxrt.Classifier, error)
	// Logger defaults to the registry's.
	Logger *slog.Logger
}

// Watcher serves the classifier that an alias of a registry model names
// (the hot reload), and swaps in a new one when the alias moves. It
// implements Provider beside Lazy, sharing its Slot and its panic-safe,
// time-bounded load:
// Acquire never blocks on a swap, in-flight requests keep the classifier
// they leased (it is closed after the last lease is released), and a
// version that fails to load leaves the current one serving.
type Watcher struct {
	reg  *registry.Registry
	name string
	o    WatcherOptions
	log  *slog.Logger

	slot Slot

	mu       sync.Mutex // serialises checks and guards the fields below
	gen      int64      // alias generation the loaded version came from
	version  string     // loaded version
	lastErr  error
	badGen   int64     // alias generation whose version failed to load
	badAt    time.Time // when
	badErr   error
	checking atomic.Bool
	last     atomic.Int64 // unix nanos of the last check start
	current  atomic.Pointer[string]

	stopOnce sync.Once
	stop     chan struct{}
	wg       sync.WaitGroup
}

var _ Provider = (*Watcher)(nil)

// NewWatcher returns a watcher for model name. Nothing is loaded until the
// first Check, Start or Acquire.
func NewWatcher(reg *registry.Registry, name string, o WatcherOptions) *Watcher {
	if o.Alias == "" {
		o.Alias = registry.Production
	}
	if o.Interval <= 0 {
		o.Interval = 10 * time.Second
	}
	if o.RetryFailed <= 0 {
		o.RetryFailed = max(6*o.Interval, time.Minute)
	}
	if o.Load == nil {
		opts := o.Classifier
		o.Load = func(_ context.Context, m *model.Model) (*onnxrt.Classifier, error) {
			return onnxrt.NewClassifier(m, opts)
		}
	}
	w := &Watcher{reg: reg, name: name, o: o, log: o.Logger, stop: make(chan struct{})}
	if w.log == nil {
		w.log = reg.Logger()
	}
	return w
}

// Start loads the current version (returning the error if that fails; the
// watcher keeps trying later) and, with Background, starts polling.
func (w *Watcher) Start(ctx context.Context) error {
	_, err := w.Check(ctx)
	if w.o.Background {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			t := time.NewTicker(w.o.Interval)
			defer t.Stop()
			for {
				select {
				case <-w.stop:
					return
				case <-t.C:
					w.checkDetached()
				}
			}
		}()
	}
	return err
}

// Version returns the version being served ("" if none).
func (w *Watcher) Version() string {
	if v := w.current.Load(); v != nil {
		return *v
	}
	return ""
}

// Check polls the alias once and swaps in its version if it changed. It
// reports whether a swap happened. An alias that disappears leaves the
// current classifier serving.
func (w *Watcher) Check(ctx context.Context) (bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.last.Store(time.Now().UnixNano())
	swapped, err := w.check(ctx)
	repeated := err != nil && err == w.lastErr
	w.lastErr = err
	if err != nil && !repeated {
		w.log.WarnContext(ctx, "model watcher: check failed; keeping the current version",
			"model", w.name, "alias", w.o.Alias, "serving", w.version, "err", err)
	}
	return swapped, err
}

func (w *Watcher) check(ctx context.Context) (bool, error) {
	gen, err := w.reg.AliasGeneration(ctx, w.name, w.o.Alias)
	if err != nil {
		return false, err
	}
	if gen == w.gen {
		return false, nil
	}
	if gen == w.badGen && time.Since(w.badAt) < w.o.RetryFailed {
		return false, w.badErr
	}
	a, err := w.reg.Alias(ctx, w.name, w.o.Alias)
	if err != nil {
		return false, err
	}
	if a.Version == w.version {
		w.gen = a.Generation
		return false, nil
	}
	c, err := w.load(ctx, a.Version)
	if err != nil {
		err = fmt.Errorf("loading version %s (%s of model %s): %w", a.Version, w.o.Alias, w.name, err)
		w.badGen, w.badAt, w.badErr = a.Generation, time.Now(), err
		if w.version == "" {
			return w.fallback(ctx, a, err), err
		}
		return false, err
	}
	old := w.version
	w.slot.Swap(c)
	w.version, w.gen = a.Version, a.Generation
	v := a.Version
	w.current.Store(&v)
	w.log.InfoContext(ctx, "model watcher: swapped", "model", w.name, "alias", w.o.Alias, "from", old, "to", a.Version,
		"generation", a.Generation)
	return true, nil
}

// fallback serves the most recent earlier target of the alias that loads,
// when the current target cannot be loaded and nothing is served yet (a
// fresh instance): answering with the last good version beats answering
// 503 on every cold start. The alias is retried after RetryFailed.
func (w *Watcher) fallback(ctx context.Context, a *registry.Alias, cause error) bool {
	tried := map[string]bool{a.Version: true}
	for _, h := range a.History {
		if tried[h.Version] {
			continue
		}
		tried[h.Version] = true
		c, err := w.load(ctx, h.Version)
		if err != nil {
			w.log.WarnContext(ctx, "model watcher: fallback version cannot be loaded either", "model", w.name, "version", h.Version, "err", err)
			continue
		}
		w.slot.Swap(c)
		w.version = h.Version
		v := h.Version
		w.current.Store(&v)
		w.log.ErrorContext(ctx, "model watcher: the alias's version cannot be loaded; serving the last earlier version that loads",
			"model", w.name, "alias", w.o.Alias, "wanted", a.Version, "serving", h.Version, "err", cause)
		return true
	}
	return false
}

// load reads and builds a version's classifier through safeLoad, as Lazy
// does: detached from ctx's cancellation, bounded by LoadTimeout, a panic
// turned into an error.
func (w *Watcher) load(ctx context.Context, version string) (*onnxrt.Classifier, error) {
	return safeLoad(ctx, func(ctx context.Context) (*onnxrt.Classifier, error) {
		m, err := w.reg.LoadModel(ctx, w.name, version)
		if err != nil {
			return nil, err
		}
		return w.o.Load(ctx, m)
	})
}

// checkDetached runs one check unless one is running.
func (w *Watcher) checkDetached() {
	if !w.checking.CompareAndSwap(false, true) {
		return
	}
	defer w.checking.Store(false)
	ctx, cancel := context.WithTimeout(context.Background(), LoadTimeout)
	defer cancel()
	_, _ = w.Check(ctx)
}

// Refresh starts a check in the background now (e.g. on a model-published
// message) unless one is running.
func (w *Watcher) Refresh() { go w.checkDetached() }

func (w *Watcher) due() bool {
	return time.Since(time.Unix(0, w.last.Load())) >= w.o.Interval
}

// Acquire implements Provider. It returns the current
// classifier at once; if the last poll is older than Interval it starts a
// background one. With nothing loaded yet it loads synchronously, at most
// once per Interval; until then it returns a *UnavailableError.
func (w *Watcher) Acquire(ctx context.Context) (*Lease, error) {
	if l, ok := w.slot.Acquire(); ok {
		if w.due() {
			w.Refresh()
		}
		return l, nil
	}
	w.mu.Lock()
	lastErr := w.lastErr
	w.mu.Unlock()
	if lastErr != nil && !w.due() {
		wait := time.Until(time.Unix(0, w.last.Load()).Add(w.o.Interval))
		return nil, &UnavailableError{Err: lastErr, RetryAfter: max(wait, 0)}
	}
	if _, err := w.Check(ctx); err != nil {
		if l, ok := w.slot.Acquire(); ok { // another check won meanwhile
			return l, nil
		}
		return nil, &UnavailableError{Err: err, RetryAfter: w.o.Interval}
	}
	if l, ok := w.slot.Acquire(); ok {
		return l, nil
	}
	return nil, &UnavailableError{Err: errors.New("no model loaded"), RetryAfter: w.o.Interval}
}

// Close stops polling and empties the watcher; the last classifier is
// closed after its last lease is released. Close waits for that or ctx.
func (w *Watcher) Close(ctx context.Context) error {
	w.stopOnce.Do(func() { close(w.stop) })
	w.wg.Wait()
	w.mu.Lock()
	done := w.slot.Swap(nil)
	w.version, w.gen = "", 0
	w.current.Store(nil)
	w.mu.Unlock()
	return WaitClosed(ctx, done)
}
