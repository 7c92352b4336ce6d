//go:build cgo

package main

import (
	"testing"

	"github.com/orchard-mlops/orchard/shared/onnxrt"
)

// TestGateRuntimeUnderCgo: the normal (cgo) build of the CLI verifies
// candidates with onnxruntime; the promote tests run through it. The
// CGO_ENABLED=0 build's refusal is checked by infra/checks/structure.sh,
// which builds and runs that binary.
func TestGateRuntimeUnderCgo(t *testing.T) {
	if _, ok := gateRuntime.(onnxrt.Runtime); !ok {
		t.Fatalf("gateRuntime is %T, want onnxrt.Runtime in a cgo build", gateRuntime)
	}
}
