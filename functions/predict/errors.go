package predict

import (
	"context"
	"errors"

	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/shared/modelsource"
	"github.com/orchard-mlops/orchard/shared/preprocess"
)

// Error kinds, used in responses, result files, logs and the errors metric.
const (
	KindCorrupt          = "corrupt"            // undecodable image
	KindUnsupported      = "unsupported_format" // not JPEG, PNG or WebP
	KindTooLarge         = "too_large"          // bytes or pixels over the limits
	KindNotFound         = "not_found"          // object gone
	KindForbidden        = "forbidden"          // no access to the object
	KindBadRequest       = "bad_request"        // malformed request or URI
	KindStorage          = "storage"            // transient storage failure
	KindModelUnavailable = "model_unavailable"  // no model loaded yet
	KindPublish          = "publish"            // Pub/Sub publish failed
	KindOverloaded       = "overloaded"         // no room in the decode memory budget in time; retry later
	KindCancelled        = "cancelled"          // the client went away before the image was decoded
	KindInternal         = "internal"           // anything else
)

// ErrorKind sorts an error into one of the kinds above (or "" for nil),
// for answers, result files, logs and metrics.
func ErrorKind(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, preprocess.ErrCorrupt):
		return KindCorrupt
	case errors.Is(err, preprocess.ErrUnsupportedFormat):
		return KindUnsupported
	case errors.Is(err, preprocess.ErrTooLarge), errors.Is(err, blob.ErrTooLarge):
		return KindTooLarge
	case errors.Is(err, blob.ErrNotFound):
		return KindNotFound
	case errors.Is(err, blob.ErrForbidden):
		return KindForbidden
	case errors.Is(err, errBadRequest):
		return KindBadRequest
	case modelsource.IsUnavailable(err):
		return KindModelUnavailable
	case errors.Is(err, ErrOverloaded):
		return KindOverloaded
	case blob.IsTransient(err):
		return KindStorage
	case errors.Is(err, context.Canceled):
		return KindCancelled
	}
	return KindInternal
}

var errBadRequest = errors.New("bad request")

// Permanent reports whether retrying cannot help. A forbidden read is
// treated as transient: it is a deployment problem (IAM) that, once fixed,
// lets retried events succeed.
func Permanent(kind string) bool {
	switch kind {
	case KindCorrupt, KindUnsupported, KindTooLarge, KindNotFound:
		return true
	}
	return false
}

// PublicMessage is what a client may see of an error: image errors carry a
// safe detail; storage errors name the object; internal errors say nothing
// of the process.
func PublicMessage(err error) string {
	var pe *preprocess.Error
	if errors.As(err, &pe) {
		return pe.Kind.Error() + ": " + pe.Detail
	}
	if ErrorKind(err) == KindInternal {
		return "internal error"
	}
	return err.Error()
}
