package registry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/orchard-mlops/orchard/shared/blob"
)

// AliasGeneration is the generation of an alias's object, read with one
// metadata request: what a watcher polls to see whether the alias moved. A
// missing alias is ErrNotFound.
func (r *Registry) AliasGeneration(ctx context.Context, name, alias string) (int64, error) {
	attrs, err := r.store.Attributes(ctx, aliasKey(name, alias))
	if err != nil {
		if errors.Is(err, blob.ErrNotFound) {
			return 0, fmt.Errorf("alias %s of model %s: %w", alias, name, ErrNotFound)
		}
		return 0, err
	}
	return attrs.Generation, nil
}

// Logger is the registry's logger (Options.Logger; discarding by default).
func (r *Registry) Logger() *slog.Logger { return r.log }
