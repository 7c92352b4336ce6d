package predict

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/orchard-mlops/orchard/shared/preprocess"
)

// DecodeBudget admits image decodes against one process-wide memory
// budget. A valid image can still be huge once decoded (a 300 KB 16-bit PNG
// of 39 MP is 312 MB of pixels), so before decoding, each image's decoded
// size is estimated from its header (preprocess.DecodeCost) and reserved
// here; decodes that do not fit wait a little, then are refused as
// overloaded (HTTP 503 with Retry-After; events are retried), so a burst of
// heavy images queues or sheds load instead of exhausting the instance.
//
// A nil *DecodeBudget admits everything.
type DecodeBudget struct {
	sem   *semaphore.Weighted
	bytes int64
	wait  time.Duration
}

// NewDecodeBudget returns a budget of bytes, on which a decode waits at
// most wait for room.
func NewDecodeBudget(bytes int64, wait time.Duration) *DecodeBudget {
	return &DecodeBudget{sem: semaphore.NewWeighted(bytes), bytes: bytes, wait: wait}
}

// Bytes is the budget's size.
func (b *DecodeBudget) Bytes() int64 { return b.bytes }

// ErrOverloaded marks a decode refused because the budget stayed full for
// the whole wait: retrying later can succeed.
var ErrOverloaded = errors.New("overloaded")

// admit reserves cost bytes and returns the function that gives them back.
// It fails with ErrOverloaded after the wait, with ctx's error when the
// caller went away first (nothing is decoded for a disconnected client),
// and with a permanent preprocess.ErrTooLarge when the image would not fit
// even in the empty budget.
func (b *DecodeBudget) admit(ctx context.Context, cost int64) (release func(), err error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("before decoding: %w", err)
	}
	if b == nil {
		return func() {}, nil
	}
	if cost > b.bytes {
		return nil, &preprocess.Error{Kind: preprocess.ErrTooLarge,
			Detail: fmt.Sprintf("decoding would take about %d MB, more than this instance's whole %d MB decode budget", cost>>20, b.bytes>>20)}
	}
	cost = max(cost, 1)
	wctx, cancel := context.WithTimeout(ctx, b.wait)
	defer cancel()
	if err := b.sem.Acquire(wctx, cost); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("waiting for decode memory: %w", ctx.Err())
		}
		return nil, fmt.Errorf("no room in the %d MB decode budget for %d MB within %v: %w", b.bytes>>20, cost>>20, b.wait, ErrOverloaded)
	}
	return func() { b.sem.Release(cost) }, nil
}

// retryAfter is what an overloaded answer tells the client to wait.
func (b *DecodeBudget) retryAfter() time.Duration {
	if b == nil {
		return time.Second
	}
	return max(time.Second, b.wait)
}
