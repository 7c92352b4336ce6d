package predict

import (
	"context"
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
	KindOverloaded       = "overloaded"         // no room in the decode memory budget in time; retry later
	KindCancelled        = "cancelled"          // the client went away before the image was decoded
	KindInternal         = "internal"           // anything else
)

// ErrorKind classifies an error (one of the Kind constants), as responses,
// result files and metrics do.
func ErrorKind(err error) string { return errorKind(err) }

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
	case KindModelUnavailable, KindOverloaded, KindCancelled:
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

// classify runs one image and times it. Before decoding, it reserves the
// image's estimated decode memory in budget (waiting for room, or failing
// with ErrOverloaded, or with ctx's error when the caller left), and gives
// it back after.
func classify(ctx context.Context, budget *DecodeBudget, lim preprocess.Limits, c *model.Classifier, img []byte, k int) classified {
	start := time.Now()
	out := func(preds []model.Prediction, err error) classified {
		return classified{preds: preds, err: err, latency: time.Since(start)}
	}
	cost, err := c.Metadata().Preprocessing.DecodeCost(img, lim)
	if err != nil {
		return out(nil, err) // the header alone already says why not
	}
	release, err := budget.admit(ctx, cost)
	if err != nil {
		return out(nil, err)
	}
	defer release()
	return out(safeClassify(c, img, k))
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
