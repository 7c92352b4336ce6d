package predict

import (
	"errors"
	"net/http"
	"time"

	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/shared/model"
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
	KindInternal         = "internal"           // anything else
)

// errorKind classifies an error for responses and metrics.
func errorKind(err error) string {
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
	case errors.Is(err, ErrForbidden):
		return KindForbidden
	case errors.Is(err, errBadRequest):
		return KindBadRequest
	case modelsource.IsUnavailable(err):
		return KindModelUnavailable
	case blob.IsTransient(err):
		return KindStorage
	}
	return KindInternal
}

var errBadRequest = errors.New("bad request")

// statusFor maps an error kind to the HTTP status of a single-image answer.
func statusFor(kind string) int {
	switch kind {
	case KindCorrupt, KindBadRequest, KindUnsupported:
		// The declared content type was acceptable (checked earlier, 415),
		// the bytes are not an image of it.
		return http.StatusBadRequest
	case KindTooLarge:
		return http.StatusRequestEntityTooLarge
	case KindNotFound:
		return http.StatusNotFound
	case KindForbidden:
		return http.StatusForbidden
	case KindModelUnavailable:
		return http.StatusServiceUnavailable
	case KindStorage:
		return http.StatusBadGateway
	}
	return http.StatusInternalServerError
}

// publicMessage is what a client may see of an error: image errors carry a
// safe detail; storage errors name the object; internal errors say nothing
// of the process.
func publicMessage(err error) string {
	var pe *preprocess.Error
	if errors.As(err, &pe) {
		return pe.Kind.Error() + ": " + pe.Detail
	}
	if errorKind(err) == KindInternal {
		return "internal error"
	}
	return err.Error()
}

// classified is one image's outcome.
type classified struct {
	preds   []model.Prediction
	err     error
	latency time.Duration
}

// classify runs one image and times it.
func classify(c *model.Classifier, img []byte, k int) classified {
	start := time.Now()
	preds, err := safeClassify(c, img, k)
	return classified{preds: preds, err: err, latency: time.Since(start)}
}

// safeClassify turns a panic in decoding or inference into an error: no
// input may take the process down.
func safeClassify(c *model.Classifier, img []byte, k int) (preds []model.Prediction, err error) {
	defer func() {
		if r := recover(); r != nil {
			preds, err = nil, &panicError{v: r}
		}
	}()
	return c.Classify(img, k)
}

type panicError struct{ v any }

func (p *panicError) Error() string { return "classification panicked" }
