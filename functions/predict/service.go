package predict

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/orchard-mlops/orchard/functions/telemetry"
	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/shared/model"
	"github.com/orchard-mlops/orchard/shared/modelsource"
	"github.com/orchard-mlops/orchard/shared/onnxrt"
	"github.com/orchard-mlops/orchard/shared/results"
	"github.com/orchard-mlops/orchard/shared/signals"
)

// Service is the prediction core, free of any transport: it leases the
// served model and classifies batches of sources on a bounded worker pool,
// within the process's decode memory budget, recording one metric per
// image and sorting every failure into an error kind (errors.go). The
// Predict HTTP function (http.go), folder evaluation (evaluate.go) and
// PredictOnUpload (upload.go) are thin layers over it.
type Service struct {
	// Config is used as it is: build it with DefaultConfig or
	// ConfigFromEnv.
	Config   Config
	Provider modelsource.Provider
	// Storage opens the buckets object sources name; nil refuses them.
	Storage Buckets
	// Budget bounds the memory of concurrent decodes (one per process);
	// nil admits every decode.
	Budget  *DecodeBudget
	Metrics *telemetry.Metrics
	Log     *slog.Logger
}

// Source is one image to classify: bytes in hand (Data), an object to read
// (Object), or a failure already known (Err), such as a URI refused before
// any read, which is reported in its place.
type Source struct {
	Data []byte
	// Object is read with its Generation (0: the live object). A Size
	// the caller was told (an event's) over Config.MaxImageBytes is
	// refused before any byte is read.
	Object *blob.Attrs
	Err    error
}

// Buckets opens the store a gs:// URI names; *blob.Opener is the
// production one (one storage client per process).
type Buckets interface {
	Open(ctx context.Context, uri string) (blob.Store, error)
}

// gsObject names generation gen of gs://bucket/name as an object source.
func gsObject(bucket, name string, gen, size int64) *blob.Attrs {
	return &blob.Attrs{Bucket: bucket, Key: name, URI: "gs://" + bucket + "/" + name, Generation: gen, Size: size}
}

// Classification is what became of one Source.
type Classification struct {
	Predictions []model.Prediction // by descending score; nil on failure
	Signals     results.Signals    // the drift signals; empty on failure
	Err         error              // why not; ErrorKind sorts it
	Size        int64              // the object's size as read (objects only)
	Latency     time.Duration      // reading, decoding and classifying
}

// Kind is the failure's kind, "" on success.
func (c Classification) Kind() string { return ErrorKind(c.Err) }

// Options apply to one Classify call.
type Options struct {
	TopK int    // predictions per image
	Via  string // the metrics' source attribute ("http", "upload")
}

func (s *Service) log() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.Default()
}

// errNoModel: a Service without a Provider.
var errNoModel = errors.New("no model configured")

// Acquire leases the served model for one batch; release the lease after.
// Its errors are of kind model_unavailable.
func (s *Service) Acquire(ctx context.Context) (*modelsource.Lease, error) {
	if s.Provider == nil {
		return nil, &modelsource.UnavailableError{Err: errNoModel, RetryAfter: DefaultRetryAfter}
	}
	return s.Provider.Acquire(ctx)
}

// Classify classifies srcs with c, at most Config.Workers at a time, and
// returns their classifications in the same order. A source whose caller
// has gone (ctx done) is neither read nor decoded.
func (s *Service) Classify(ctx context.Context, c *onnxrt.Classifier, srcs []Source, o Options) []Classification {
	out := make([]Classification, len(srcs))
	if len(srcs) == 1 {
		out[0] = s.classifyOne(ctx, c, srcs[0], o)
		return out
	}
	next := make(chan int)
	var wg sync.WaitGroup
	for range max(1, min(s.Config.Workers, len(srcs))) {
		wg.Go(func() {
			for i := range next {
				out[i] = s.classifyOne(ctx, c, srcs[i], o)
			}
		})
	}
	for i := range srcs {
		next <- i
	}
	close(next)
	wg.Wait()
	return out
}

// classifyOne reads (if need be), decodes and classifies one source, and
// records it in the metrics.
func (s *Service) classifyOne(ctx context.Context, c *onnxrt.Classifier, src Source, o Options) (res Classification) {
	start := time.Now()
	defer func() {
		if p := recover(); p != nil {
			res = Classification{Err: &panicError{v: p}}
			s.log().ErrorContext(ctx, "predict: panic in a batch job", "panic", fmt.Sprint(p))
		}
		res.Latency = time.Since(start)
		s.record(ctx, c, o.Via, res)
	}()
	if src.Err != nil {
		return Classification{Err: src.Err}
	}
	if err := ctx.Err(); err != nil {
		return Classification{Err: fmt.Errorf("before reading the image: %w", err)} // the caller left: do no more work for it
	}
	data := src.Data
	if src.Object != nil {
		var err error
		if data, res.Size, err = s.read(ctx, *src.Object); err != nil {
			res.Err = err
			return res
		}
	}
	var st signals.Stats
	res.Predictions, st, res.Err = s.decodeAndClassify(ctx, c, data, o.TopK)
	if res.Err == nil {
		res.Signals.Input = &st
		if b := c.Baseline(); b != nil {
			ood := b.Check(st, res.Predictions[0].Score)
			res.Signals.OOD = &ood
		}
	}
	return res
}

// read reads an object source within Config.MaxImageBytes and
// Config.StorageTimeout.
func (s *Service) read(ctx context.Context, o blob.Attrs) ([]byte, int64, error) {
	maxBytes := s.Config.MaxImageBytes
	if o.Size > maxBytes {
		return nil, 0, fmt.Errorf("%s is %d bytes, limit %d: %w", o.URI, o.Size, maxBytes, blob.ErrTooLarge)
	}
	if s.Storage == nil {
		return nil, 0, fmt.Errorf("reading %s: this deployment cannot read objects: %w", o.URI, errBadRequest)
	}
	ctx, cancel := context.WithTimeout(ctx, s.Config.StorageTimeout)
	defer cancel()
	st, err := s.Storage.Open(ctx, "gs://"+o.Bucket)
	if err != nil {
		return nil, 0, err
	}
	data, info, err := st.ReadGeneration(ctx, o.Key, o.Generation, maxBytes)
	return data, info.Size, err
}

// decodeAndClassify runs one image. Before decoding, it reserves the
// image's estimated decode memory in the budget (waiting for room, or
// failing with ErrOverloaded, or with ctx's error when the caller left),
// and gives it back after.
func (s *Service) decodeAndClassify(ctx context.Context, c *onnxrt.Classifier, img []byte, k int) ([]model.Prediction, signals.Stats, error) {
	cost, err := c.Metadata().Preprocessing.DecodeCost(img, s.Config.Limits())
	if err != nil {
		return nil, signals.Stats{}, err // the header alone already says why not
	}
	release, err := s.Budget.admit(ctx, cost)
	if err != nil {
		return nil, signals.Stats{}, err
	}
	defer release()
	return safeClassify(c, img, k)
}

// safeClassify turns a panic in decoding or inference into an error: no
// input may take the process down.
func safeClassify(c *onnxrt.Classifier, img []byte, k int) (preds []model.Prediction, st signals.Stats, err error) {
	defer func() {
		if r := recover(); r != nil {
			preds, err = nil, &panicError{v: r}
		}
	}()
	return c.ClassifyStats(img, k)
}

type panicError struct{ v any }

func (p *panicError) Error() string { return "classification panicked" }

// record counts one image in the metrics.
func (s *Service) record(ctx context.Context, c *onnxrt.Classifier, via string, res Classification) {
	if res.Err != nil {
		s.Metrics.Error(ctx, via, ErrorKind(res.Err))
		return
	}
	if len(res.Predictions) > 0 {
		s.Metrics.Prediction(ctx, via, res.Predictions[0].Label, c.Metadata().Version, res.Latency)
	}
}
