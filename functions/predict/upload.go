package predict

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"strconv"
	"strings"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"

	"github.com/orchard-mlops/orchard/shared/events"
	"github.com/orchard-mlops/orchard/shared/logging"
	"github.com/orchard-mlops/orchard/shared/onnxrt"
	"github.com/orchard-mlops/orchard/shared/results"
)

// Publisher sends a result message (PREDICTIONS_TOPIC).
type Publisher interface {
	Publish(ctx context.Context, data []byte, attrs map[string]string) error
}

// Uploader is the PredictOnUpload core.
//
// It reads the event, skips what is out of scope, classifies the object
// through the Service, and writes its result once (Results.WriteOnce).
type Uploader struct {
	*Service
	Results   *Results
	Publisher Publisher // optional
	Now       func() time.Time
}

func (u *Uploader) now() time.Time {
	if u.Now != nil {
		return u.Now()
	}
	return time.Now()
}

// Outcome says what happened to an event.
type Outcome string

// Outcomes.
const (
	OutcomeWritten   Outcome = "written"   // a result was written
	OutcomeFailed    Outcome = "failed"    // a permanent failure was recorded in .error.json
	OutcomeDuplicate Outcome = "duplicate" // this generation already has its result
	OutcomeStale     Outcome = "stale"     // a newer generation already has its result
	OutcomeSkipped   Outcome = "skipped"   // outside the configured prefixes, types or bucket
	OutcomeMalformed Outcome = "malformed" // the event cannot be read
	OutcomeRefused   Outcome = "refused"   // the configuration forbids processing
	OutcomeRetry     Outcome = "retry"     // transient failure: error returned for redelivery
	// OutcomeCollision: the result name is taken by another object's file
	// (object "a.error"'s result and object "a"'s error file are both
	// "a.error.json"). Nothing is overwritten; the event is acknowledged
	// with an error log.
	OutcomeCollision Outcome = "collision"
)

// HandleCloudEvent is the CloudEvent function: nil acknowledges the event,
// an error makes Eventarc redeliver it.
func (u *Uploader) HandleCloudEvent(ctx context.Context, ev cloudevents.Event) error {
	ctx = withEventTrace(ctx, ev)
	_, err := u.Handle(ctx, ev)
	return err
}

// withEventTrace puts the event's trace into ctx for the logs: the
// CloudEvents distributed-tracing extension (ce-traceparent), else the
// delivering request's traceparent or X-Cloud-Trace-Context header.
func withEventTrace(ctx context.Context, ev cloudevents.Event) context.Context {
	if tp, ok := ev.Extensions()["traceparent"].(string); ok && tp != "" {
		return logging.WithTrace(ctx, tp)
	}
	if rd := cehttp.RequestDataFromContext(ctx); rd != nil {
		for _, h := range []string{"traceparent", "X-Cloud-Trace-Context"} {
			if v := rd.Header.Get(h); v != "" {
				return logging.WithTrace(ctx, v)
			}
		}
	}
	return ctx
}

// Handle processes one event and reports the outcome. Only transient
// failures return an error.
func (u *Uploader) Handle(ctx context.Context, ev cloudevents.Event) (Outcome, error) {
	start := time.Now()
	line := []slog.Attr{slog.String("function", "PredictOnUpload"), slog.String("event_id", ev.ID()), slog.String("event_type", ev.Type())}
	logOutcome := func(level slog.Level, o Outcome, msg string, extra ...slog.Attr) {
		attrs := append(line, slog.String("outcome", string(o)), slog.Float64("latency_ms", float64(time.Since(start).Microseconds())/1000))
		if o == OutcomeWritten && !ev.Time().IsZero() {
			// From the storage event to the result: what the upload-to-result
			// SLO (infra/terraform/monitoring.tf) measures.
			attrs = append(attrs, slog.Float64("upload_to_result_ms", float64(time.Since(ev.Time()).Microseconds())/1000))
		}
		u.log().LogAttrs(ctx, level, msg, append(attrs, extra...)...)
	}
	if ev.Type() != events.StorageFinalized {
		logOutcome(slog.LevelWarn, OutcomeSkipped, "predict on upload: not a finalize event, ignored")
		return OutcomeSkipped, nil
	}
	oe, err := events.ParseStorageEvent(ev)
	if err != nil {
		u.Metrics.Error(ctx, "upload", "malformed_event")
		logOutcome(slog.LevelError, OutcomeMalformed, "predict on upload: malformed event acknowledged without processing", slog.String("error", err.Error()))
		return OutcomeMalformed, nil
	}
	line = append(line, slog.String("object", oe.URI()), slog.Int64("generation", oe.Generation))
	if err := u.Config.ValidateUpload(); err != nil {
		// Misconfigured: refuse everything, loudly, and let the events be
		// redelivered until the deployment is fixed. Nothing is written, so
		// nothing can recurse.
		u.Metrics.Error(ctx, "upload", "config")
		logOutcome(logging.LevelCritical, OutcomeRefused, "predict on upload: refusing to run: "+err.Error())
		return OutcomeRefused, err
	}
	if oe.Bucket == u.Config.ResultsBucket {
		// Triggered by our own output: processing it would write another
		// result and trigger again, forever.
		u.Metrics.Error(ctx, "upload", "config")
		logOutcome(logging.LevelCritical, OutcomeRefused, fmt.Sprintf("predict on upload: refusing an event from the results bucket %q: the trigger must be on the upload bucket, never on RESULTS_BUCKET", oe.Bucket))
		return OutcomeRefused, nil
	}
	if reason := u.skip(oe); reason != "" {
		logOutcome(slog.LevelInfo, OutcomeSkipped, "predict on upload: skipped: "+reason, slog.String("content_type", oe.ContentType))
		return OutcomeSkipped, nil
	}

	o, res, err := u.process(ctx, oe)
	attrs := resultAttrs(res)
	switch {
	case err != nil:
		attrs = append(attrs, slog.String("error", err.Error()), slog.String("error_kind", ErrorKind(err)))
		logOutcome(slog.LevelError, OutcomeRetry, "predict on upload: transient failure, will be retried", attrs...)
		return OutcomeRetry, err
	case o == OutcomeFailed:
		logOutcome(slog.LevelWarn, o, "predict on upload: image refused", attrs...)
	case o == OutcomeCollision:
		u.Metrics.Error(ctx, "upload", "collision")
		logOutcome(slog.LevelError, o, "predict on upload: the result name is taken by another object's result file; nothing written", attrs...)
	default:
		logOutcome(slog.LevelInfo, o, "predict on upload", attrs...)
	}
	return o, nil
}

// resultAttrs are the log fields of a result (none for nil).
func resultAttrs(res *results.Upload) []slog.Attr {
	var attrs []slog.Attr
	if res == nil {
		return attrs
	}
	if res.Model != nil {
		attrs = append(attrs, slog.String("model_version", res.Model.Version))
	}
	if res.Label != "" {
		attrs = append(attrs, slog.String("label", res.Label), slog.Float64("score", res.Score))
	}
	if res.Kind != "" {
		attrs = append(attrs, slog.String("error_kind", res.Kind), slog.String("reason", res.Error))
	}
	return attrs
}

// skip says why an event is out of scope, or "".
func (u *Uploader) skip(oe events.ObjectEvent) string {
	if u.Config.UploadBucket != "" && oe.Bucket != u.Config.UploadBucket {
		return fmt.Sprintf("bucket %q is not UPLOAD_BUCKET %q", oe.Bucket, u.Config.UploadBucket)
	}
	if ps := u.Config.UploadPrefixes; len(ps) > 0 {
		ok := false
		for _, p := range ps {
			if strings.HasPrefix(oe.Name, p) {
				ok = true
				break
			}
		}
		if !ok {
			return fmt.Sprintf("%q is outside UPLOAD_PREFIXES %v", oe.Name, ps)
		}
	}
	if strings.HasSuffix(oe.Name, "/") {
		return "folder placeholder"
	}
	if !contentTypeMatches(u.Config.ContentTypes, oe.ContentType) {
		return fmt.Sprintf("content type %q is not in UPLOAD_CONTENT_TYPES %v", oe.ContentType, u.Config.ContentTypes)
	}
	return ""
}

// contentTypeMatches matches a content type (parameters ignored) against
// patterns like image/jpeg, image/* or *.
func contentTypeMatches(patterns []string, ct string) bool {
	if len(patterns) == 0 {
		return true
	}
	ct, _, _ = strings.Cut(ct, ";")
	ct = strings.ToLower(strings.TrimSpace(ct))
	for _, p := range patterns {
		p = strings.ToLower(p)
		if p == "*" || p == "*/*" || p == ct {
			return true
		}
		if ok, _ := path.Match(p, ct); ok && ct != "" {
			return true
		}
	}
	return false
}

// process reads, classifies and records one object.
func (u *Uploader) process(ctx context.Context, oe events.ObjectEvent) (Outcome, *results.Upload, error) {
	key := results.ObjectName(oe.Name, false)
	// Cheap duplicate check first: a redelivered event costs one stat, not
	// a download and an inference.
	switch o, err := u.Results.Lookup(ctx, key, oe.Name, oe.Generation); {
	case err != nil:
		return OutcomeRetry, nil, err
	case o == OutcomeDuplicate:
		return o, nil, u.republish(ctx, key)
	case o == OutcomeStale, o == OutcomeCollision:
		return o, nil, nil
	}

	lease, err := u.Acquire(ctx)
	if err != nil {
		u.Metrics.Error(ctx, "upload", KindModelUnavailable)
		return OutcomeRetry, nil, err
	}
	defer lease.Release()
	obj := gsObject(oe.Bucket, oe.Name, oe.Generation, oe.Size)
	out := u.Classify(ctx, lease.Classifier, []Source{{Object: obj}}, Options{TopK: u.Config.TopK, Via: "upload"})[0]
	return u.Record(ctx, oe, lease.Classifier, out)
}

// Record writes the outcome of classifying one object generation (out,
// made with c) under the exactly-once rule: its result, or for a
// permanent failure its error record (OutcomeFailed when written), and
// publishes a result it wrote. A transient failure is returned as the
// error, with nothing written. PredictOnUpload records its events through
// it, and so does the batch job, which lists, reads and classifies the
// objects itself.
func (u *Uploader) Record(ctx context.Context, oe events.ObjectEvent, c *onnxrt.Classifier, out Classification) (Outcome, *results.Upload, error) {
	key := results.ObjectName(oe.Name, false)
	res := u.result(oe, c, out)
	if out.Err != nil {
		if !Permanent(res.Kind) {
			return OutcomeRetry, res, out.Err
		}
		o, err := u.Results.WriteOnce(ctx, results.ObjectName(oe.Name, true), res)
		if err != nil {
			return OutcomeRetry, res, err
		}
		if o == OutcomeWritten {
			o = OutcomeFailed
		}
		return o, res, nil
	}
	o, err := u.Results.WriteOnce(ctx, key, res)
	if err != nil {
		return OutcomeRetry, res, err
	}
	if o == OutcomeWritten {
		if err := u.publish(ctx, res); err != nil {
			return OutcomeRetry, res, err
		}
	}
	return o, res, nil
}

// result is the result record of an event's classification.
func (u *Uploader) result(oe events.ObjectEvent, c *onnxrt.Classifier, out Classification) *results.Upload {
	mi := modelOf(c)
	res := &results.Upload{
		Bucket: oe.Bucket, Name: oe.Name, Generation: oe.Generation, URI: oe.URI(),
		ContentType: oe.ContentType, Size: oe.Size, Model: &mi, EventID: oe.ID,
		LatencyMS: float64(out.Latency.Microseconds()) / 1000, Time: u.now().UTC(),
	}
	if out.Size > 0 {
		res.Size = out.Size
	}
	if !oe.Time.IsZero() {
		t := oe.Time.UTC()
		res.EventTime = &t
	}
	if out.Err != nil {
		res.Error, res.Kind = PublicMessage(out.Err), out.Kind()
		return res
	}
	res.Predictions = make([]results.Prediction, len(out.Predictions))
	for i, p := range out.Predictions {
		res.Predictions[i] = results.Prediction(p)
	}
	res.Label, res.Score = out.Predictions[0].Label, out.Predictions[0].Score
	res.Signals = out.Signals
	return res
}

// publish sends a result to PREDICTIONS_TOPIC, if set. The attributes let
// subscribers filter and deduplicate (idempotency_key is unique per source
// object generation).
func (u *Uploader) publish(ctx context.Context, res *results.Upload) error {
	if u.Publisher == nil {
		return nil
	}
	data, err := json.Marshal(res)
	if err != nil {
		return err
	}
	attrs := map[string]string{
		"bucket":          res.Bucket,
		"name":            res.Name,
		"generation":      strconv.FormatInt(res.Generation, 10),
		"idempotency_key": res.Bucket + "/" + res.Name + "#" + strconv.FormatInt(res.Generation, 10),
		"label":           res.Label,
	}
	if res.Model != nil {
		attrs["model_version"] = res.Model.Version
	}
	if err := u.Publisher.Publish(ctx, data, attrs); err != nil {
		u.Metrics.Error(ctx, "upload", KindPublish)
		return fmt.Errorf("publishing the result: %w", err)
	}
	return nil
}

// republish re-sends a stored result when its event is redelivered. The
// first delivery may have written the result and then failed to publish
// (returning an error precisely to get this redelivery); the function
// cannot tell that apart from a plain duplicate, so it publishes again.
// Messages are therefore at-least-once, like Pub/Sub itself: subscribers
// deduplicate on the idempotency_key attribute.
func (u *Uploader) republish(ctx context.Context, key string) error {
	if u.Publisher == nil {
		return nil
	}
	res, err := u.Results.Stored(ctx, key)
	switch {
	case errors.Is(err, errNotAResult):
		u.log().WarnContext(ctx, "predict on upload: stored result is not readable, not republished", "key", key, "error", err.Error())
		return nil
	case err != nil:
		return fmt.Errorf("reading the stored result to republish: %w", err)
	case res == nil:
		return nil
	}
	return u.publish(ctx, res)
}
