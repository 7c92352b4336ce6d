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
// "" (none, or an older generation's).
func (r *Results) Lookup(ctx context.Context, key, name string, gen int64) (Outcome, error) {
	ctx, cancel := context.WithTimeout(ctx, r.Timeout)
	defer cancel()
	a, err := r.Store.Attributes(ctx, key)
	if errors.Is(err, blob.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("checking for an existing result: %w", err)
	}
	return outcomeOf(a, name, gen), nil
}

// outcomeOf is what the stored result a means for generation gen of the
// source object name: OutcomeCollision, OutcomeDuplicate, OutcomeStale or
// "" (an older generation's result, to be replaced).
func outcomeOf(a blob.Attrs, name string, gen int64) Outcome {
	if n, ok := a.Metadata[results.SourceNameKey]; ok && n != name {
		return OutcomeCollision
	}
	switch g := sourceGeneration(a); {
	case g == gen:
		return OutcomeDuplicate
	case g > gen:
		return OutcomeStale
	}
	return ""
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
	change := &blob.Change{
		Data:        append(data, '\n'),
		ContentType: "application/json",
		Metadata: map[string]string{
			results.SourceGenerationKey: strconv.FormatInt(res.Generation, 10),
			results.SourceBucketKey:     res.Bucket,
			results.SourceNameKey:       res.Name,
		},
	}
	outcome := OutcomeWritten
	_, _, err = blob.Update(ctx, r.Store, key, blob.UpdateOptions{AssumeAbsent: true, CallTimeout: r.Timeout},
		func(cur *blob.Current) (*blob.Change, error) {
			if cur == nil { // absent (or deleted meanwhile): create it
				return change, nil
			}
			if outcome = outcomeOf(cur.Attrs, res.Name, res.Generation); outcome != "" {
				return nil, nil // leave it
			}
			outcome = OutcomeWritten // an older generation's: replace it
			return change, nil
		})
	if err != nil {
		return "", fmt.Errorf("writing the result: %w", err)
	}
	return outcome, nil
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
