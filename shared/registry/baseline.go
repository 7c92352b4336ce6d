package registry

import (
	"context"
	"fmt"

	"github.com/orchard-mlops/orchard/shared/errlist"
	"github.com/orchard-mlops/orchard/shared/monitor"
)

// Baseline reads a version's drift baseline (monitor.BaselineFile, which
// PutVersion copies with the rest of the model directory). A version
// trained before baselines existed gives an error wrapping
// blob.ErrNotFound.
func (r *Registry) Baseline(ctx context.Context, name, version string) (*monitor.Baseline, error) {
	if err := errlist.Join(ValidName(name), ValidVersion(version)); err != nil {
		return nil, err
	}
	b, _, err := r.store.Read(ctx, versionPrefix(name, version)+monitor.BaselineFile, monitor.MaxBaselineBytes)
	if err != nil {
		return nil, fmt.Errorf("registry: baseline of %s/%s: %w", name, version, err)
	}
	return monitor.ParseBaseline(b)
}
