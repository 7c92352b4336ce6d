package predict

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"mime"
	"mime/multipart"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/orchard-mlops/orchard/functions/predict/foldereval"
	"github.com/orchard-mlops/orchard/functions/telemetry"
	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/shared/model"
	"github.com/orchard-mlops/orchard/shared/modelsource"
)

// Server is the Predict HTTP function.
//
//	POST image/jpeg|png|webp (or application/octet-stream) raw bytes
//	     → {"model":{..},"predictions":[..]}
//	POST multipart/form-data, one or more files
//	     → {"model":{..},"results":[{"filename":..,"predictions":[..]} | {"filename":..,"error":..}]}
//	POST application/json {"uris":["gs://b/o.jpg",..]} or {"prefix":"gs://b/dir/"}
//	     → {"model":{..},"results":[{"uri":..,..}],["accuracy":..,"confusion_matrix":{..}]}
//	GET  → model information and readiness
//
// ?top_k=N picks how many predictions each image gets (default Config.TopK).
// Errors are {"error":..,"kind":..} with 400, 405, 413, 415, 503 (with
// Retry-After) and so on.
type Server struct {
	Config   Config
	Provider modelsource.Provider
	// Objects reads gs:// images for JSON requests; nil refuses them.
	Objects Objects
	// Budget bounds the memory of concurrent decodes (shared with
	// PredictOnUpload); nil admits every decode.
	Budget  *DecodeBudget
	Metrics *telemetry.Metrics
	Log     *slog.Logger
}

// requestLog collects the fields of a request's one log line.
type requestLog struct {
	mode         string
	images       int
	failed       int
	label        string
	score        float64
	modelVersion string
	errKind      string
	err          error
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rw := &statusWriter{ResponseWriter: w}
	var rl requestLog
	defer func() {
		if p := recover(); p != nil {
			s.log().ErrorContext(r.Context(), "predict: panic", "panic", fmt.Sprint(p))
			s.Metrics.Error(r.Context(), "http", KindInternal)
			if !rw.wrote {
				writeError(rw, http.StatusInternalServerError, KindInternal, "internal error")
			}
			rl.errKind = KindInternal
		}
		s.logRequest(r, rw.status, &rl, time.Since(start))
	}()
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		rl.mode = "info"
		s.info(rw, r, &rl)
	case http.MethodPost:
		s.post(rw, r, &rl)
	default:
		rl.mode = "method"
		rw.Header().Set("Allow", "GET, HEAD, POST")
		writeError(rw, http.StatusMethodNotAllowed, KindBadRequest, r.Method+" is not allowed; use POST to classify or GET for model information")
	}
}

func (s *Server) log() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.Default()
}

func (s *Server) logRequest(r *http.Request, status int, rl *requestLog, d time.Duration) {
	if status == 0 {
		status = http.StatusOK
	}
	attrs := []slog.Attr{
		slog.String("function", "Predict"),
		slog.String("method", r.Method),
		slog.String("mode", rl.mode),
		slog.Int("status", status),
		slog.Float64("latency_ms", float64(d.Microseconds())/1000),
	}
	if rl.modelVersion != "" {
		attrs = append(attrs, slog.String("model_version", rl.modelVersion))
	}
	if rl.images > 0 {
		attrs = append(attrs, slog.Int("images", rl.images))
	}
	if rl.failed > 0 {
		attrs = append(attrs, slog.Int("failed", rl.failed))
	}
	if rl.label != "" {
		attrs = append(attrs, slog.String("label", rl.label), slog.Float64("score", rl.score))
	}
	if rl.errKind != "" {
		attrs = append(attrs, slog.String("error_kind", rl.errKind))
	}
	level := slog.LevelInfo
	if rl.err != nil {
		attrs = append(attrs, slog.String("error", rl.err.Error()))
	}
	if status >= 500 {
		level = slog.LevelError
	} else if status >= 400 {
		level = slog.LevelWarn
	}
	s.log().LogAttrs(r.Context(), level, "predict", attrs...)
}

// acquire leases the model or answers 503.
func (s *Server) acquire(w http.ResponseWriter, r *http.Request, rl *requestLog) (*modelsource.Lease, bool) {
	if s.Provider == nil {
		writeError(w, http.StatusServiceUnavailable, KindModelUnavailable, "no model configured")
		return nil, false
	}
	lease, err := s.Provider.Acquire(r.Context())
	if err != nil {
		setRetryAfter(w, err)
		rl.errKind, rl.err = KindModelUnavailable, err
		s.Metrics.Error(r.Context(), "http", KindModelUnavailable)
		writeError(w, http.StatusServiceUnavailable, KindModelUnavailable, "no model loaded yet: "+err.Error())
		return nil, false
	}
	rl.modelVersion = lease.Metadata().Version
	return lease, true
}

// modelInfo is the "model" member of every answer.
type modelInfo struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

func infoOf(c *model.Classifier) modelInfo {
	m := c.Metadata()
	return modelInfo{Name: m.Name, Version: m.Version}
}

// InfoResponse is the GET answer.
type InfoResponse struct {
	Ready bool       `json:"ready"`
	Model *ModelInfo `json:"model,omitempty"`
	Error string     `json:"error,omitempty"`
}

// ModelInfo is the model description GET returns.
type ModelInfo struct {
	Name          string           `json:"name"`
	Version       string           `json:"version"`
	Labels        []string         `json:"labels"`
	Input         model.TensorSpec `json:"input"`
	Output        model.TensorSpec `json:"output"`
	Preprocessing any              `json:"preprocessing"`
	Metrics       model.Metrics    `json:"metrics"`
	Dataset       model.Dataset    `json:"dataset"`
	CreatedAt     time.Time        `json:"created_at"`
}

func (s *Server) info(w http.ResponseWriter, r *http.Request, rl *requestLog) {
	var lease *modelsource.Lease
	err := errors.New("no model configured")
	if s.Provider != nil {
		lease, err = s.Provider.Acquire(r.Context())
	}
	if err != nil {
		setRetryAfter(w, err)
		rl.errKind, rl.err = KindModelUnavailable, err
		writeJSON(w, http.StatusServiceUnavailable, InfoResponse{Ready: false, Error: "no model loaded yet: " + err.Error()})
		return
	}
	defer lease.Release()
	m := lease.Metadata()
	rl.modelVersion = m.Version
	writeJSON(w, http.StatusOK, InfoResponse{Ready: true, Model: &ModelInfo{
		Name: m.Name, Version: m.Version, Labels: m.Labels, Input: m.Input, Output: m.Output,
		Preprocessing: m.Preprocessing, Metrics: m.Metrics, Dataset: m.Dataset, CreatedAt: m.CreatedAt,
	}})
}

// rawTypes are the Content-Types taken as one raw image.
var rawTypes = map[string]bool{"image/jpeg": true, "image/png": true, "image/webp": true, "application/octet-stream": true}

func (s *Server) post(w http.ResponseWriter, r *http.Request, rl *requestLog) {
	k := s.Config.topK()
	if q := r.URL.Query().Get("top_k"); q != "" {
		n, err := strconv.Atoi(q)
		if err != nil || n < 1 {
			rl.mode, rl.errKind = "bad", KindBadRequest
			writeError(w, http.StatusBadRequest, KindBadRequest, fmt.Sprintf("top_k=%q: want a positive integer", q))
			return
		}
		k = n
	}
	ct := r.Header.Get("Content-Type")
	mt, params, err := mime.ParseMediaType(ct)
	switch {
	case err != nil && ct != "":
		rl.mode = "bad"
		writeError(w, http.StatusUnsupportedMediaType, KindUnsupported, fmt.Sprintf("unparsable Content-Type %q", ct))
		return
	case rawTypes[mt]:
		rl.mode = "raw"
	case mt == "multipart/form-data":
		rl.mode = "multipart"
	case mt == "application/json":
		rl.mode = "json"
	default:
		rl.mode = "bad"
		rl.errKind = KindUnsupported
		s.Metrics.Error(r.Context(), "http", KindUnsupported)
		writeError(w, http.StatusUnsupportedMediaType, KindUnsupported,
			fmt.Sprintf("unsupported Content-Type %q: send image/jpeg, image/png or image/webp bytes, multipart/form-data files, or application/json {\"uris\":[..]} or {\"prefix\":..}", ct))
		return
	}
	limit := s.Config.maxBody()
	if r.ContentLength > limit {
		rl.errKind = KindTooLarge
		s.Metrics.Error(r.Context(), "http", KindTooLarge)
		writeError(w, http.StatusRequestEntityTooLarge, KindTooLarge, fmt.Sprintf("request body of %d bytes is over the %d-byte limit", r.ContentLength, limit))
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, limit)

	lease, ok := s.acquire(w, r, rl)
	if !ok {
		return
	}
	defer lease.Release()
	switch rl.mode {
	case "raw":
		s.raw(w, r, lease.Classifier, k, rl)
	case "multipart":
		s.multipart(w, r, lease.Classifier, params["boundary"], k, rl)
	case "json":
		s.jsonRequest(w, r, lease.Classifier, k, rl)
	}
}

// bodyError answers a failed body read: 413 past the cap, else 400.
func (s *Server) bodyError(w http.ResponseWriter, r *http.Request, err error, rl *requestLog) {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		rl.errKind, rl.err = KindTooLarge, err
		s.Metrics.Error(r.Context(), "http", KindTooLarge)
		writeError(w, http.StatusRequestEntityTooLarge, KindTooLarge, fmt.Sprintf("request body is over the %d-byte limit", mbe.Limit))
		return
	}
	rl.errKind, rl.err = KindBadRequest, err
	s.Metrics.Error(r.Context(), "http", KindBadRequest)
	writeError(w, http.StatusBadRequest, KindBadRequest, "reading the request body: "+err.Error())
}

// PredictResponse is the answer for one raw image.
type PredictResponse struct {
	Model       modelInfo          `json:"model"`
	Predictions []model.Prediction `json:"predictions"`
}

func (s *Server) raw(w http.ResponseWriter, r *http.Request, c *model.Classifier, k int, rl *requestLog) {
	// MaxBytesReader caps the body (a 413); the declared length only sizes
	// the buffer, and only up to that cap, since a client may claim anything.
	body, err := blob.ReadCapped(r.Body, min(r.ContentLength, s.Config.maxBody()), 0)
	if err != nil {
		s.bodyError(w, r, err, rl)
		return
	}
	rl.images = 1
	out := classify(r.Context(), s.Budget, s.Config.Limits(), c, body, k)
	if out.err != nil {
		kind := errorKind(out.err)
		rl.failed, rl.errKind, rl.err = 1, kind, out.err
		s.Metrics.Error(r.Context(), "http", kind)
		if kind == KindOverloaded {
			retryAfter(w, s.Budget.retryAfter())
		}
		writeError(w, statusFor(kind), kind, publicMessage(out.err))
		return
	}
	s.record(r.Context(), c, out)
	rl.label, rl.score = out.preds[0].Label, out.preds[0].Score
	writeJSON(w, http.StatusOK, PredictResponse{Model: infoOf(c), Predictions: out.preds})
}

func (s *Server) record(ctx context.Context, c *model.Classifier, out classified) {
	if len(out.preds) > 0 {
		s.Metrics.Prediction(ctx, "http", out.preds[0].Label, c.Metadata().Version, out.latency)
	}
}

// Result is one image's outcome in a batch answer.
type Result struct {
	Filename    string             `json:"filename,omitempty"`
	URI         string             `json:"uri,omitempty"`
	Expected    string             `json:"expected,omitempty"` // the label its folder names (prefix evaluation)
	Predictions []model.Prediction `json:"predictions,omitempty"`
	Error       string             `json:"error,omitempty"`
	Kind        string             `json:"kind,omitempty"`
}

// BatchResponse is the answer for multipart and JSON requests.
type BatchResponse struct {
	Model           modelInfo  `json:"model"`
	Results         []Result   `json:"results"`
	Accuracy        *float64   `json:"accuracy,omitempty"`
	Evaluated       int        `json:"evaluated,omitempty"`
	ConfusionMatrix *Confusion `json:"confusion_matrix,omitempty"`
}

// Confusion counts images by expected label (rows) and predicted top-1
// label (columns), both in Labels order.
type Confusion = foldereval.Confusion

// job is one image of a batch: bytes already in hand, or an object to read.
type job struct {
	data []byte
	err  error // set when reading the upload already failed
	obj  *ObjectInfo
}

func (s *Server) multipart(w http.ResponseWriter, r *http.Request, c *model.Classifier, boundary string, k int, rl *requestLog) {
	if boundary == "" {
		rl.errKind = KindBadRequest
		writeError(w, http.StatusBadRequest, KindBadRequest, "multipart/form-data without a boundary")
		return
	}
	mr := multipart.NewReader(r.Body, boundary)
	var (
		results []Result
		jobs    []job
	)
	maxImage := s.Config.maxImage()
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			s.bodyError(w, r, err, rl)
			return
		}
		if p.FileName() == "" && p.FormName() != "file" && p.FormName() != "files" {
			// A plain form field: not an image.
			_, _ = io.Copy(io.Discard, p)
			if err := drainErr(p); err != nil {
				s.bodyError(w, r, err, rl)
				return
			}
			continue
		}
		if len(jobs) == s.Config.maxObjects() {
			rl.errKind = KindBadRequest
			writeError(w, http.StatusBadRequest, KindBadRequest, fmt.Sprintf("more than %d files in one request", s.Config.maxObjects()))
			return
		}
		name := p.FileName()
		if name == "" {
			name = p.FormName()
		}
		data, err := io.ReadAll(io.LimitReader(p, maxImage+1))
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &mbe):
			s.bodyError(w, r, err, rl)
			return
		case err != nil:
			s.bodyError(w, r, err, rl)
			return
		case int64(len(data)) > maxImage:
			if _, err := io.Copy(io.Discard, p); err != nil {
				s.bodyError(w, r, err, rl)
				return
			}
			jobs = append(jobs, job{err: fmt.Errorf("file is over the %d-byte limit: %w", maxImage, blob.ErrTooLarge)})
		default:
			jobs = append(jobs, job{data: data})
		}
		results = append(results, Result{Filename: name})
	}
	if len(jobs) == 0 {
		rl.errKind = KindBadRequest
		writeError(w, http.StatusBadRequest, KindBadRequest, "no files in the multipart request")
		return
	}
	s.runBatch(r.Context(), c, k, jobs, results, rl)
	writeJSON(w, http.StatusOK, BatchResponse{Model: infoOf(c), Results: results})
}

func drainErr(p *multipart.Part) error { _, err := io.Copy(io.Discard, p); return err }

// runBatch classifies jobs on a bounded worker pool, filling results in
// request order.
func (s *Server) runBatch(ctx context.Context, c *model.Classifier, k int, jobs []job, results []Result, rl *requestLog) {
	workers := min(s.Config.workers(), len(jobs))
	next := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range next {
				s.runJob(ctx, c, k, jobs[i], &results[i])
			}
		})
	}
	for i := range jobs {
		next <- i
	}
	close(next)
	wg.Wait()
	rl.images = len(jobs)
	for _, res := range results {
		if res.Error != "" {
			rl.failed++
		}
	}
}

func (s *Server) runJob(ctx context.Context, c *model.Classifier, k int, j job, res *Result) {
	defer func() {
		if p := recover(); p != nil {
			res.Predictions, res.Error, res.Kind = nil, "internal error", KindInternal
			s.log().ErrorContext(ctx, "predict: panic in a batch job", "panic", fmt.Sprint(p))
		}
	}()
	fail := func(err error) {
		kind := errorKind(err)
		res.Error, res.Kind = publicMessage(err), kind
		s.Metrics.Error(ctx, "http", kind)
	}
	if j.err != nil {
		fail(j.err)
		return
	}
	if err := ctx.Err(); err != nil {
		fail(fmt.Errorf("before reading the image: %w", err)) // the client left: do no more work for it
		return
	}
	data := j.data
	start := time.Now()
	if j.obj != nil {
		var err error
		rctx, cancel := context.WithTimeout(ctx, s.Config.storageTimeout())
		data, _, err = s.Objects.Read(rctx, j.obj.Bucket, j.obj.Name, 0, s.Config.maxImage())
		cancel()
		if err != nil {
			fail(err)
			return
		}
	}
	out := classify(ctx, s.Budget, s.Config.Limits(), c, data, k)
	out.latency = time.Since(start)
	if out.err != nil {
		fail(out.err)
		return
	}
	res.Predictions = out.preds
	s.record(ctx, c, out)
}

// JSONRequest is the application/json body.
type JSONRequest struct {
	URIs   []string `json:"uris,omitempty"`
	Prefix string   `json:"prefix,omitempty"`
}

func (s *Server) jsonRequest(w http.ResponseWriter, r *http.Request, c *model.Classifier, k int, rl *requestLog) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		s.bodyError(w, r, err, rl)
		return
	}
	bad := func(msg string) {
		rl.errKind = KindBadRequest
		s.Metrics.Error(r.Context(), "http", KindBadRequest)
		writeError(w, http.StatusBadRequest, KindBadRequest, msg)
	}
	var req JSONRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		bad("bad JSON: " + err.Error())
		return
	}
	if dec.More() {
		bad("bad JSON: more than one value")
		return
	}
	if s.Objects == nil {
		writeError(w, http.StatusNotImplemented, KindInternal, "this deployment cannot read gs:// objects")
		return
	}
	switch {
	case len(req.URIs) > 0 && req.Prefix != "":
		bad(`give either "uris" or "prefix", not both`)
	case len(req.URIs) > 0:
		rl.mode = "uris"
		s.uris(w, r, c, k, req.URIs, rl, bad)
	case req.Prefix != "":
		rl.mode = "prefix"
		s.prefix(w, r, c, k, req.Prefix, rl, bad)
	default:
		bad(`give "uris": ["gs://bucket/object", ...] or "prefix": "gs://bucket/folder/"`)
	}
}

// parseGS parses gs://bucket/name, refusing other schemes: a client must
// never make the function read its own file system.
func (s *Server) parseGS(uri string, wantObject bool) (bucket, name string, err error) {
	if !strings.HasPrefix(uri, "gs://") {
		return "", "", fmt.Errorf("%q: only gs:// URIs are accepted: %w", uri, errBadRequest)
	}
	bucket, name, _, err = blob.Parse(uri)
	if err != nil {
		return "", "", fmt.Errorf("%w: %w", err, errBadRequest)
	}
	if wantObject && (name == "" || strings.HasSuffix(name, "/")) {
		return "", "", fmt.Errorf("%q names no object: %w", uri, errBadRequest)
	}
	if !s.Config.bucketAllowed(bucket) {
		return "", "", fmt.Errorf("bucket %q is not in PREDICT_ALLOWED_BUCKETS: %w", bucket, ErrForbidden)
	}
	return bucket, name, nil
}

func (s *Server) uris(w http.ResponseWriter, r *http.Request, c *model.Classifier, k int, uris []string, rl *requestLog, bad func(string)) {
	if len(uris) > s.Config.maxObjects() {
		bad(fmt.Sprintf("%d uris; at most %d per request", len(uris), s.Config.maxObjects()))
		return
	}
	jobs := make([]job, len(uris))
	results := make([]Result, len(uris))
	for i, u := range uris {
		results[i].URI = u
		bucket, name, err := s.parseGS(u, true)
		if err != nil {
			jobs[i].err = err
			continue
		}
		jobs[i].obj = &ObjectInfo{Bucket: bucket, Name: name}
	}
	s.runBatch(r.Context(), c, k, jobs, results, rl)
	writeJSON(w, http.StatusOK, BatchResponse{Model: infoOf(c), Results: results})
}

func (s *Server) prefix(w http.ResponseWriter, r *http.Request, c *model.Classifier, k int, prefix string, rl *requestLog, bad func(string)) {
	bucket, folder, err := s.parseGS(prefix, false)
	if err != nil {
		kind := errorKind(err)
		rl.errKind = kind
		writeError(w, statusFor(kind), kind, err.Error())
		return
	}
	if folder != "" && !strings.HasSuffix(folder, "/") {
		folder += "/"
	}
	maxN := s.Config.maxObjects()
	lctx, cancel := context.WithTimeout(r.Context(), s.Config.storageTimeout())
	objs, err := s.Objects.List(lctx, bucket, folder, LooksLikeImage, maxN, 20*maxN)
	cancel()
	if err != nil {
		if errors.Is(err, ErrTooMany) {
			bad(err.Error() + "; narrow the prefix (MAX_OBJECTS)")
			return
		}
		kind := errorKind(err)
		rl.errKind, rl.err = kind, err
		s.Metrics.Error(r.Context(), "http", kind)
		writeError(w, statusFor(kind), kind, err.Error())
		return
	}
	if len(objs) == 0 {
		bad(fmt.Sprintf("no images below gs://%s/%s", bucket, folder))
		return
	}
	ev := foldereval.New(c.Metadata().Labels)
	jobs := make([]job, len(objs))
	results := make([]Result, len(objs))
	labelled := true // every image sits in a sub-folder named after a label
	for i := range objs {
		o := objs[i]
		jobs[i].obj = &o
		results[i].URI = o.URI()
		if sub, ok := foldereval.Expected(folder, o.Name); !ok || !ev.Known(sub) {
			labelled = false
		}
	}
	s.runBatch(r.Context(), c, k, jobs, results, rl)
	resp := BatchResponse{Model: infoOf(c), Results: results}
	if labelled {
		for i := range results {
			results[i].Expected, _ = foldereval.Expected(folder, objs[i].Name)
			if len(results[i].Predictions) == 0 {
				continue // failed images are listed with their error, not scored
			}
			ev.Add(results[i].Expected, results[i].Predictions[0].Label)
		}
		resp.Evaluated, resp.Accuracy, resp.ConfusionMatrix = ev.Evaluated, ev.Accuracy(), &ev.Confusion
	}
	writeJSON(w, http.StatusOK, resp)
}

// ErrorResponse is every error answer.
type ErrorResponse struct {
	Error string `json:"error"`
	Kind  string `json:"kind,omitempty"`
}

func writeError(w http.ResponseWriter, status int, kind, msg string) {
	writeJSON(w, status, ErrorResponse{Error: msg, Kind: kind})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":"encoding the response failed","kind":"internal"}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// statusWriter remembers the status for the request log.
type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (s *statusWriter) WriteHeader(code int) {
	if !s.wrote {
		s.status, s.wrote = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if !s.wrote {
		s.status, s.wrote = http.StatusOK, true
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// setRetryAfter tells a client when a model may be loaded: the provider's
// own estimate, or DefaultRetryAfter; at least a second.
func setRetryAfter(w http.ResponseWriter, err error) {
	retry := DefaultRetryAfter
	var u *modelsource.UnavailableError
	if errors.As(err, &u) && u.RetryAfter > 0 {
		retry = u.RetryAfter
	}
	retryAfter(w, retry)
}

// retryAfter sets Retry-After to d in whole seconds, at least one.
func retryAfter(w http.ResponseWriter, d time.Duration) {
	w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(max(d.Seconds(), 1)))))
}
