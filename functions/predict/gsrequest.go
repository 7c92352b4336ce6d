package predict

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"strings"

	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/shared/onnxrt"
)

// JSONRequest is the application/json body.
type JSONRequest struct {
	URIs   []string `json:"uris,omitempty"`
	Prefix string   `json:"prefix,omitempty"`
}

// jsonRequest classifies gs:// objects named by URI or by folder.
func (s *Server) jsonRequest(w http.ResponseWriter, r *http.Request, c *onnxrt.Classifier, k int, rl *requestLog) {
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
	if s.Storage == nil {
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
		return "", "", fmt.Errorf("bucket %q is not in PREDICT_ALLOWED_BUCKETS: %w", bucket, blob.ErrForbidden)
	}
	return bucket, name, nil
}

// uris classifies the objects a request names, in its order; a URI that
// is refused is reported in its place.
func (s *Server) uris(w http.ResponseWriter, r *http.Request, c *onnxrt.Classifier, k int, uris []string, rl *requestLog, bad func(string)) {
	if len(uris) > s.Config.MaxObjects {
		bad(fmt.Sprintf("%d uris; at most %d per request", len(uris), s.Config.MaxObjects))
		return
	}
	srcs := make([]Source, len(uris))
	results := make([]Result, len(uris))
	for i, u := range uris {
		results[i].URI = u
		bucket, name, err := s.parseGS(u, true)
		if err != nil {
			srcs[i].Err = err
			continue
		}
		srcs[i].Object = gsObject(bucket, name, 0, 0)
	}
	s.classifyInto(r.Context(), c, k, srcs, results, rl)
	writeJSON(w, http.StatusOK, BatchResponse{Model: modelOf(c), Results: results})
}

// prefix classifies every image below a gs:// folder and, when the folder
// is labelled (see ExpectedLabels), evaluates the model on it.
func (s *Server) prefix(w http.ResponseWriter, r *http.Request, c *onnxrt.Classifier, k int, prefix string, rl *requestLog, bad func(string)) {
	bucket, folder, err := s.parseGS(prefix, false)
	if err != nil {
		kind := ErrorKind(err)
		rl.errKind = kind
		writeError(w, statusFor(kind), kind, err.Error())
		return
	}
	if folder != "" && !strings.HasSuffix(folder, "/") {
		folder += "/"
	}
	objs, err := s.listImages(r.Context(), bucket, folder)
	switch {
	case errors.Is(err, blob.ErrTooMany):
		bad(err.Error() + "; narrow the prefix (MAX_OBJECTS)")
		return
	case err != nil:
		kind := ErrorKind(err)
		rl.errKind, rl.err = kind, err
		s.Metrics.Error(r.Context(), "http", kind)
		writeError(w, statusFor(kind), kind, err.Error())
		return
	case len(objs) == 0:
		bad(fmt.Sprintf("no images below gs://%s/%s", bucket, folder))
		return
	}
	srcs := make([]Source, len(objs))
	results := make([]Result, len(objs))
	names := make([]string, len(objs))
	for i := range objs {
		srcs[i].Object, results[i].URI, names[i] = &objs[i], objs[i].URI, objs[i].Key
	}
	got := s.classifyInto(r.Context(), c, k, srcs, results, rl)
	resp := BatchResponse{Model: modelOf(c), Results: results}
	labels := c.Metadata().Labels
	if expected := ExpectedLabels(labels, folder, names); expected != nil {
		for i := range results {
			results[i].Expected = expected[i]
		}
		ev := Evaluate(labels, expected, got)
		resp.Accuracy, resp.Evaluated, resp.ConfusionMatrix = ev.Accuracy, ev.Evaluated, ev.Confusion
	}
	writeJSON(w, http.StatusOK, resp)
}

// listImages lists up to Config.MaxObjects images below folder, looking at
// no more than 20 times as many objects.
func (s *Server) listImages(ctx context.Context, bucket, folder string) ([]blob.Attrs, error) {
	ctx, cancel := context.WithTimeout(ctx, s.Config.StorageTimeout)
	defer cancel()
	st, err := s.Storage.Open(ctx, "gs://"+bucket)
	if err != nil {
		return nil, err
	}
	return blob.Collect(ctx, st, blob.ListOptions{Prefix: folder},
		blob.Limits{Keep: LooksLikeImage, Max: s.Config.MaxObjects, Scan: 20 * s.Config.MaxObjects})
}

// imageExtensions are what a prefix listing treats as images when an
// object's content type does not say.
var imageExtensions = map[string]bool{".jpg": true, ".jpeg": true, ".png": true, ".webp": true}

// LooksLikeImage decides from name and content type whether a listed
// object is worth classifying (the bytes are sniffed anyway): the prefix
// mode's filter, exported so that the batch job takes the same objects.
func LooksLikeImage(o blob.Attrs) bool {
	if strings.HasPrefix(o.ContentType, "image/") {
		return true
	}
	return imageExtensions[strings.ToLower(path.Ext(o.Key))]
}
