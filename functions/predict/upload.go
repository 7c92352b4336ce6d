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
	"github.com/googleapis/google-cloudevents-go/cloud/storagedata"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/orchard-mlops/orchard/functions/telemetry"
	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/shared/logging"
	"github.com/orchard-mlops/orchard/shared/model"
	"github.com/orchard-mlops/orchard/shared/modelsource"
)

// FinalizedType is the CloudEvent type of a GCS upload (or overwrite).
const FinalizedType = "google.cloud.storage.object.v1.finalized"

// Result-object metadata keys. SourceGenerationKey is the idempotency key:
// together with the result's name (the source object's name) it identifies
// bucket/name#generation.
const (
	SourceGenerationKey = "orchard-source-generation"
	SourceBucketKey     = "orchard-source-bucket"
	SourceNameKey       = "orchard-source-name"
)

// Suffixes of the objects written into the results bucket.
const (
	ResultSuffix = ".json"
	ErrorSuffix  = ".error.json"
)

// ObjectEvent is what PredictOnUpload needs of a finalize event.
type ObjectEvent struct {
	ID          string
	Time        time.Time
	Bucket      string
	Name        string
	Generation  int64
	Size        int64 // as the event declares it
	ContentType string
}

// URI is gs://bucket/name.
func (e ObjectEvent) URI() string { return "gs://" + e.Bucket + "/" + e.Name }

// ErrMalformedEvent marks events that can never be processed.
var ErrMalformedEvent = errors.New("malformed event")

// ParseStorageEvent reads a google.cloud.storage.object.v1.finalized event.
// Errors wrap ErrMalformedEvent.
func ParseStorageEvent(ev cloudevents.Event) (ObjectEvent, error) {
	out := ObjectEvent{ID: ev.ID(), Time: ev.Time()}
	var d storagedata.StorageObjectData
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(ev.Data(), &d); err != nil {
		return out, fmt.Errorf("%w: data is not a storage object: %v", ErrMalformedEvent, err)
	}
	out.Bucket, out.Name = d.GetBucket(), d.GetName()
	// The source and subject say the same; use them when data does not.
	if out.Bucket == "" {
		if b, ok := strings.CutPrefix(ev.Source(), "//storage.googleapis.com/projects/_/buckets/"); ok {
			out.Bucket = b
		}
	}
	if out.Name == "" {
		if n, ok := strings.CutPrefix(ev.Subject(), "objects/"); ok {
			out.Name = n
		}
	}
	if out.Bucket == "" || out.Name == "" {
		return out, fmt.Errorf("%w: no bucket or object name (bucket %q, name %q)", ErrMalformedEvent, out.Bucket, out.Name)
	}
	out.Generation = d.GetGeneration()
	out.Size = d.GetSize() // 0 when absent: the read still enforces the cap
	out.ContentType = d.GetContentType()
	if out.Generation <= 0 {
		return out, fmt.Errorf("%w: %s has no generation", ErrMalformedEvent, out.URI())
	}
	return out, nil
}

// Publisher sends a result message (PREDICTIONS_TOPIC).
type Publisher interface {
	Publish(ctx context.Context, data []byte, attrs map[string]string) error
}

// UploadResult is the content of <name>.json and <name>.error.json in the
// results bucket, and of the Pub/Sub message.
type UploadResult struct {
	Bucket      string             `json:"bucket"`
	Name        string             `json:"name"`
	Generation  int64              `json:"generation,string"`
	URI         string             `json:"uri"`
	ContentType string             `json:"content_type,omitempty"`
	Size        int64              `json:"size,omitempty"`
	Model       *modelInfo         `json:"model,omitempty"`
	Label       string             `json:"label,omitempty"` // top-1
	Score       float64            `json:"score,omitempty"`
	Predictions []model.Prediction `json:"predictions,omitempty"`
	Error       string             `json:"error,omitempty"`
	Kind        string             `json:"kind,omitempty"`
	LatencyMS   float64            `json:"latency_ms"`
	EventID     string             `json:"event_id,omitempty"`
	EventTime   *time.Time         `json:"event_time,omitempty"`
	Time        time.Time          `json:"time"` // when the result was made
}

// Uploader is the PredictOnUpload core.
type Uploader struct {
	Config    Config
	Provider  modelsource.Provider
	Objects   Objects       // reads the uploaded objects
	Results   blob.Store    // the results bucket
	Publisher Publisher     // optional
	Budget    *DecodeBudget // decode memory, shared with Predict; nil admits all
	Metrics   *telemetry.Metrics
	Log       *slog.Logger
	Now       func() time.Time
}

func (u *Uploader) log() *slog.Logger {
	if u.Log != nil {
		return u.Log
	}
	return slog.Default()
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
		u.log().LogAttrs(ctx, level, msg, append(attrs, extra...)...)
	}
	if ev.Type() != FinalizedType {
		logOutcome(slog.LevelWarn, OutcomeSkipped, "predict on upload: not a finalize event, ignored")
		return OutcomeSkipped, nil
	}
	oe, err := ParseStorageEvent(ev)
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

	o, res, err := u.process(ctx, oe, false)
	attrs := []slog.Attr{}
	if res != nil {
		if res.Model != nil {
			attrs = append(attrs, slog.String("model_version", res.Model.Version))
		}
		if res.Label != "" {
			attrs = append(attrs, slog.String("label", res.Label), slog.Float64("score", res.Score))
		}
		if res.Kind != "" {
			attrs = append(attrs, slog.String("error_kind", res.Kind), slog.String("reason", res.Error))
		}
	}
	switch {
	case err != nil:
		attrs = append(attrs, slog.String("error", err.Error()), slog.String("error_kind", errorKind(err)))
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

// skip says why an event is out of scope, or "".
func (u *Uploader) skip(oe ObjectEvent) string {
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

// Process reads, classifies and records one object generation under the
// exactly-once rule of the package doc, as an event for it would: the
// batch job calls it for each object it lists. Only transient failures
// return an error (nothing is recorded then). unseen says the caller has
// just listed the results and found none for the object: the first lookup
// is skipped, and the conditional write still lets a result that appeared
// meanwhile win.
func (u *Uploader) Process(ctx context.Context, oe ObjectEvent, unseen bool) (Outcome, *UploadResult, error) {
	return u.process(ctx, oe, unseen)
}

// process reads, classifies and records one object.
func (u *Uploader) process(ctx context.Context, oe ObjectEvent, unseen bool) (Outcome, *UploadResult, error) {
	key := oe.Name + ResultSuffix
	// Cheap duplicate check first: a redelivered event costs one stat, not
	// a download and an inference.
	if !unseen {
		switch o, existing, err := u.existing(ctx, key, oe.Name, oe.Generation); {
		case err != nil:
			return OutcomeRetry, nil, err
		case o == OutcomeDuplicate:
			return o, nil, u.republish(ctx, key, existing)
		case o == OutcomeStale, o == OutcomeCollision:
			return o, nil, nil
		}
	}

	lease, err := u.Provider.Acquire(ctx)
	if err != nil {
		u.Metrics.Error(ctx, "upload", KindModelUnavailable)
		return OutcomeRetry, nil, err
	}
	defer lease.Release()
	mi := infoOf(lease.Classifier)
	res := &UploadResult{
		Bucket: oe.Bucket, Name: oe.Name, Generation: oe.Generation, URI: oe.URI(),
		ContentType: oe.ContentType, Model: &mi, EventID: oe.ID,
	}
	if !oe.Time.IsZero() {
		t := oe.Time.UTC()
		res.EventTime = &t
	}
	res.Size = oe.Size

	start := time.Now()
	maxBytes := u.Config.maxImage()
	var (
		data  []byte
		preds []model.Prediction
	)
	if oe.Size > maxBytes {
		err = fmt.Errorf("%s is %d bytes, limit %d: %w", oe.URI(), oe.Size, maxBytes, blob.ErrTooLarge)
	} else {
		var info ObjectInfo
		rctx, cancel := context.WithTimeout(ctx, u.Config.storageTimeout())
		data, info, err = u.Objects.Read(rctx, oe.Bucket, oe.Name, oe.Generation, maxBytes)
		cancel()
		if info.Size > 0 {
			res.Size = info.Size
		}
	}
	if err == nil {
		out := classify(ctx, u.Budget, u.Config.Limits(), lease.Classifier, data, u.Config.topK())
		preds, err = out.preds, out.err
	}
	latency := time.Since(start)
	res.LatencyMS = float64(latency.Microseconds()) / 1000
	res.Time = u.now().UTC()

	if err != nil {
		kind := errorKind(err)
		u.Metrics.Error(ctx, "upload", kind)
		if !permanent(kind) {
			return OutcomeRetry, res, err
		}
		res.Error, res.Kind = publicMessage(err), kind
		o, err := u.writeOnce(ctx, oe.Name+ErrorSuffix, oe, res)
		if err != nil {
			return OutcomeRetry, res, err
		}
		if o == OutcomeWritten {
			o = OutcomeFailed
		}
		return o, res, nil
	}
	res.Predictions = preds
	res.Label, res.Score = preds[0].Label, preds[0].Score
	u.Metrics.Prediction(ctx, "upload", res.Label, mi.Version, latency)
	o, err := u.writeOnce(ctx, key, oe, res)
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

// permanent reports whether retrying cannot help. A forbidden read is
// treated as transient: it is a deployment problem (IAM) that, once fixed,
// lets the redelivered events succeed.
func permanent(kind string) bool {
	switch kind {
	case KindCorrupt, KindUnsupported, KindTooLarge, KindNotFound:
		return true
	}
	return false
}

// existing looks for a result of this object under key: OutcomeDuplicate if
// one exists for this generation, OutcomeStale for a newer one, "" if none
// or an older one.
func (u *Uploader) existing(ctx context.Context, key, name string, gen int64) (Outcome, blob.Attrs, error) {
	ctx, cancel := context.WithTimeout(ctx, u.Config.storageTimeout())
	defer cancel()
	a, err := u.Results.Attributes(ctx, key)
	if errors.Is(err, blob.ErrNotFound) {
		return "", a, nil
	}
	if err != nil {
		return "", a, fmt.Errorf("checking for an existing result: %w", err)
	}
	if n, ok := a.Metadata[SourceNameKey]; ok && n != name {
		return OutcomeCollision, a, nil
	}
	switch g := sourceGeneration(a); {
	case g == gen:
		return OutcomeDuplicate, a, nil
	case g > gen:
		return OutcomeStale, a, nil
	}
	return "", a, nil
}

func sourceGeneration(a blob.Attrs) int64 {
	g, _ := strconv.ParseInt(a.Metadata[SourceGenerationKey], 10, 64)
	return g
}

// writeOnce writes res under key so that each source generation gets
// exactly one result, however many times and however concurrently its
// event is delivered:
//
//   - create the object only if it does not exist;
//   - if it exists, its metadata names the source generation it describes:
//     the same generation means a duplicate (no-op); a newer one means this
//     event is stale (no-op: never replace a newer result with an older
//     one); an older one is replaced, conditional on the result generation
//     that was read, so of two racing writers exactly one wins and the other
//     re-reads and finds a duplicate.
func (u *Uploader) writeOnce(ctx context.Context, key string, oe ObjectEvent, res *UploadResult) (Outcome, error) {
	data, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return "", fmt.Errorf("encoding the result: %w", err)
	}
	opts := blob.WriteOptions{
		ContentType: "application/json",
		Metadata: map[string]string{
			SourceGenerationKey: strconv.FormatInt(oe.Generation, 10),
			SourceBucketKey:     oe.Bucket,
			SourceNameKey:       oe.Name,
		},
		IfNotExist: true,
	}
	const attempts = 5
	for range attempts {
		wctx, cancel := context.WithTimeout(ctx, u.Config.storageTimeout())
		_, err := u.Results.Write(wctx, key, append(data, '\n'), opts)
		cancel()
		if err == nil {
			return OutcomeWritten, nil
		}
		if !errors.Is(err, blob.ErrPrecondition) {
			return "", fmt.Errorf("writing the result: %w", err)
		}
		o, a, err := u.existing(ctx, key, oe.Name, oe.Generation)
		switch {
		case errors.Is(err, blob.ErrNotFound):
		case err != nil:
			return "", err
		case o != "":
			return o, nil
		}
		if a.Generation == 0 { // deleted meanwhile: create again
			opts.IfNotExist, opts.IfGenerationMatch = true, 0
		} else {
			opts.IfNotExist, opts.IfGenerationMatch = false, a.Generation
		}
	}
	return "", fmt.Errorf("writing %s: still contended after %d attempts: %w", u.Results.URI(key), attempts, blob.ErrPrecondition)
}

// publish sends a result to PREDICTIONS_TOPIC, if set. The attributes let
// subscribers filter and deduplicate (idempotency_key is unique per source
// object generation).
func (u *Uploader) publish(ctx context.Context, res *UploadResult) error {
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
func (u *Uploader) republish(ctx context.Context, key string, _ blob.Attrs) error {
	if u.Publisher == nil {
		return nil
	}
	rctx, cancel := context.WithTimeout(ctx, u.Config.storageTimeout())
	defer cancel()
	data, _, err := u.Results.Read(rctx, key, 1<<20)
	if err != nil {
		if errors.Is(err, blob.ErrNotFound) {
			return nil
		}
		return fmt.Errorf("reading the stored result to republish: %w", err)
	}
	var res UploadResult
	if err := json.Unmarshal(data, &res); err != nil {
		u.log().WarnContext(ctx, "predict on upload: stored result is not readable, not republished", "key", key, "error", err.Error())
		return nil
	}
	return u.publish(ctx, &res)
}
