package blob

import (
	"context"
	"errors"
	"iter"
	"net/http"
	"strings"

	"cloud.google.com/go/storage"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/iterator"
)

// GCS is a Store over a bucket and an optional key prefix.
type GCS struct {
	client *storage.Client
	bucket string
	prefix string // "" or ends with "/"
}

// NewGCS returns a store over gs://bucket/prefix.
func NewGCS(c *storage.Client, bucket, prefix string) *GCS {
	if prefix = strings.Trim(prefix, "/"); prefix != "" {
		prefix += "/"
	}
	return &GCS{client: c, bucket: bucket, prefix: prefix}
}

func (g *GCS) obj(key string) *storage.ObjectHandle {
	return g.client.Bucket(g.bucket).Object(g.prefix + key)
}

// URI implements Store.
func (g *GCS) URI(key string) string { return "gs://" + g.bucket + "/" + g.prefix + key }

// Read implements Store.
func (g *GCS) Read(ctx context.Context, key string, maxBytes int64) ([]byte, Attrs, error) {
	return g.ReadGeneration(ctx, key, 0, maxBytes)
}

// ReadGeneration implements Store.
func (g *GCS) ReadGeneration(ctx context.Context, key string, gen, maxBytes int64) ([]byte, Attrs, error) {
	o := g.obj(key)
	if gen > 0 {
		o = o.Generation(gen)
	}
	a := Attrs{Key: key, Bucket: g.bucket, URI: g.URI(key), Generation: gen}
	r, err := o.NewReader(ctx)
	if err != nil {
		return nil, a, g.wrap("opening", key, err)
	}
	defer r.Close()
	a.Size, a.ContentType, a.Updated = r.Attrs.Size, r.Attrs.ContentType, r.Attrs.LastModified
	if r.Attrs.Generation != 0 {
		a.Generation = r.Attrs.Generation
	}
	b, err := ReadCapped(r, a.Size, maxBytes)
	if err != nil {
		return nil, a, g.wrap("reading", key, err)
	}
	return b, a, nil
}

// Write implements Store.
func (g *GCS) Write(ctx context.Context, key string, data []byte, opts WriteOptions) (Attrs, error) {
	o := g.obj(key)
	switch {
	case opts.IfNotExist:
		o = o.If(storage.Conditions{DoesNotExist: true})
	case opts.IfGenerationMatch != 0:
		o = o.If(storage.Conditions{GenerationMatch: opts.IfGenerationMatch})
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // abandons the upload if Close is never reached
	w := o.NewWriter(ctx)
	w.ContentType = opts.ContentType
	w.Metadata = opts.Metadata
	// One request for small objects: a resumable upload costs round trips.
	w.ChunkSize = 0
	if _, err := w.Write(data); err != nil {
		_ = w.Close()
		return Attrs{}, g.wrap("writing", key, err)
	}
	if err := w.Close(); err != nil {
		return Attrs{}, g.wrap("writing", key, err)
	}
	return g.attrs(key, w.Attrs()), nil
}

// Attributes implements Store.
func (g *GCS) Attributes(ctx context.Context, key string) (Attrs, error) {
	a, err := g.obj(key).Attrs(ctx)
	if err != nil {
		return Attrs{}, g.wrap("stat", key, err)
	}
	return g.attrs(key, a), nil
}

// listPageSize is the objects a listing asks for per request: GCS's
// default and maximum. The client sends no maxResults unless told, and
// fake-gcs-server then returns the whole listing in one response, so a
// streamed listing held the whole prefix in memory.
const listPageSize = 1000

// List implements Store. GCS lists in name order, one page per request.
func (g *GCS) List(ctx context.Context, opts ListOptions) iter.Seq2[Attrs, error] {
	return func(yield func(Attrs, error) bool) {
		q := &storage.Query{Prefix: g.prefix + opts.Prefix}
		if opts.StartAfter != "" {
			// StartOffset is inclusive; the next name after StartAfter is
			// StartAfter plus the smallest byte.
			q.StartOffset = g.prefix + opts.StartAfter + "\x00"
		}
		it := g.client.Bucket(g.bucket).Objects(ctx, q)
		it.PageInfo().MaxSize = listPageSize
		for {
			a, err := it.Next()
			if errors.Is(err, iterator.Done) {
				return
			}
			if err != nil {
				yield(Attrs{}, g.wrap("listing", opts.Prefix, err))
				return
			}
			key := strings.TrimPrefix(a.Name, g.prefix)
			if strings.HasSuffix(a.Name, "/") || (opts.StartAfter != "" && key <= opts.StartAfter) {
				continue // folder placeholders made by consoles; servers ignoring StartOffset
			}
			if !yield(g.attrs(key, a), nil) {
				return
			}
		}
	}
}

// Delete implements Store.
func (g *GCS) Delete(ctx context.Context, key string) error {
	if err := g.obj(key).Delete(ctx); err != nil {
		return g.wrap("deleting", key, err)
	}
	return nil
}

func (g *GCS) attrs(key string, a *storage.ObjectAttrs) Attrs {
	return Attrs{Key: key, Bucket: g.bucket, URI: g.URI(key), Size: a.Size, Generation: a.Generation,
		ContentType: a.ContentType, Metadata: a.Metadata, Updated: a.Updated}
}

// wrap names the step and the object and maps storage errors onto the
// package's sentinel errors, keeping the original for transient-versus-
// permanent decisions by callers.
func (g *GCS) wrap(step, key string, err error) error {
	if kind := kindOf(err); kind != nil {
		err = classify(kind, err)
	}
	return &stepError{step: step, uri: g.URI(key), err: err}
}

func kindOf(err error) error {
	var ge *googleapi.Error
	switch {
	case errors.Is(err, ErrTooLarge):
		return nil // already one of ours
	case errors.Is(err, storage.ErrObjectNotExist), errors.Is(err, storage.ErrBucketNotExist):
		return ErrNotFound
	case !errors.As(err, &ge):
		return nil
	case ge.Code == http.StatusNotFound:
		return ErrNotFound
	case ge.Code == http.StatusPreconditionFailed:
		return ErrPrecondition
	case ge.Code == http.StatusForbidden, ge.Code == http.StatusUnauthorized:
		return ErrForbidden
	}
	return nil
}

// stepError is "step uri: err" on one line.
type stepError struct {
	step, uri string
	err       error
}

func (e *stepError) Error() string { return e.step + " " + e.uri + ": " + oneLine(e.err.Error()) }
func (e *stepError) Unwrap() error { return e.err }

// IsTransient reports whether err is worth retrying: a server-side or
// throttling answer from the storage service, or a network failure. Missing
// objects, failed preconditions, refused access and size-limit refusals are
// permanent.
func IsTransient(err error) bool {
	if err == nil || errors.Is(err, ErrNotFound) || errors.Is(err, ErrPrecondition) || errors.Is(err, ErrTooLarge) || errors.Is(err, ErrForbidden) {
		return false
	}
	if errors.Is(err, context.Canceled) {
		return false
	}
	var ge *googleapi.Error
	if errors.As(err, &ge) {
		return ge.Code == http.StatusTooManyRequests || ge.Code >= 500
	}
	return true
}
