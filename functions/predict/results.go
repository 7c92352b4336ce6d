package predict

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/shared/model"
)

// Result-object metadata keys. SourceGenerationKey is the idempotency key:
// together with the result's name (the source object's name) it identifies
// bucket/name#generation.
const (
	SourceGenerationKey = "orchard-source-generation"
	SourceBucketKey     = "orchard-source-bucket"
	SourceNameKey       = "orchard-source-name"
)

// Suffixes of the objects written into the results bucket.
const (
	ResultSuffix = ".json"
	ErrorSuffix  = ".error.json"
)

// UploadResult is the content of <name>.json and <name>.error.json in the
// results bucket, and of the Pub/Sub message.
type UploadResult struct {
	Bucket      string             `json:"bucket"`
	Name        string             `json:"name"`
	Generation  int64              `json:"generation,string"`
	URI         string             `json:"uri"`
	ContentType string             `json:"content_type,omitempty"`
	Size        int64              `json:"size,omitempty"`
	Model       *modelInfo         `json:"model,omitempty"`
	Label       string             `json:"label,omitempty"` // top-1
	Score       float64            `json:"score,omitempty"`
	Predictions []model.Prediction `json:"predictions,omitempty"`
	Error       string             `json:"error,omitempty"`
	Kind        string             `json:"kind,omitempty"`
	LatencyMS   float64            `json:"latency_ms"`
	EventID     string             `json:"event_id,omitempty"`
	EventTime   *time.Time         `json:"event_time,omitempty"`
	Time        time.Time          `json:"time"` // when the result was made
}

// Results is the results bucket, written so that each source object
// generation gets exactly one result (see the package documentation),
// whoever writes it and however often.
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
	if n, ok := a.Metadata[SourceNameKey]; ok && n != name {
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
	g, _ := strconv.ParseInt(a.Metadata[SourceGenerationKey], 10, 64)
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
func (r *Results) WriteOnce(ctx context.Context, key string, res *UploadResult) (Outcome, error) {
	data, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return "", fmt.Errorf("encoding the result: %w", err)
	}
	opts := blob.WriteOptions{
		ContentType: "application/json",
		Metadata: map[string]string{
			SourceGenerationKey: strconv.FormatInt(res.Generation, 10),
			SourceBucketKey:     res.Bucket,
			SourceNameKey:       res.Name,
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
func (r *Results) Stored(ctx context.Context, key string) (*UploadResult, error) {
	ctx, cancel := context.WithTimeout(ctx, r.Timeout)
	defer cancel()
	data, _, err := r.Store.Read(ctx, key, 1<<20)
	if errors.Is(err, blob.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var res UploadResult
	if err := json.Unmarshal(data, &res); err != nil {
		return nil, fmt.Errorf("%s is %w: %v", r.Store.URI(key), errNotAResult, err)
	}
	return &res, nil
}
