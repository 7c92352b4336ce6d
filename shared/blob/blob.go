// Package blob is Orchard's storage layer: one small interface, Store, over
// a flat key space that is either a GCS bucket (with an optional prefix) or
// a local directory. The trainer, the functions and the model registry use
// it so that every code path runs the same against Cloud Storage, the
// fake-gcs-server emulator and plain files. A conformance suite runs against
// every driver.
package blob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/storage"
)

// Errors returned by every driver; test with errors.Is.
var (
	ErrNotFound     = errors.New("blob: object not found")
	ErrTooLarge     = errors.New("blob: object larger than the read limit")
	ErrPrecondition = errors.New("blob: precondition failed")
)

// Attrs describes a stored object.
type Attrs struct {
	Key         string // relative to the store's root
	Size        int64
	Generation  int64 // changes on every write; 0 never names an object
	ContentType string
	Metadata    map[string]string
	Updated     time.Time
}

// WriteOptions are optional write conditions. IfNotExist and
// IfGenerationMatch make concurrent writers safe: exactly one wins and the
// others get ErrPrecondition.
type WriteOptions struct {
	ContentType       string
	Metadata          map[string]string
	IfNotExist        bool
	IfGenerationMatch int64 // 0: no condition
}

// Store is a flat key space of objects. Keys use "/" separators and are
// relative to the store's root (the bucket plus prefix, or the directory).
type Store interface {
	// Read returns the object's bytes, refusing objects larger than
	// maxBytes with ErrTooLarge before reading them (maxBytes <= 0: no cap).
	Read(ctx context.Context, key string, maxBytes int64) ([]byte, Attrs, error)
	// Write stores data under key, atomically.
	Write(ctx context.Context, key string, data []byte, opts WriteOptions) (Attrs, error)
	// Attributes returns the object's attributes without its bytes.
	Attributes(ctx context.Context, key string) (Attrs, error)
	// List returns every object whose key starts with prefix, recursively,
	// sorted by key.
	List(ctx context.Context, prefix string) ([]Attrs, error)
	// Delete removes the object; a missing object is ErrNotFound.
	Delete(ctx context.Context, key string) error
	// URI names key in the store's scheme (gs://bucket/... or file:///...).
	URI(key string) string
}

// Open returns the store a URI names: gs://bucket[/prefix], file:///dir, or
// a plain local path. GCS stores share one client made on first use, which
// honours STORAGE_EMULATOR_HOST.
func Open(ctx context.Context, uri string) (Store, error) {
	bucket, prefix, isGCS, err := Parse(uri)
	if err != nil {
		return nil, err
	}
	if !isGCS {
		return NewDir(prefix)
	}
	c, err := defaultClient(ctx)
	if err != nil {
		return nil, err
	}
	return NewGCS(c, bucket, prefix), nil
}

// Parse splits a URI into bucket and prefix (gs://) or a cleaned local path
// (file:// or plain); isGCS tells which.
func Parse(uri string) (bucket, path string, isGCS bool, err error) {
	switch {
	case strings.HasPrefix(uri, "gs://"):
		rest := strings.TrimPrefix(uri, "gs://")
		bucket, path, _ = strings.Cut(rest, "/")
		if bucket == "" {
			return "", "", false, fmt.Errorf("blob: %q names no bucket", uri)
		}
		return bucket, path, true, nil
	case strings.HasPrefix(uri, "file://"):
		u, err := url.Parse(uri)
		if err != nil {
			return "", "", false, fmt.Errorf("blob: parsing %q: %w", uri, err)
		}
		if u.Host != "" && u.Host != "localhost" {
			return "", "", false, fmt.Errorf("blob: %q: file URIs must be file:///absolute/path", uri)
		}
		return "", filepath.Clean(u.Path), false, nil
	case strings.Contains(uri, "://"):
		return "", "", false, fmt.Errorf("blob: %q: only gs://, file:// and local paths are supported", uri)
	case uri == "":
		return "", "", false, errors.New("blob: empty URI")
	}
	return "", filepath.Clean(uri), false, nil
}

var (
	clientOnce sync.Once
	client     *storage.Client
	clientErr  error
)

func defaultClient(ctx context.Context) (*storage.Client, error) {
	clientOnce.Do(func() {
		// The client outlives the caller's context, so it is made with a
		// background one.
		client, clientErr = storage.NewClient(context.WithoutCancel(ctx))
		if clientErr != nil {
			clientErr = fmt.Errorf("blob: creating the storage client: %w", clientErr)
		}
	})
	return client, clientErr
}

// Join joins key parts with "/", ignoring empty ones.
func Join(parts ...string) string {
	var out []string
	for _, p := range parts {
		if p = strings.Trim(p, "/"); p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, "/")
}

// ReadCapped reads r to its end, refusing more than maxBytes (<= 0: no
// cap) with ErrTooLarge: at once when the declared size (an object's size,
// a Content-Length; <= 0 when unknown) is over the cap, and otherwise
// without reading more than one byte past it, since a declared size is not
// to be trusted. The buffer is sized from the declared size, so a 3 MB
// photo costs one 3 MB allocation rather than io.ReadAll's doubling series.
// Read errors are returned as they are, for the caller to wrap.
func ReadCapped(r io.Reader, size, maxBytes int64) ([]byte, error) {
	if maxBytes > 0 && size > maxBytes {
		return nil, fmt.Errorf("%d bytes, limit %d: %w", size, maxBytes, ErrTooLarge)
	}
	if maxBytes > 0 {
		r = io.LimitReader(r, maxBytes+1)
	}
	var b []byte
	if size > 0 {
		// One spare byte so that reading EOF does not grow the buffer.
		b = make([]byte, 0, size+1)
	} else {
		b = make([]byte, 0, 512)
	}
	for {
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			return b, err
		}
		if len(b) == cap(b) { // the size was short or unknown: grow as io.ReadAll does
			b = append(b, 0)[:len(b)]
		}
	}
	if maxBytes > 0 && int64(len(b)) > maxBytes {
		return nil, fmt.Errorf("more than %d bytes: %w", maxBytes, ErrTooLarge)
	}
	return b, nil
}
