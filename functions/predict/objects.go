package predict

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path"
	"strings"

	"cloud.google.com/go/storage"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/iterator"

	"github.com/orchard-mlops/orchard/shared/blob"
)

// ObjectInfo describes a source object.
type ObjectInfo struct {
	Bucket      string
	Name        string
	Generation  int64
	Size        int64
	ContentType string
}

// URI is gs://bucket/name.
func (o ObjectInfo) URI() string { return "gs://" + o.Bucket + "/" + o.Name }

// Objects reads source images from any bucket. Errors wrap blob's sentinel
// errors (blob.ErrNotFound, blob.ErrTooLarge), so blob.IsTransient decides
// between retrying and giving up.
//
// It exists beside blob.Store because the functions need two things Store
// does not offer yet: reading one exact generation (an event names a
// generation; the live object may already be a newer one) and a listing
// that stops at a limit instead of materialising a whole bucket.
type Objects interface {
	// Read returns the object's bytes. generation 0 reads the live object.
	// Objects larger than maxBytes are refused with blob.ErrTooLarge before
	// any byte is read, and no more than maxBytes+1 bytes are ever read.
	Read(ctx context.Context, bucket, name string, generation, maxBytes int64) ([]byte, ObjectInfo, error)
	// List returns objects below prefix in name order, calling keep on each
	// and stopping with ErrTooMany once more than limit were kept or more
	// than scanLimit were looked at.
	List(ctx context.Context, bucket, prefix string, keep func(ObjectInfo) bool, limit, scanLimit int) ([]ObjectInfo, error)
}

// ErrTooMany means a listing went past its limit.
var ErrTooMany = errors.New("too many objects")

// GCSObjects is Objects over a storage client.
type GCSObjects struct{ Client *storage.Client }

// Read implements Objects.
func (g GCSObjects) Read(ctx context.Context, bucket, name string, generation, maxBytes int64) ([]byte, ObjectInfo, error) {
	o := g.Client.Bucket(bucket).Object(name)
	if generation > 0 {
		o = o.Generation(generation)
	}
	info := ObjectInfo{Bucket: bucket, Name: name, Generation: generation}
	r, err := o.NewReader(ctx)
	if err != nil {
		return nil, info, wrapStorage("opening", info.URI(), err)
	}
	defer r.Close()
	info.Size, info.ContentType = r.Attrs.Size, r.Attrs.ContentType
	if r.Attrs.Generation != 0 {
		info.Generation = r.Attrs.Generation
	}
	b, err := blob.ReadCapped(r, info.Size, maxBytes)
	if err != nil {
		return nil, info, wrapStorage("reading", info.URI(), err)
	}
	return b, info, nil
}

// List implements Objects.
func (g GCSObjects) List(ctx context.Context, bucket, prefix string, keep func(ObjectInfo) bool, limit, scanLimit int) ([]ObjectInfo, error) {
	it := g.Client.Bucket(bucket).Objects(ctx, &storage.Query{Prefix: prefix})
	var out []ObjectInfo
	scanned := 0
	for {
		a, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return out, nil
		}
		if err != nil {
			return nil, wrapStorage("listing", "gs://"+bucket+"/"+prefix, err)
		}
		if scanned++; scanLimit > 0 && scanned > scanLimit {
			return nil, fmt.Errorf("gs://%s/%s holds more than %d objects: %w", bucket, prefix, scanLimit, ErrTooMany)
		}
		if strings.HasSuffix(a.Name, "/") {
			continue // folder placeholder
		}
		oi := ObjectInfo{Bucket: bucket, Name: a.Name, Generation: a.Generation, Size: a.Size, ContentType: a.ContentType}
		if keep != nil && !keep(oi) {
			continue
		}
		if len(out) == limit {
			return nil, fmt.Errorf("gs://%s/%s holds more than %d images: %w", bucket, prefix, limit, ErrTooMany)
		}
		out = append(out, oi)
	}
}

// wrapStorage maps storage errors onto blob's sentinels, keeping the
// original for IsTransient.
func wrapStorage(step, uri string, err error) error {
	var ge *googleapi.Error
	switch {
	case errors.Is(err, storage.ErrObjectNotExist), errors.Is(err, storage.ErrBucketNotExist):
		return fmt.Errorf("%s %s: %w", step, uri, errors.Join(blob.ErrNotFound, err))
	case errors.As(err, &ge) && ge.Code == http.StatusNotFound:
		return fmt.Errorf("%s %s: %w", step, uri, errors.Join(blob.ErrNotFound, err))
	case errors.As(err, &ge) && ge.Code == http.StatusPreconditionFailed:
		return fmt.Errorf("%s %s: %w", step, uri, errors.Join(blob.ErrPrecondition, err))
	case errors.As(err, &ge) && (ge.Code == http.StatusForbidden || ge.Code == http.StatusUnauthorized):
		return fmt.Errorf("%s %s: %w", step, uri, errors.Join(ErrForbidden, err))
	}
	return fmt.Errorf("%s %s: %w", step, uri, err)
}

// ErrForbidden means the function's identity may not read the object.
var ErrForbidden = errors.New("access denied")

// imageExtensions are what a prefix listing treats as images when an
// object's content type does not say.
var imageExtensions = map[string]bool{".jpg": true, ".jpeg": true, ".png": true, ".webp": true}

// LooksLikeImage decides from name and content type whether a listed
// object is worth classifying (the bytes are sniffed anyway): Predict's
// prefix mode and the batch job take the same objects.
func LooksLikeImage(o ObjectInfo) bool {
	if strings.HasPrefix(o.ContentType, "image/") {
		return true
	}
	return imageExtensions[strings.ToLower(path.Ext(o.Name))]
}
