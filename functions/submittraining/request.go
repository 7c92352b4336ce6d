package submittraining

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"unicode"

	"github.com/orchard-mlops/orchard/shared/errlist"
	"github.com/orchard-mlops/orchard/trainer/config"
)

// Request is the JSON body of a training request message.
//
//	{"dataset": "gs://bucket/datasets/fruits", "model": "fruits",
//	 "overrides": ["train.epochs=5"], "requester": "alice@example.com",
//	 "notes": "more apples", "allow_new_labels": false}
type Request struct {
	// Dataset is the folder-per-class dataset: gs://bucket/prefix, or, only
	// where local data is allowed (local runs), file:///abs/path or /abs/path.
	Dataset string `json:"dataset"`
	// Model is the registry model name: ^[a-z][a-z0-9-]{0,62}$.
	Model string `json:"model"`
	// Overrides are trainer config overrides, "dotted.key=value".
	Overrides []string `json:"overrides,omitempty"`
	// Requester and Notes are recorded with the job (requester as a label).
	Requester string `json:"requester,omitempty"`
	Notes     string `json:"notes,omitempty"`
	// AllowNewLabels tells the quality gate that a new label set is intended.
	AllowNewLabels bool `json:"allow_new_labels,omitempty"`
}

// Limits on request fields.
const (
	MaxRequestBytes  = 64 << 10
	MaxOverrides     = 64
	MaxOverrideBytes = 512
	MaxRequester     = 256
	MaxNotes         = 4096
)

var (
	modelRE    = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)
	overrideRE = regexp.MustCompile(`^[a-z_.]+=.+$`)
	bucketRE   = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$`)
)

// Policy is what the operator lets requests do.
type Policy struct {
	// AllowLocalData permits local dataset paths (local runs only).
	AllowLocalData bool
	// Limits are the overridable keys and their bounds; nil means
	// config.DefaultLimits (TRAINING_OVERRIDE_LIMITS sets them, see
	// config.ParseLimits).
	Limits config.Limits
}

// ErrInvalidRequest marks a request that can never succeed; it is
// acknowledged and dropped, never retried.
var ErrInvalidRequest = errors.New("invalid training request")

// ParseRequest decodes a request strictly (unknown fields and trailing data
// are errors) and validates it against the operator's policy.
func ParseRequest(b []byte, p Policy) (*Request, error) {
	if len(b) > MaxRequestBytes {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrInvalidRequest, len(b), MaxRequestBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var r Request
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("%w: decoding JSON: %v", ErrInvalidRequest, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: trailing data after the JSON object", ErrInvalidRequest)
	}
	if err := r.ValidatePolicy(p); err != nil {
		return nil, err
	}
	return &r, nil
}

// Validate checks every field against the default limits (what `orchard
// train` checks before publishing; the function applies the operator's).
func (r *Request) Validate(allowLocalData bool) error {
	return r.ValidatePolicy(Policy{AllowLocalData: allowLocalData})
}

// ValidatePolicy checks every field, and the overrides against the
// policy's allow-list and bounds (config.CheckRequest), reporting all
// problems at once.
func (r *Request) ValidatePolicy(p Policy) error {
	allowLocalData := p.AllowLocalData
	var errs []error
	if !modelRE.MatchString(r.Model) {
		errs = append(errs, fmt.Errorf("model %q must match %s", r.Model, modelRE))
	}
	if err := validDataset(r.Dataset, allowLocalData); err != nil {
		errs = append(errs, err)
	}
	if len(r.Overrides) > MaxOverrides {
		errs = append(errs, fmt.Errorf("%d overrides, limit %d", len(r.Overrides), MaxOverrides))
	}
	syntaxOK := true
	for _, o := range r.Overrides {
		if len(o) > MaxOverrideBytes || !overrideRE.MatchString(o) {
			errs = append(errs, fmt.Errorf("override %q must match %s (at most %d bytes)", o, overrideRE, MaxOverrideBytes))
			syntaxOK = false
		}
	}
	if syntaxOK && len(r.Overrides) <= MaxOverrides {
		lim := p.Limits
		if lim == nil {
			lim = config.DefaultLimits()
		}
		if err := config.CheckRequest(r.Overrides, lim); err != nil {
			errs = append(errs, err)
		}
	}
	if len(r.Requester) > MaxRequester || hasControl(r.Requester) {
		errs = append(errs, fmt.Errorf("requester must be at most %d printable characters", MaxRequester))
	}
	if len(r.Notes) > MaxNotes {
		errs = append(errs, fmt.Errorf("notes longer than %d bytes", MaxNotes))
	}
	if err := errlist.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidRequest, err)
	}
	return nil
}

func validDataset(uri string, allowLocal bool) error {
	switch {
	case uri == "":
		return errors.New("dataset is required")
	case hasControl(uri) || strings.ContainsAny(uri, " \t"):
		return fmt.Errorf("dataset %q contains spaces or control characters", uri)
	case strings.HasPrefix(uri, "gs://"):
		bucket, rest, _ := strings.Cut(strings.TrimPrefix(uri, "gs://"), "/")
		if !bucketRE.MatchString(bucket) {
			return fmt.Errorf("dataset %q: %q is not a valid bucket name", uri, bucket)
		}
		if hasDotDot(rest) {
			return fmt.Errorf("dataset %q: '..' segments are not allowed", uri)
		}
		return nil
	case !allowLocal:
		return fmt.Errorf("dataset %q: must be a gs://bucket/path URI", uri)
	case strings.HasPrefix(uri, "file:///"):
		if hasDotDot(strings.TrimPrefix(uri, "file://")) {
			return fmt.Errorf("dataset %q: '..' segments are not allowed", uri)
		}
		return nil
	case strings.HasPrefix(uri, "/") && !strings.Contains(uri, "://"):
		if hasDotDot(uri) {
			return fmt.Errorf("dataset %q: '..' segments are not allowed", uri)
		}
		return nil
	}
	return fmt.Errorf("dataset %q: must be gs://bucket/path, file:///abs/path or an absolute path", uri)
}

func hasDotDot(p string) bool {
	for _, seg := range strings.Split(p, "/") {
		if seg == ".." {
			return true
		}
	}
	return false
}

func hasControl(s string) bool {
	return strings.IndexFunc(s, unicode.IsControl) >= 0
}
