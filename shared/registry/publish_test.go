package registry_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/shared/model/modeltest"
	"github.com/orchard-mlops/orchard/shared/registry"
)

// TestPromoteWithoutRuntime: a binary without onnxruntime (no Runtime, as
// in a CGO_ENABLED=0 build of the orchard CLI) cannot move an alias, forced
// or not: Publish with Promote and Promote fail with ErrNoRuntime, which
// names the cgo build, before anything is stored or moved.
func TestPromoteWithoutRuntime(t *testing.T) {
	ctx := t.Context()
	reg := registry.New(must(blob.NewDir(t.TempDir())), registry.Options{})
	_, err := registry.PublishFrom(ctx, reg, modelDir(t, modeltest.Options{Version: "v1"}), registry.PublishOptions{Promote: true})
	if !errors.Is(err, registry.ErrNoRuntime) || !strings.Contains(err.Error(), "CGO_ENABLED=1") {
		t.Fatalf("Publish with Promote and no Runtime = %v, want ErrNoRuntime naming the cgo build", err)
	}
	if vs, _ := reg.Versions(ctx, "colours"); len(vs) != 0 {
		t.Fatalf("a refused publish stored %v", vs)
	}
	publish(t, reg, modeltest.Options{Version: "v1"}, registry.PublishOptions{}) // storing needs no runtime
	for _, force := range []bool{false, true} {
		if _, err := reg.Promote(ctx, "colours", "v1", registry.PromoteOptions{Force: force}); !errors.Is(err, registry.ErrNoRuntime) {
			t.Errorf("Promote (force %v) without a Runtime = %v, want ErrNoRuntime", force, err)
		}
	}
	if a, err := reg.Alias(ctx, "colours", registry.Production); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("production is %+v, %v; want no alias", a, err)
	}
}
