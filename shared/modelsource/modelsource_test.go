package modelsource

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/orchard-mlops/orchard/shared/model/modeltest"
	"github.com/orchard-mlops/orchard/shared/onnxrt"
	"github.com/orchard-mlops/orchard/shared/onnxrt/onnxrttest"
)

// fakeClassifiers stand in for real ones where only identity matters; the
// slot's close function is replaced so they are never Closed for real.
func fakeClassifier() *onnxrt.Classifier { return new(onnxrt.Classifier) }

func TestSlotClosesRetiredClassifierAfterLastLease(t *testing.T) {
	var closed sync.Map
	s := &Slot{closeFn: func(c *onnxrt.Classifier) { closed.Store(c, true) }}
	if _, ok := s.Acquire(); ok {
		t.Fatal("empty slot gave a lease")
	}
	a, b := fakeClassifier(), fakeClassifier()
	if done := s.Swap(a); done != nil {
		t.Fatal("first Swap returned a done channel")
	}
	l1, ok := s.Acquire()
	if !ok || l1.Classifier != a {
		t.Fatalf("Acquire = %v, %v; want a", l1, ok)
	}
	done := s.Swap(b)
	l2, _ := s.Acquire()
	if l2.Classifier != b {
		t.Fatal("after Swap, Acquire did not return the new classifier")
	}
	if _, ok := closed.Load(a); ok {
		t.Fatal("old classifier closed while a lease on it was held")
	}
	select {
	case <-done:
		t.Fatal("done closed while a lease was held")
	default:
	}
	l1.Release()
	l1.Release() // idempotent: must not close anything else
	<-done
	if _, ok := closed.Load(a); !ok {
		t.Fatal("old classifier not closed after its last lease was released")
	}
	if _, ok := closed.Load(b); ok {
		t.Fatal("current classifier closed")
	}
	l2.Release()
	<-s.Swap(nil)
	if _, ok := closed.Load(b); !ok {
		t.Fatal("Swap(nil) did not close the last classifier")
	}
}

func TestSlotConcurrentSwapAndAcquire(t *testing.T) {
	var closes atomic.Int64
	var mu sync.Mutex
	closedSet := map[*onnxrt.Classifier]bool{}
	s := &Slot{closeFn: func(c *onnxrt.Classifier) {
		mu.Lock()
		defer mu.Unlock()
		if closedSet[c] {
			t.Errorf("classifier closed twice")
		}
		closedSet[c] = true
		closes.Add(1)
	}}
	s.Swap(fakeClassifier())
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				l, ok := s.Acquire()
				if !ok {
					continue
				}
				mu.Lock()
				if closedSet[l.Classifier] {
					t.Errorf("leased a closed classifier")
				}
				mu.Unlock()
				l.Release()
			}
		})
	}
	const swaps = 200
	for range swaps {
		s.Swap(fakeClassifier())
	}
	close(stop)
	wg.Wait()
	<-s.Swap(nil)
	if got := closes.Load(); got != swaps+1 {
		t.Errorf("%d classifiers closed, want %d", got, swaps+1)
	}
}

func TestLazyLoadsOnceAndBacksOff(t *testing.T) {
	var calls atomic.Int64
	fail := atomic.Bool{}
	fail.Store(true)
	c := fakeClassifier()
	l := NewLazy(func(ctx context.Context) (*onnxrt.Classifier, error) {
		calls.Add(1)
		time.Sleep(10 * time.Millisecond) // let concurrent callers pile up
		if fail.Load() {
			return nil, errors.New("model.json: not found")
		}
		return c, nil
	}, Backoff{Initial: 150 * time.Millisecond, Max: time.Second})
	l.slot.closeFn = func(*onnxrt.Classifier) {}
	now := time.Now()
	l.now = func() time.Time { return now }

	// Many concurrent first requests: one load, all get the error.
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			_, err := l.Acquire(t.Context())
			var u *UnavailableError
			if !errors.As(err, &u) || u.RetryAfter <= 0 {
				t.Errorf("Acquire = %v, want an UnavailableError with a RetryAfter", err)
			}
		})
	}
	wg.Wait()
	if n := calls.Load(); n != 1 {
		t.Fatalf("%d loads for concurrent first requests, want 1", n)
	}
	// Within the backoff: no new attempt.
	fail.Store(false)
	for range 5 {
		if _, err := l.Acquire(t.Context()); !IsUnavailable(err) {
			t.Fatalf("Acquire within the backoff = %v, want unavailable", err)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("%d loads within the backoff, want 1", n)
	}
	// After the backoff: one new attempt, which succeeds and sticks.
	now = now.Add(200 * time.Millisecond)
	for range 5 {
		lease, err := l.Acquire(t.Context())
		if err != nil || lease.Classifier != c {
			t.Fatalf("Acquire after the backoff = %v, %v", lease, err)
		}
		lease.Release()
	}
	if n := calls.Load(); n != 2 {
		t.Fatalf("%d loads, want 2", n)
	}
	if !l.Loaded() {
		t.Error("Loaded() = false")
	}
}

func TestBackoffGrowsAndCaps(t *testing.T) {
	b := Backoff{Initial: time.Second, Max: 5 * time.Second}
	for i, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second} {
		if got := b.after(i + 1); got != want {
			t.Errorf("after(%d) = %v, want %v", i+1, got, want)
		}
	}
}

func TestLazyLoadPanicIsAnError(t *testing.T) {
	l := NewLazy(func(context.Context) (*onnxrt.Classifier, error) { panic("hostile model") }, Backoff{})
	if _, err := l.Acquire(t.Context()); !IsUnavailable(err) {
		t.Fatalf("Acquire = %v, want unavailable", err)
	}
}

func TestLazyWaiterHonoursItsContext(t *testing.T) {
	release := make(chan struct{})
	l := NewLazy(func(context.Context) (*onnxrt.Classifier, error) {
		<-release
		return nil, errors.New("slow failure")
	}, Backoff{})
	go l.Acquire(context.Background()) // the loader
	for l.Loads() == 0 {
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if _, err := l.Acquire(ctx); !IsUnavailable(err) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("waiting Acquire = %v, want unavailable with the deadline", err)
	}
	close(release)
}

// TestLazyRealModel loads the colour model from a directory and classifies.
func TestLazyRealModel(t *testing.T) {
	onnxrttest.Init(t)
	dir := modeltest.Dir(t, modeltest.Options{Version: "v7"})
	l := NewLazy(FromURI(nil, "file://"+dir, onnxrt.Options{}), Backoff{})
	lease, err := l.Acquire(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	preds, err := lease.Classify(modeltest.JPEG(t, modeltest.Solid(modeltest.Blue, 20, 20)), 1)
	if err != nil || preds[0].Label != "blue" || lease.Metadata().Version != "v7" {
		t.Errorf("Classify = %v, %v (version %s)", preds, err, lease.Metadata().Version)
	}
	lease.Release()
	if err := l.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
}

func TestLazyReplace(t *testing.T) {
	var closed sync.Map
	a, b, loaded := fakeClassifier(), fakeClassifier(), fakeClassifier()
	release := make(chan struct{})
	l := NewLazy(func(context.Context) (*onnxrt.Classifier, error) {
		<-release
		return loaded, nil
	}, Backoff{})
	l.slot.closeFn = func(c *onnxrt.Classifier) { closed.Store(c, true) }
	first := make(chan *Lease)
	go func() { // a slow first load
		lease, _ := l.Acquire(context.Background())
		first <- lease
	}()
	for l.Loads() == 0 {
		time.Sleep(time.Millisecond)
	}
	l.Replace(a) // hot reload wins over the load in progress
	close(release)
	if lease := <-first; lease == nil || lease.Classifier != a {
		t.Errorf("the loading request got %v, want the replacement", lease)
	} else {
		lease.Release()
	}
	for {
		if _, ok := closed.Load(loaded); ok {
			break
		}
		time.Sleep(time.Millisecond)
	}
	lease, err := l.Acquire(t.Context())
	if err != nil || lease.Classifier != a {
		t.Fatalf("Acquire = %v, %v; want the replacement", lease, err)
	}
	done := l.Replace(b)
	if _, ok := closed.Load(a); ok {
		t.Fatal("replaced classifier closed while leased")
	}
	lease.Release()
	<-done
	if _, ok := closed.Load(a); !ok {
		t.Fatal("replaced classifier not closed after its lease")
	}
	if lease, _ := l.Acquire(t.Context()); lease.Classifier != b {
		t.Fatal("Acquire after Replace did not return the new classifier")
	}
}
