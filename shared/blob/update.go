package blob

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// Current is what an Update round found stored under its key.
type Current struct {
	Attrs Attrs  // from Attributes: generation, metadata
	Data  []byte // the bytes of exactly that generation, if UpdateOptions.Data
}

// Change is what an Update round writes. Update adds the precondition.
type Change struct {
	Data        []byte
	ContentType string
	Metadata    map[string]string
}

// UpdateOptions tune an Update.
type UpdateOptions struct {
	// Data reads the current bytes too (capped at MaxBytes, <= 0: no cap);
	// otherwise a round reads attributes only.
	Data     bool
	MaxBytes int64
	// AssumeAbsent starts with a create (next(nil)) instead of a read: one
	// call fewer for objects that usually do not exist yet.
	AssumeAbsent bool
	// CallTimeout bounds each storage call (0: only ctx bounds them).
	CallTimeout time.Duration
}

// UpdateAttempts bounds the rounds of one Update. Every round has a
// winner, so this runs out only under extreme contention.
const UpdateAttempts = 64

// Update is the one compare-and-swap loop over a Store: read the object
// (cur is nil when it does not exist), let next decide what to write, and
// write it under IfGenerationMatch (IfNotExist when absent), so of racing
// updaters exactly one wins each round; the losers back off a little
// (jittered) and start over from a fresh read. next returning a nil Change
// leaves the object as it is and ends the loop; an error from next ends it
// with that error. wrote tells whether this call's write won; attrs are the
// written object's. After UpdateAttempts lost rounds the error is
// ErrPrecondition.
func Update(ctx context.Context, st Store, key string, o UpdateOptions, next func(cur *Current) (*Change, error)) (attrs Attrs, wrote bool, err error) {
	blind := o.AssumeAbsent // this round writes without having read
	for attempt := range UpdateAttempts {
		var cur *Current
		if !blind {
			cur, err = o.current(ctx, st, key)
			if errors.Is(err, errReplaced) {
				continue // written between the two reads: a lost round
			}
			if err != nil {
				return Attrs{}, false, err
			}
		}
		ch, err := next(cur)
		if err != nil || ch == nil {
			return Attrs{}, false, err
		}
		wo := WriteOptions{ContentType: ch.ContentType, Metadata: ch.Metadata, IfNotExist: cur == nil}
		if cur != nil {
			wo.IfGenerationMatch = cur.Attrs.Generation
		}
		a, err := o.call(ctx, func(ctx context.Context) (Attrs, error) { return st.Write(ctx, key, ch.Data, wo) })
		if err == nil {
			return a, true, nil
		}
		if !errors.Is(err, ErrPrecondition) {
			return Attrs{}, false, err
		}
		if !blind { // a lost blind create only means the object exists: read it now
			if err := backoff(ctx, attempt); err != nil {
				return Attrs{}, false, err
			}
		}
		blind = false
	}
	return Attrs{}, false, fmt.Errorf("updating %s: %d rounds lost to concurrent writers: %w", st.URI(key), UpdateAttempts, ErrPrecondition)
}

// errReplaced: the generation Attributes saw was replaced before its bytes
// were read.
var errReplaced = errors.New("replaced while reading")

// current reads the object's attributes and, if asked, the bytes of that
// same generation, so next sees one consistent version. nil: absent.
func (o UpdateOptions) current(ctx context.Context, st Store, key string) (*Current, error) {
	a, err := o.call(ctx, func(ctx context.Context) (Attrs, error) { return st.Attributes(ctx, key) })
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	cur := &Current{Attrs: a}
	if !o.Data {
		return cur, nil
	}
	_, err = o.call(ctx, func(ctx context.Context) (Attrs, error) {
		var err error
		cur.Data, _, err = st.ReadGeneration(ctx, key, a.Generation, o.MaxBytes)
		return Attrs{}, err
	})
	if errors.Is(err, ErrNotFound) {
		return nil, errReplaced
	}
	return cur, err
}

func (o UpdateOptions) call(ctx context.Context, f func(context.Context) (Attrs, error)) (Attrs, error) {
	if o.CallTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.CallTimeout)
		defer cancel()
	}
	return f(ctx)
}

// backoff sleeps a jittered few milliseconds, longer after more lost
// rounds (up to 8 x 5 ms), so racing updaters spread out.
func backoff(ctx context.Context, attempt int) error {
	d := time.Duration(rand.Int64N(int64(5*time.Millisecond))) * time.Duration(min(attempt+1, 8))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
