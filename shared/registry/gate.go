package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/shared/errlist"
	"github.com/orchard-mlops/orchard/shared/model"
)

// accuracyEpsilon absorbs float noise in the accuracy comparison.
const accuracyEpsilon = 1e-9

// GateOptions tune the quality gate.
type GateOptions struct {
	// Margin is how much lower than the current production's validation
	// accuracy a candidate may be (default 0: at least as good).
	Margin float64
	// AllowNewLabels accepts a candidate whose label set differs from
	// production's (a new label set is intended). Accuracy is still
	// compared.
	AllowNewLabels bool
}

// Gate decides whether cand may replace prod (nil: there is no production
// yet, and any valid candidate passes). It compares the ORT-measured
// validation accuracy (model.json's metrics.validation_accuracy, measured by
// the trainer with onnxruntime on the exported graph), the input tensor and
// preprocessing spec (which must be equal: clients and the functions rely on
// them), and the label set (order may differ: answers are label names).
// The reason is a human-readable sentence either way.
func Gate(cand, prod *model.Metadata, o GateOptions) (bool, string) {
	base := 0.0
	if prod != nil {
		base = prod.Metrics.ValidationAccuracy
	}
	return gate(cand, prod, score{"validation accuracy", cand.Metrics.ValidationAccuracy, base}, o)
}

// score is what the gate compares: the candidate's and production's
// accuracy, measured the same way.
type score struct {
	what       string // "validation accuracy" (self-reported) or the evaluation set's
	cand, prod float64
}

func gate(cand, prod *model.Metadata, s score, o GateOptions) (bool, string) {
	if o.Margin < 0 {
		return false, fmt.Sprintf("negative margin %g", o.Margin)
	}
	acc := s.cand
	if acc <= 0 || acc > 1 {
		return false, fmt.Sprintf("%s %g is not in (0, 1]: the model has no ORT-verified metric", s.what, acc)
	}
	if prod == nil {
		return true, fmt.Sprintf("no production version yet; %s %.4f", s.what, acc)
	}
	var problems []string
	if !slices.Equal(cand.Input.Shape, prod.Input.Shape) {
		problems = append(problems, fmt.Sprintf("input shape %v differs from production's %v", cand.Input.Shape, prod.Input.Shape))
	}
	if cand.Preprocessing != prod.Preprocessing {
		problems = append(problems, fmt.Sprintf("preprocessing %+v differs from production's %+v", cand.Preprocessing, prod.Preprocessing))
	}
	if !sameSet(cand.Labels, prod.Labels) {
		if o.AllowNewLabels {
			// Recorded in the accepted reason below.
		} else {
			problems = append(problems, fmt.Sprintf("labels %q differ from production's %q (set allow_new_labels if a new label set is intended)",
				cand.Labels, prod.Labels))
		}
	}
	base := s.prod
	if acc+accuracyEpsilon < base-o.Margin {
		problems = append(problems, fmt.Sprintf("%s %.4f is below production %s's %.4f minus margin %g",
			s.what, acc, prod.Version, base, o.Margin))
	}
	if len(problems) > 0 {
		return false, strings.Join(problems, "; ")
	}
	reason := fmt.Sprintf("%s %.4f >= production %s's %.4f minus margin %g", s.what, acc, prod.Version, base, o.Margin)
	if !sameSet(cand.Labels, prod.Labels) {
		reason += "; new label set accepted (allow_new_labels)"
	}
	return true, reason
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	x, y := slices.Clone(a), slices.Clone(b)
	slices.Sort(x)
	slices.Sort(y)
	return slices.Equal(x, y)
}

// Decision is the content of decisions/<version>.json: the gate's last
// verdict on a version.
type Decision struct {
	Model            string  `json:"model"`
	Version          string  `json:"version"`
	Alias            string  `json:"alias"`
	Accepted         bool    `json:"accepted"`
	Reason           string  `json:"reason"`
	Accuracy         float64 `json:"validation_accuracy"`
	Baseline         string  `json:"baseline_version,omitempty"`
	BaselineAccuracy float64 `json:"baseline_validation_accuracy,omitempty"`
	Margin           float64 `json:"margin"`
	AllowNewLabels   bool    `json:"allow_new_labels,omitempty"`
	Forced           bool    `json:"forced,omitempty"`
	// The operator's evaluation set, when the gate had one: both models'
	// accuracy on it (what was compared).
	EvalURI              string    `json:"eval_uri,omitempty"`
	EvalImages           int       `json:"eval_images,omitempty"`
	EvalAccuracy         float64   `json:"eval_accuracy,omitempty"`
	BaselineEvalAccuracy float64   `json:"baseline_eval_accuracy,omitempty"`
	By                   string    `json:"by,omitempty"`
	At                   time.Time `json:"at"`
}

// Decision reads a version's last gate decision.
func (r *Registry) Decision(ctx context.Context, name, version string) (*Decision, error) {
	if err := errlist.Join(ValidName(name), ValidVersion(version)); err != nil {
		return nil, err
	}
	b, _, err := r.store.Read(ctx, decisionKey(name, version), 1<<20)
	if err != nil {
		if errors.Is(err, blob.ErrNotFound) {
			return nil, fmt.Errorf("decision on %s/%s: %w", name, version, ErrNotFound)
		}
		return nil, fmt.Errorf("registry: %w", err)
	}
	var d Decision
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("registry: parsing decision %s/%s: %w", name, version, err)
	}
	return &d, nil
}

func (r *Registry) writeDecision(ctx context.Context, d *Decision) error {
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return err
	}
	if _, err := r.store.Write(ctx, decisionKey(d.Model, d.Version), append(b, '\n'), blob.WriteOptions{ContentType: "application/json"}); err != nil {
		return fmt.Errorf("registry: recording decision: %w", err)
	}
	return nil
}

// Runtime opens a model to run it. The gate needs one to reproduce a
// candidate's verification logits and to score models on an evaluation set;
// shared/onnxrt.Runtime is the onnxruntime one. It is an interface so that
// the registry stays pure Go: what only publishes, lists or rolls back
// models (and CGO_ENABLED=0 builds) does not link onnxruntime.
type Runtime interface {
	Open(m *model.Model) (model.Runner, error)
}

// ErrNoRuntime means a promotion was asked of a binary without a Runtime:
// the gate cannot check the candidate, so no alias moves.
var ErrNoRuntime = errors.New("the quality gate must run the model with onnxruntime to reproduce its verification logits, " +
	"and this binary has none (build it with cgo: CGO_ENABLED=1, the default)")

// PromoteOptions configure Promote.
type PromoteOptions struct {
	GateOptions
	Alias  string // default Production
	By     string
	Reason string // why, recorded with the alias move
	// Force skips the quality comparison (the decision is recorded as
	// forced); the integrity check still runs.
	Force bool
	// Eval, if set, is the operator's evaluation set: candidate and
	// production are compared on it instead of on their self-reported
	// validation accuracy.
	Eval *EvalSet
	// Runtime runs the models the gate checks and scores; required (nil
	// fails with ErrNoRuntime, even with Force).
	Runtime Runtime
}

// Promote moves an alias (production by default) to version if the gate
// accepts it against the version the alias names at that moment. First the
// candidate's integrity is checked with o.Runtime (model.Model.Verified:
// sha256 of the graph, onnxruntime loads it and it matches model.json, the
// verification logits are reproduced); a failure is a recorded rejection
// and the alias is not touched. Without a Runtime nothing is judged and
// the error wraps ErrNoRuntime. The
// comparison and the move are one compare-and-swap: if the alias moves in
// between, the candidate is judged again against the new target. The
// decision is recorded either way and returned; a rejection is not an
// error. Promoting the version the alias already names is accepted as a
// no-op.
func (r *Registry) Promote(ctx context.Context, name, version string, o PromoteOptions) (*Decision, error) {
	if o.Alias == "" {
		o.Alias = Production
	}
	if o.Runtime == nil {
		return nil, fmt.Errorf("promoting %s/%s to %s: %w", name, version, o.Alias, ErrNoRuntime)
	}
	cand, err := r.Metadata(ctx, name, version)
	if err != nil {
		return nil, err
	}
	d0 := &Decision{Model: name, Version: version, Alias: o.Alias, Accuracy: cand.Metrics.ValidationAccuracy,
		Margin: o.Margin, AllowNewLabels: o.AllowNewLabels, Forced: o.Force, By: o.By, At: r.now().UTC()}
	candEval, err := r.checkCandidate(ctx, name, version, o, d0)
	if err != nil {
		return nil, err
	}
	if d0.Reason != "" { // refused: integrity or evaluation failed
		return d0, r.recordDecision(ctx, d0)
	}
	var d *Decision
	prodCache := map[string]*model.Metadata{}
	prodEval := map[string]float64{}
	_, err = r.moveAliasReason(ctx, name, o.Alias, 0, func(cur *Alias) (string, string, string, error) {
		dd := *d0
		d = &dd
		var prod *model.Metadata
		if cur != nil {
			d.Baseline = cur.Version
			if cur.Version == version {
				d.Accepted, d.Reason = true, fmt.Sprintf("%s already names %s", o.Alias, version)
				d.BaselineAccuracy = cand.Metrics.ValidationAccuracy
				return "", "", "", nil
			}
			prod = prodCache[cur.Version]
			if prod == nil {
				m, err := r.Metadata(ctx, name, cur.Version)
				if err != nil {
					return "", "", "", fmt.Errorf("reading %s's current version: %w", o.Alias, err)
				}
				prod, prodCache[cur.Version] = m, m
			}
			d.BaselineAccuracy = prod.Metrics.ValidationAccuracy
		}
		s := score{"validation accuracy", cand.Metrics.ValidationAccuracy, d.BaselineAccuracy}
		if o.Eval != nil {
			s = score{"accuracy on the evaluation set " + o.Eval.URI(), candEval, 0}
			if cur != nil && !o.Force {
				acc, ok := prodEval[cur.Version]
				if !ok {
					var err error
					if acc, err = r.scoreVersion(ctx, o.Eval, name, cur.Version, o.Runtime); err != nil {
						// A production that cannot even be scored is no bar.
						r.log.ErrorContext(ctx, "quality gate: production cannot be scored on the evaluation set",
							"model", name, "version", cur.Version, "err", err)
					}
					prodEval[cur.Version] = acc
				}
				s.prod, d.BaselineEvalAccuracy = acc, acc
			}
		}
		if o.Force {
			d.Accepted, d.Reason = true, "forced past the gate"
		} else {
			d.Accepted, d.Reason = gate(cand, prod, s, o.GateOptions)
		}
		if !d.Accepted {
			return "", "", "", nil
		}
		reason := d.Reason
		if o.Reason != "" {
			reason = o.Reason + " (" + d.Reason + ")"
		}
		return version, ActionPromote, reason, nil
	}, o.By)
	if err != nil {
		return nil, err
	}
	if werr := r.recordDecision(ctx, d); werr != nil {
		return d, werr
	}
	if d.Accepted && d.Baseline != version {
		r.notify(ctx, Event{Type: EventAliasMoved, Model: name, Version: version, Alias: o.Alias,
			URI: r.VersionURI(name, version), Promoted: true, Reason: d.Reason})
	}
	return d, nil
}

// checkCandidate runs the candidate's integrity check and, with an
// evaluation set, scores it. A refusal is written into d (Reason set,
// Accepted false); an error means the check could not run (storage).
func (r *Registry) checkCandidate(ctx context.Context, name, version string, o PromoteOptions, d *Decision) (float64, error) {
	m, err := r.LoadModel(ctx, name, version)
	if err != nil && !errors.Is(err, model.ErrIntegrity) {
		return 0, err
	}
	var c model.Runner
	if err == nil {
		c, err = m.Verified(o.Runtime.Open)
	}
	if err != nil {
		d.Reason = "integrity check failed: " + err.Error()
		return 0, nil
	}
	defer c.Close()
	if o.Eval == nil {
		return 0, nil
	}
	acc, n, err := o.Eval.Score(ctx, c)
	if err != nil {
		d.Reason = "scoring on the evaluation set failed: " + err.Error()
		return 0, nil
	}
	d.EvalURI, d.EvalImages, d.EvalAccuracy = o.Eval.URI(), n, acc
	return acc, nil
}

// recordDecision writes and logs a decision.
func (r *Registry) recordDecision(ctx context.Context, d *Decision) error {
	if err := r.writeDecision(ctx, d); err != nil {
		return err
	}
	level, log := "promoted", r.log.InfoContext
	if !d.Accepted {
		level = "rejected"
		if strings.HasPrefix(d.Reason, "integrity") {
			log = r.log.ErrorContext
		}
	}
	log(ctx, "quality gate "+level, "model", d.Model, "version", d.Version, "alias", d.Alias,
		"accepted", d.Accepted, "reason", d.Reason, "baseline", d.Baseline,
		"eval_accuracy", d.EvalAccuracy, "baseline_eval_accuracy", d.BaselineEvalAccuracy)
	return nil
}

// RollbackOptions configure Rollback.
type RollbackOptions struct {
	Alias string // default Production
	// To is the version to go back to; empty picks the most recent earlier
	// target in the alias's history that was not itself rolled back from.
	To     string
	By     string
	Reason string
}

// Rollback moves an alias back to an earlier version, without the gate
// (an operator's decision). It returns the alias after the move.
func (r *Registry) Rollback(ctx context.Context, name string, o RollbackOptions) (*Alias, error) {
	if o.Alias == "" {
		o.Alias = Production
	}
	if o.To != "" {
		if _, err := r.Metadata(ctx, name, o.To); err != nil {
			return nil, err
		}
	}
	a, err := r.moveAlias(ctx, name, o.Alias, 0, func(cur *Alias) (string, string, error) {
		if cur == nil {
			return "", "", fmt.Errorf("alias %s of model %s: %w", o.Alias, name, ErrNotFound)
		}
		to := o.To
		if to == "" {
			var err error
			if to, err = r.rollbackTarget(ctx, name, cur); err != nil {
				return "", "", err
			}
		}
		if to == cur.Version {
			return "", "", nil
		}
		return to, ActionRollback, nil
	}, MoveOptions{By: o.By, Reason: o.Reason})
	if err != nil {
		return nil, err
	}
	r.notify(ctx, Event{Type: EventAliasMoved, Model: name, Version: a.Version, Alias: o.Alias,
		URI: r.VersionURI(name, a.Version), Reason: "rollback: " + o.Reason})
	return a, nil
}

// rollbackTarget walks the history for the most recent earlier version that
// still exists and that a rollback did not move away from.
func (r *Registry) rollbackTarget(ctx context.Context, name string, cur *Alias) (string, error) {
	states := append([]AliasChange{cur.AliasChange}, cur.History...)
	bad := map[string]bool{cur.Version: true}
	for i := 0; i+1 < len(states); i++ {
		if states[i].Action == ActionRollback {
			bad[states[i+1].Version] = true
		}
	}
	for _, s := range states[1:] {
		if bad[s.Version] {
			continue
		}
		if _, err := r.Metadata(ctx, name, s.Version); err == nil {
			return s.Version, nil
		}
	}
	return "", fmt.Errorf("%w: alias %s of model %s has no earlier version to roll back to", ErrNotFound, cur.Alias, name)
}
