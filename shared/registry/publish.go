package registry

import (
	"context"
	"fmt"

	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/shared/model"
)

// PublishOptions configure Publish.
type PublishOptions struct {
	// Name is the registry model name; default model.json's name. When set,
	// it must equal model.json's name (train with -set name=<Name>), so the
	// served metadata never contradicts the registry.
	Name string
	// Version defaults to model.json's version; when set it must equal it.
	Version string
	// Promote runs the quality gate and, if it passes, moves Alias
	// (production by default) to the new version.
	Promote bool
	Alias   string
	// Margin and AllowNewLabels tune the gate (see GateOptions).
	Margin         float64
	AllowNewLabels bool
	// Eval is the operator's evaluation set for the gate (see
	// PromoteOptions.Eval); nil compares self-reported validation accuracy.
	Eval *EvalSet
	// Runtime runs the gate's checks (see PromoteOptions.Runtime); required
	// with Promote.
	Runtime Runtime
	// By and Reason are recorded with the decision and the alias move
	// (e.g. the requester and the training job).
	By     string
	Reason string
}

// PublishResult describes what Publish did.
type PublishResult struct {
	Name     string
	Version  string
	URI      string    // the version's folder in the registry
	Created  bool      // false: the identical version was already stored
	Decision *Decision // nil unless Promote was asked
}

// Promoted reports whether the alias now names the published version.
func (p *PublishResult) Promoted() bool { return p.Decision != nil && p.Decision.Accepted }

// Publish copies a finished training output directory (model.onnx,
// model.json, the report; gs://, file:// or a path) into the registry as an
// immutable version, then, if asked, runs the quality gate and promotes it,
// and finally sends a model-published event through the registry's
// Notifier. It is safe to call again with the same directory (e.g. a
// retried training job): the copy is a no-op and the gate is re-run.
//
// A gate rejection is not an error: check PublishResult.Promoted.
func Publish(ctx context.Context, reg *Registry, modelDir string, o PublishOptions) (*PublishResult, error) {
	src, err := reg.opener.Open(ctx, modelDir)
	if err != nil {
		return nil, fmt.Errorf("publish: %w", err)
	}
	return PublishFrom(ctx, reg, src, o)
}

// PublishFrom is Publish from an open store.
func PublishFrom(ctx context.Context, reg *Registry, src blob.Store, o PublishOptions) (*PublishResult, error) {
	if o.Promote && o.Runtime == nil { // refuse before storing anything
		return nil, fmt.Errorf("publish: %w", ErrNoRuntime)
	}
	m, err := model.LoadFrom(ctx, src) // validates model.json and the recorded sha256s
	if err != nil {
		return nil, fmt.Errorf("publish: %w", err)
	}
	meta := m.Metadata
	name, version := o.Name, o.Version
	if name == "" {
		name = meta.Name
	}
	if version == "" {
		version = meta.Version
	}
	if name != meta.Name {
		return nil, fmt.Errorf("publish: %w: model.json names model %q, not %q (train with -set name=%s)", ErrInvalid, meta.Name, name, name)
	}
	if version != meta.Version {
		return nil, fmt.Errorf("publish: %w: model.json has version %q, not %q", ErrInvalid, meta.Version, version)
	}
	put, err := reg.PutVersion(ctx, name, version, src)
	if err != nil {
		return nil, fmt.Errorf("publish: %w", err)
	}
	res := &PublishResult{Name: name, Version: version, URI: put.URI, Created: put.Created}
	if o.Promote {
		d, err := reg.Promote(ctx, name, version, PromoteOptions{
			GateOptions: GateOptions{Margin: o.Margin, AllowNewLabels: o.AllowNewLabels},
			Alias:       o.Alias, By: o.By, Reason: o.Reason, Eval: o.Eval, Runtime: o.Runtime,
		})
		if err != nil {
			return res, fmt.Errorf("publish: %w", err)
		}
		res.Decision = d
	}
	ev := Event{Type: EventPublished, Model: name, Version: version, URI: put.URI, Promoted: res.Promoted()}
	if res.Decision != nil {
		ev.Alias, ev.Reason = res.Decision.Alias, res.Decision.Reason
	}
	reg.notify(ctx, ev)
	return res, nil
}
