// Package modelsource hands the prediction functions the classifier to use.
//
// A Provider is asked for a classifier on every request or event. Acquire
// returns a Lease that pins the classifier until Release: a Provider that
// swaps models (the registry's alias-based hot reload) closes the old
// classifier only when the last request using it has released it, so a swap
// never pulls a session out from under a running inference.
//
// Lazy is the Provider over one MODEL_URI: it loads it on first use, once,
// and on failure retries on a later request after a backoff rather than on
// every request, so a missing or broken model gives 503s, not a crash loop
// and not a storm of GCS reads. Watcher is the Provider over a registry
// alias: it follows the alias and swaps models in (hot reload).
package modelsource

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/orchard-mlops/orchard/shared/backoff"
	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/shared/model"
	"github.com/orchard-mlops/orchard/shared/onnxrt"
)

// Provider gives out the current classifier.
type Provider interface {
	// Acquire returns the classifier to use for one request or event. The
	// caller must Release the lease when done. An error means no model can
	// serve right now; it is an *UnavailableError when the caller should
	// retry later.
	Acquire(ctx context.Context) (*Lease, error)
}

// Lease pins a classifier until Release. Release is idempotent.
type Lease struct {
	*onnxrt.Classifier
	e    *entry
	done atomic.Bool
}

// Release gives the classifier back. After the last release of a retired
// classifier, it is closed.
func (l *Lease) Release() {
	if l != nil && l.e != nil && l.done.CompareAndSwap(false, true) {
		l.e.release()
	}
}

// UnavailableError means no model is loaded yet; RetryAfter is when a new
// attempt will be made.
type UnavailableError struct {
	Err        error
	RetryAfter time.Duration
}

func (e *UnavailableError) Error() string { return "model unavailable: " + e.Err.Error() }
func (e *UnavailableError) Unwrap() error { return e.Err }

// IsUnavailable reports whether err means "no model yet, retry later".
func IsUnavailable(err error) bool {
	var u *UnavailableError
	return errors.As(err, &u)
}

// entry is a classifier with a reference count. The slot holding it owns
// one reference; each lease owns one. The classifier is closed when the
// count reaches zero, which happens only after the slot let go of it.
type entry struct {
	c      *onnxrt.Classifier
	refs   atomic.Int64
	closed chan struct{}
	onDone func(*onnxrt.Classifier) // closes c; replaceable in tests
}

func newEntry(c *onnxrt.Classifier, closeFn func(*onnxrt.Classifier)) *entry {
	e := &entry{c: c, closed: make(chan struct{}), onDone: closeFn}
	e.refs.Store(1)
	return e
}

// tryAcquire takes a reference unless the entry is already being closed.
func (e *entry) tryAcquire() bool {
	for {
		n := e.refs.Load()
		if n <= 0 {
			return false
		}
		if e.refs.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

func (e *entry) release() {
	if e.refs.Add(-1) == 0 {
		if e.onDone != nil {
			e.onDone(e.c)
		}
		close(e.closed)
	}
}

func closeClassifier(c *onnxrt.Classifier) {
	if c != nil {
		_ = c.Close()
	}
}

// Slot holds the current classifier and swaps it atomically. It is the
// building block for hot reload: Swap installs a new classifier, and the old
// one is closed once every in-flight lease on it is released.
type Slot struct {
	cur atomic.Pointer[entry]
	// closeFn closes retired classifiers (Classifier.Close by default).
	closeFn func(*onnxrt.Classifier)
}

// Acquire leases the current classifier, or returns nil, false if the slot
// is empty.
func (s *Slot) Acquire() (*Lease, bool) {
	for {
		e := s.cur.Load()
		if e == nil {
			return nil, false
		}
		if e.tryAcquire() {
			return &Lease{Classifier: e.c, e: e}, true
		}
		// e was retired and closed between Load and tryAcquire: the slot
		// already holds its successor (or nothing); look again.
	}
}

// Swap installs c (nil empties the slot) and retires the previous
// classifier, which is closed after its last lease is released. The
// returned channel is closed when that has happened (nil if there was no
// previous classifier).
func (s *Slot) Swap(c *onnxrt.Classifier) <-chan struct{} {
	var e *entry
	if c != nil {
		closeFn := s.closeFn
		if closeFn == nil {
			closeFn = closeClassifier
		}
		e = newEntry(c, closeFn)
	}
	old := s.cur.Swap(e)
	if old == nil {
		return nil
	}
	old.release()
	return old.closed
}

// discard closes a classifier that was never installed.
func (s *Slot) discard(c *onnxrt.Classifier) {
	if s.closeFn != nil {
		s.closeFn(c)
	} else {
		closeClassifier(c)
	}
}

// LoadFunc builds a classifier, e.g. from a model URI.
type LoadFunc func(ctx context.Context) (*onnxrt.Classifier, error)

// FromURI returns a LoadFunc that loads the model at uri (gs://, file:// or
// a path), opened by op, with the given classifier options.
func FromURI(op *blob.Opener, uri string, opts onnxrt.Options) LoadFunc {
	return func(ctx context.Context) (*onnxrt.Classifier, error) {
		m, err := model.Load(ctx, op, uri)
		if err != nil {
			return nil, err
		}
		return onnxrt.NewClassifier(m, opts)
	}
}

// Backoff bounds how often Lazy retries a failed load.
type Backoff struct {
	Initial time.Duration // first wait after a failure; default 1s
	Max     time.Duration // cap; default 30s
}

func (b Backoff) after(failures int) time.Duration {
	d, m := b.Initial, b.Max
	if d <= 0 {
		d = time.Second
	}
	if m <= 0 {
		m = 30 * time.Second
	}
	return backoff.Doubling(d, m, failures)
}

// LoadTimeout bounds one load attempt. Loads are detached from the request
// that triggered them, so an impatient client cannot abort a load others
// wait for.
const LoadTimeout = 2 * time.Minute

// Lazy loads a classifier on first use and keeps it. A failed load is
// returned to the callers waiting for it and remembered: until the backoff
// has passed, callers get the same error at once (an *UnavailableError with
// the time left), then the next caller tries again.
type Lazy struct {
	load    LoadFunc
	backoff Backoff
	now     func() time.Time

	slot Slot

	mu        sync.Mutex
	loading   chan struct{} // non-nil while a load runs; closed when it ends
	lastErr   error
	failures  int
	nextTry   time.Time
	loadCount int
}

// NewLazy returns a Lazy provider over load.
func NewLazy(load LoadFunc, b Backoff) *Lazy {
	return &Lazy{load: load, backoff: b, now: time.Now}
}

// Acquire implements Provider.
func (l *Lazy) Acquire(ctx context.Context) (*Lease, error) {
	for {
		if lease, ok := l.slot.Acquire(); ok {
			return lease, nil
		}
		l.mu.Lock()
		if lease, ok := l.slot.Acquire(); ok { // loaded while we waited for mu
			l.mu.Unlock()
			return lease, nil
		}
		if ch := l.loading; ch != nil {
			l.mu.Unlock()
			select {
			case <-ch:
				l.mu.Lock()
				err := l.lastErr
				wait := l.nextTry.Sub(l.now())
				l.mu.Unlock()
				if err != nil {
					return nil, &UnavailableError{Err: err, RetryAfter: max(wait, 0)}
				}
				continue
			case <-ctx.Done():
				return nil, &UnavailableError{Err: fmt.Errorf("waiting for the model to load: %w", ctx.Err()), RetryAfter: time.Second}
			}
		}
		if l.lastErr != nil {
			if wait := l.nextTry.Sub(l.now()); wait > 0 {
				err := l.lastErr
				l.mu.Unlock()
				return nil, &UnavailableError{Err: err, RetryAfter: wait}
			}
		}
		ch := make(chan struct{})
		l.loading = ch
		l.loadCount++
		l.mu.Unlock()

		c, err := l.runLoad(ctx)

		l.mu.Lock()
		if err != nil {
			l.failures++
			l.lastErr = err
			l.nextTry = l.now().Add(l.backoff.after(l.failures))
		} else {
			l.failures, l.lastErr = 0, nil
			if cur, ok := l.slot.Acquire(); ok {
				// Replace installed a classifier while this one loaded:
				// the explicit one wins.
				cur.Release()
				l.slot.discard(c)
			} else {
				l.slot.Swap(c)
			}
		}
		l.loading = nil
		close(ch)
		l.mu.Unlock()
		// Loop: the loader leases what it loaded through the same path as
		// everyone else, or reports the failure.
		if err != nil {
			return nil, &UnavailableError{Err: err, RetryAfter: l.backoff.after(l.failures)}
		}
	}
}

// runLoad is safeLoad of the load function.
func (l *Lazy) runLoad(ctx context.Context) (*onnxrt.Classifier, error) { return safeLoad(ctx, l.load) }

// safeLoad calls load detached from ctx's cancellation and bounded by
// LoadTimeout, and turns a panic into an error (a hostile model must not
// crash the process). Lazy and Watcher load through it.
func safeLoad(ctx context.Context, load LoadFunc) (c *onnxrt.Classifier, err error) {
	defer func() {
		if r := recover(); r != nil {
			c, err = nil, fmt.Errorf("loading the model panicked: %v", r)
		}
	}()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), LoadTimeout)
	defer cancel()
	return load(ctx)
}

// Replace installs c as the current classifier (hot reload); the previous
// one is closed after its last lease. The returned channel is closed then.
func (l *Lazy) Replace(c *onnxrt.Classifier) <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.failures, l.lastErr = 0, nil
	return l.slot.Swap(c)
}

// Loaded reports whether a classifier is loaded, without loading one.
func (l *Lazy) Loaded() bool {
	lease, ok := l.slot.Acquire()
	lease.Release()
	return ok
}

// Loads is how many load attempts were started (for tests and metrics).
func (l *Lazy) Loads() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.loadCount
}

// Close empties the provider; the classifier is closed after the last
// lease is released. Close waits for that or for ctx.
func (l *Lazy) Close(ctx context.Context) error { return WaitClosed(ctx, l.slot.Swap(nil)) }

// WaitClosed waits until the classifier a Swap retired is closed (done,
// from Swap; nil means there was none) or ctx ends.
func WaitClosed(ctx context.Context, done <-chan struct{}) error {
	if done == nil {
		return nil
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Static is a Provider over one classifier that is never swapped (tests,
// tools). Closing the classifier is the caller's business.
type Static struct{ C *onnxrt.Classifier }

// Acquire implements Provider.
func (s Static) Acquire(context.Context) (*Lease, error) {
	if s.C == nil {
		return nil, &UnavailableError{Err: errors.New("no classifier"), RetryAfter: time.Second}
	}
	return &Lease{Classifier: s.C}, nil
}
