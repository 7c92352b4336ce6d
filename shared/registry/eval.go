package registry

import (
	"context"
	"fmt"
	"path"
	"strings"

	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/shared/model"
	"github.com/orchard-mlops/orchard/shared/preprocess"
)

// MaxEvalImages bounds an evaluation set, so a mistaken prefix cannot make
// the gate read a whole bucket.
const MaxEvalImages = 20000

// EvalSet is the operator's evaluation set: a folder-per-class prefix
// (<class>/<image>) set in the deployment (EVAL_URI), never in a training
// request. The gate scores the candidate and the current production on it,
// so no request can choose the data its model is judged on.
type EvalSet struct {
	store  blob.Store
	images []evalImage
}

type evalImage struct{ key, label string }

// OpenEvalSet lists the evaluation set at uri (gs://bucket/prefix,
// file:///dir or a path), opened by op (nil: local paths only).
func OpenEvalSet(ctx context.Context, op *blob.Opener, uri string) (*EvalSet, error) {
	st, err := op.Open(ctx, uri)
	if err != nil {
		return nil, fmt.Errorf("evaluation set: %w", err)
	}
	objs, err := blob.Collect(ctx, st, blob.ListOptions{}, blob.Limits{})
	if err != nil {
		return nil, fmt.Errorf("evaluation set %s: %w", uri, err)
	}
	e := &EvalSet{store: st}
	for _, o := range objs {
		label, file, ok := strings.Cut(o.Key, "/")
		if !ok || strings.Contains(file, "/") || strings.HasPrefix(path.Base(file), ".") {
			continue
		}
		e.images = append(e.images, evalImage{key: o.Key, label: label})
	}
	switch {
	case len(e.images) == 0:
		return nil, fmt.Errorf("evaluation set %s holds no <class>/<image> files", uri)
	case len(e.images) > MaxEvalImages:
		return nil, fmt.Errorf("evaluation set %s holds %d images, more than %d", uri, len(e.images), MaxEvalImages)
	}
	return e, nil
}

// URI is where the set lives.
func (e *EvalSet) URI() string { return e.store.URI("") }

// Score classifies every image and returns the top-1 accuracy. An image
// whose class the model does not know counts as wrong; an undecodable
// image is an error (the operator's set should be clean).
func (e *EvalSet) Score(ctx context.Context, c model.Runner) (float64, int, error) {
	correct := 0
	for _, im := range e.images {
		b, _, err := e.store.Read(ctx, im.key, preprocess.DefaultMaxBytes)
		if err != nil {
			return 0, 0, fmt.Errorf("evaluation set: %w", err)
		}
		p, err := c.Classify(b, 1)
		if err != nil {
			return 0, 0, fmt.Errorf("evaluation set %s: %w", e.store.URI(im.key), err)
		}
		if p[0].Label == im.label {
			correct++
		}
	}
	return float64(correct) / float64(len(e.images)), len(e.images), nil
}

// scoreVersion loads a version and scores it on the set.
func (r *Registry) scoreVersion(ctx context.Context, e *EvalSet, name, version string, rt Runtime) (float64, error) {
	m, err := r.LoadModel(ctx, name, version)
	if err != nil {
		return 0, err
	}
	c, err := rt.Open(m)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	acc, _, err := e.Score(ctx, c)
	return acc, err
}
