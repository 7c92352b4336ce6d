package blob

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
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
	r, err := g.obj(key).NewReader(ctx)
	if err != nil {
		return nil, Attrs{}, g.wrap("opening", key, err)
	}
	defer r.Close()
	a := Attrs{Key: key, Size: r.Attrs.Size, Generation: r.Attrs.Generation, ContentType: r.Attrs.ContentType, Updated: r.Attrs.LastModified}
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

// List implements Store.
func (g *GCS) List(ctx context.Context, prefix string) ([]Attrs, error) {
	it := g.client.Bucket(g.bucket).Objects(ctx, &storage.Query{Prefix: g.prefix + prefix})
	var out []Attrs
	for {
		a, err := it.Next()
		if errors.Is(err, iterator.Done) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("listing %s: %w", g.URI(prefix), err)
		}
		if strings.HasSuffix(a.Name, "/") { // folder placeholders made by consoles
			continue
		}
		out = append(out, g.attrs(strings.TrimPrefix(a.Name, g.prefix), a))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// Delete implements Store.
func (g *GCS) Delete(ctx context.Context, key string) error {
	if err := g.obj(key).Delete(ctx); err != nil {
		return g.wrap("deleting", key, err)
	}
	return nil
}

func (g *GCS) attrs(key string, a *storage.ObjectAttrs) Attrs {
	return Attrs{Key: key, Size: a.Size, Generation: a.Generation, ContentType: a.ContentType, Metadata: a.Metadata, Updated: a.Updated}
}

// wrap maps storage errors onto the package's sentinel errors, keeping the
// original for transient-versus-permanent decisions by callers.
func (g *GCS) wrap(step, key string, err error) error {
	var ge *googleapi.Error
	switch {
	case errors.Is(err, storage.ErrObjectNotExist):
		return fmt.Errorf("%s %s: %w", step, g.URI(key), errors.Join(ErrNotFound, err))
	case errors.As(err, &ge) && ge.Code == http.StatusPreconditionFailed:
		return fmt.Errorf("%s %s: %w", step, g.URI(key), errors.Join(ErrPrecondition, err))
	case errors.As(err, &ge) && ge.Code == http.StatusNotFound:
		return fmt.Errorf("%s %s: %w", step, g.URI(key), errors.Join(ErrNotFound, err))
	}
	return fmt.Errorf("%s %s: %w", step, g.URI(key), err)
}

// IsTransient reports whether err is worth retrying: a server-side or
// throttling answer from the storage service, or a network failure. Missing
// objects, failed preconditions and size-limit refusals are permanent.
func IsTransient(err error) bool {
	if err == nil || errors.Is(err, ErrNotFound) || errors.Is(err, ErrPrecondition) || errors.Is(err, ErrTooLarge) {
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
