// Package blob is Orchard's storage layer: one small interface, Store, over
// a flat key space that is either a GCS bucket (with an optional prefix) or
// a local directory, plus a prefixed view of any store (Prefixed). The
// trainer, the functions, the model registry and the local stack use it so
// that every code path runs the same against Cloud Storage, the
// fake-gcs-server emulator and plain files. blobtest.Conformance runs
// against every driver.
//
// GCS stores are opened from one *storage.Client per process, passed in
// (NewGCS, NewOpener) or made once by a LazyOpener; the package keeps no
// client of its own.
package blob

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"net/url"
	"path/filepath"
	"strings"
	"time"
)

// Errors returned by every driver; test with errors.Is. A driver's error
// that maps onto one still matches the driver's own error too (e.g.
// storage.ErrObjectNotExist), and its message stays on one line.
var (
	ErrNotFound     = errors.New("blob: object not found")
	ErrTooLarge     = errors.New("blob: object larger than the read limit")
	ErrPrecondition = errors.New("blob: precondition failed")
	ErrForbidden    = errors.New("blob: access denied")
	// ErrTooMany: a bounded listing (Collect) went past its limit.
	ErrTooMany = errors.New("blob: too many objects")
)

// Attrs describes a stored object, fully enough to name it outside its
// store: URI and, on GCS, Bucket.
type Attrs struct {
	Key         string // relative to the store's root
	Bucket      string // the GCS bucket; "" for local files
	URI         string // gs://bucket/name or file:///path: what Store.URI(Key) returns
	Size        int64
	Generation  int64 // changes on every write; 0 never names an object
	ContentType string
	Metadata    map[string]string // set by Attributes, List and Write; Read leaves it nil
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

// ListOptions select what List yields.
type ListOptions struct {
	Prefix string // only keys that start with it
	// StartAfter yields only keys greater than it, so a listing stopped at
	// key k resumes with StartAfter: k (a page token that is just a key).
	StartAfter string
}

// Store is a flat key space of objects. Keys use "/" separators and are
// relative to the store's root (the bucket plus prefix, or the directory).
type Store interface {
	// Read returns the live object's bytes, refusing objects larger than
	// maxBytes with ErrTooLarge before reading them (maxBytes <= 0: no cap).
	Read(ctx context.Context, key string, maxBytes int64) ([]byte, Attrs, error)
	// ReadGeneration is Read of one exact generation (0: the live one): an
	// event names a generation, and the live object may already be newer.
	// A generation that is no longer stored is ErrNotFound.
	ReadGeneration(ctx context.Context, key string, generation, maxBytes int64) ([]byte, Attrs, error)
	// Write stores data under key, atomically.
	Write(ctx context.Context, key string, data []byte, opts WriteOptions) (Attrs, error)
	// Attributes returns the object's attributes without its bytes.
	Attributes(ctx context.Context, key string) (Attrs, error)
	// List streams the objects the options select, recursively, in key
	// order, fetching them page by page as the loop asks for more: a loop
	// that breaks early costs only the pages it used. A failed page ends
	// the sequence with its error.
	List(ctx context.Context, opts ListOptions) iter.Seq2[Attrs, error]
	// Delete removes the object; a missing object is ErrNotFound.
	Delete(ctx context.Context, key string) error
	// URI names key in the store's scheme (gs://bucket/... or file:///...).
	URI(key string) string
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

// classified is a driver error tagged with one of the package's sentinels.
// errors.Join would do the matching too, but its message holds a newline,
// and these messages reach HTTP JSON, logs and .error.json files.
type classified struct{ kind, err error }

func classify(kind, err error) error { return &classified{kind: kind, err: err} }

func (c *classified) Error() string   { return oneLine(c.kind.Error() + ": " + c.err.Error()) }
func (c *classified) Unwrap() []error { return []error{c.kind, c.err} }

// oneLine folds the line breaks some service errors carry (googleapi's
// "More details:" list) into spaces.
func oneLine(s string) string {
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	return strings.Join(strings.Fields(s), " ")
}
