package predict

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"mime"
	"net/http"
	"strconv"
	"time"

	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/shared/model"
	"github.com/orchard-mlops/orchard/shared/modelsource"
	"github.com/orchard-mlops/orchard/shared/onnxrt"
	"github.com/orchard-mlops/orchard/shared/results"
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
//
// It decodes requests into sources for the Service (raw bytes and
// multipart files here and in multipart.go, gs:// objects and folders in
// gsrequest.go) and answers with what it classified. The Service's Objects
// reads gs:// images; without it, JSON requests are refused.
type Server struct{ *Service }

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

// acquire leases the model or answers 503.
func (s *Server) acquire(w http.ResponseWriter, r *http.Request, rl *requestLog) (*modelsource.Lease, bool) {
	lease, err := s.Acquire(r.Context())
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

// modelOf is the "model" member of every answer and result.
func modelOf(c *onnxrt.Classifier) results.Model {
	m := c.Metadata()
	return results.Model{Name: m.Name, Version: m.Version}
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
	lease, err := s.Acquire(r.Context())
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
	k := s.Config.TopK
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
	limit := s.Config.MaxBodyBytes
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
	Model       results.Model      `json:"model"`
	Predictions []model.Prediction `json:"predictions"`
	results.Signals
}

func (s *Server) raw(w http.ResponseWriter, r *http.Request, c *onnxrt.Classifier, k int, rl *requestLog) {
	// MaxBytesReader caps the body (a 413); the declared length only sizes
	// the buffer, and only up to that cap, since a client may claim anything.
	body, err := blob.ReadCapped(r.Body, min(r.ContentLength, s.Config.MaxBodyBytes), 0)
	if err != nil {
		s.bodyError(w, r, err, rl)
		return
	}
	rl.images = 1
	out := s.Classify(r.Context(), c, []Source{{Data: body}}, Options{TopK: k, Via: "http"})[0]
	if out.Err != nil {
		kind := out.Kind()
		rl.failed, rl.errKind, rl.err = 1, kind, out.Err
		if kind == KindOverloaded {
			retryAfter(w, s.Budget.retryAfter())
		}
		writeError(w, statusFor(kind), kind, PublicMessage(out.Err))
		return
	}
	rl.label, rl.score = out.Predictions[0].Label, out.Predictions[0].Score
	writeJSON(w, http.StatusOK, PredictResponse{Model: modelOf(c), Predictions: out.Predictions, Signals: out.Signals})
}

// Result is one image's outcome in a batch answer.
type Result struct {
	Filename    string             `json:"filename,omitempty"`
	URI         string             `json:"uri,omitempty"`
	Expected    string             `json:"expected,omitempty"` // the label its folder names (prefix evaluation)
	Predictions []model.Prediction `json:"predictions,omitempty"`
	results.Signals
	Error string `json:"error,omitempty"`
	Kind  string `json:"kind,omitempty"`
}

// BatchResponse is the answer for multipart and JSON requests.
type BatchResponse struct {
	Model           results.Model `json:"model"`
	Results         []Result      `json:"results"`
	Accuracy        *float64      `json:"accuracy,omitempty"`
	Evaluated       int           `json:"evaluated,omitempty"`
	ConfusionMatrix *Confusion    `json:"confusion_matrix,omitempty"`
}

// classifyInto classifies a batch's sources into its results (same order)
// and counts them in the request log.
func (s *Server) classifyInto(ctx context.Context, c *onnxrt.Classifier, k int, srcs []Source, results []Result, rl *requestLog) []Classification {
	got := s.Classify(ctx, c, srcs, Options{TopK: k, Via: "http"})
	rl.images = len(got)
	for i, g := range got {
		if g.Err != nil {
			results[i].Error, results[i].Kind = PublicMessage(g.Err), g.Kind()
			rl.failed++
			continue
		}
		results[i].Predictions, results[i].Signals = g.Predictions, g.Signals
	}
	return got
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
