package stack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/shared/results"
)

// Result is a PredictOnUpload result object as the stack found it.
type Result struct {
	results.Upload
	// Object is where the result is stored (gs://results/NAME.json).
	Object string `json:"-"`
}

// WaitResults polls the results bucket until every upload name has a result
// (NAME.json) or a recorded failure (NAME.error.json), or ctx ends. It calls
// progress (if set) for each result as it appears. It returns what it
// found; the error says which names are missing.
func (s *Stack) WaitResults(ctx context.Context, names []string, progress func(Result)) (map[string]Result, error) {
	got := map[string]Result{}
	bkt := blob.NewGCS(s.Storage, s.Config.ResultsBucket, "")
	for {
		for _, n := range names {
			if _, ok := got[n]; ok {
				continue
			}
			for _, suffix := range []string{results.ResultSuffix, results.ErrorSuffix} {
				r, err := readResult(ctx, bkt, n+suffix)
				if errors.Is(err, blob.ErrNotFound) {
					continue
				}
				if err != nil {
					if ctx.Err() != nil {
						break
					}
					return got, err
				}
				r.Object = bkt.URI(n + suffix)
				got[n] = r
				if progress != nil {
					progress(r)
				}
				break
			}
		}
		if len(got) == len(names) {
			return got, nil
		}
		select {
		case <-ctx.Done():
			var missing []string
			for _, n := range names {
				if _, ok := got[n]; !ok {
					missing = append(missing, n)
				}
			}
			return got, fmt.Errorf("%d of %d uploads have no result (%v): %v", len(missing), len(names), ctx.Err(), missing)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func readResult(ctx context.Context, b blob.Store, key string) (Result, error) {
	var r Result
	data, _, err := b.Read(ctx, key, 1<<20)
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return r, fmt.Errorf("result %s: %w", key, err)
	}
	return r, nil
}

// Upload writes data into the uploads bucket.
func (s *Stack) Upload(ctx context.Context, name, contentType string, data []byte) error {
	_, err := blob.NewGCS(s.Storage, s.Config.UploadsBucket, "").Write(ctx, name, data, blob.WriteOptions{ContentType: contentType})
	if err != nil {
		return fmt.Errorf("upload %s: %w", name, err)
	}
	return nil
}
