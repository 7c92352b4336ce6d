package predict

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/shared/results"
)

// Results is the results bucket, written so that each source object
// generation gets exactly one result (see the package documentation),
// whoever writes it and however often. The schema is shared/results'.
type Results struct {
	Store   blob.Store
	Timeout time.Duration // bound on each storage call
}

// Lookup says what the bucket holds under key for generation gen of the
// source object name: OutcomeDuplicate (a result of gen), OutcomeStale (of
// a newer generation), OutcomeCollision (another object's result file), or
// "" (none, or an older generation's, whose attributes it returns).
func (r *Results) Lookup(ctx context.Context, key, name string, gen int64) (Outcome, blob.Attrs, error) {
	ctx, cancel := context.WithTimeout(ctx, r.Timeout)
	defer cancel()
	a, err := r.Store.Attributes(ctx, key)
	if errors.Is(err, blob.ErrNotFound) {
		return "", a, nil
	}
	if err != nil {
		return "", a, fmt.Errorf("checking for an existing result: %w", err)
	}
	if n, ok := a.Metadata[results.SourceNameKey]; ok && n != name {
		return OutcomeCollision, a, nil
	}
	switch g := sourceGeneration(a); {
	case g == gen:
		return OutcomeDuplicate, a, nil
	case g > gen:
		return OutcomeStale, a, nil
	}
	return "", a, nil
}

func sourceGeneration(a blob.Attrs) int64 {
	g, _ := strconv.ParseInt(a.Metadata[results.SourceGenerationKey], 10, 64)
	return g
}

// WriteOnce writes res (describing res.Bucket/res.Name#res.Generation)
// under key so that each source generation gets exactly one result,
// however many times and however concurrently it is written:
//
//   - create the object only if it does not exist;
//   - if it exists, its metadata names the source generation it describes:
//     the same generation means a duplicate (no-op); a newer one means this
//     write is stale (no-op: never replace a newer result with an older
//     one); an older one is replaced, conditional on the result generation
//     that was read, so of two racing writers exactly one wins and the other
//     re-reads and finds a duplicate.
//
// It returns OutcomeWritten, or what Lookup found instead.
func (r *Results) WriteOnce(ctx context.Context, key string, res *results.Upload) (Outcome, error) {
	data, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return "", fmt.Errorf("encoding the result: %w", err)
	}
	opts := blob.WriteOptions{
		ContentType: "application/json",
		Metadata: map[string]string{
			results.SourceGenerationKey: strconv.FormatInt(res.Generation, 10),
			results.SourceBucketKey:     res.Bucket,
			results.SourceNameKey:       res.Name,
		},
		IfNotExist: true,
	}
	const attempts = 5
	for range attempts {
		wctx, cancel := context.WithTimeout(ctx, r.Timeout)
		_, err := r.Store.Write(wctx, key, append(data, '\n'), opts)
		cancel()
		if err == nil {
			return OutcomeWritten, nil
		}
		if !errors.Is(err, blob.ErrPrecondition) {
			return "", fmt.Errorf("writing the result: %w", err)
		}
		o, a, err := r.Lookup(ctx, key, res.Name, res.Generation)
		switch {
		case err != nil:
			return "", err
		case o != "":
			return o, nil
		}
		if a.Generation == 0 { // deleted meanwhile: create again
			opts.IfNotExist, opts.IfGenerationMatch = true, 0
		} else {
			opts.IfNotExist, opts.IfGenerationMatch = false, a.Generation
		}
	}
	return "", fmt.Errorf("writing %s: still contended after %d attempts: %w", r.Store.URI(key), attempts, blob.ErrPrecondition)
}

// errNotAResult: what is stored under a result's name does not decode.
var errNotAResult = errors.New("not a result")

// Stored reads the result under key; nil (and no error) when there is
// none.
func (r *Results) Stored(ctx context.Context, key string) (*results.Upload, error) {
	ctx, cancel := context.WithTimeout(ctx, r.Timeout)
	defer cancel()
	data, _, err := r.Store.Read(ctx, key, 1<<20)
	if errors.Is(err, blob.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var res results.Upload
	if err := json.Unmarshal(data, &res); err != nil {
		return nil, fmt.Errorf("%s is %w: %v", r.Store.URI(key), errNotAResult, err)
	}
	return &res, nil
}
