//go:build cgo

package main

import (
	"github.com/orchard-mlops/orchard/shared/onnxrt"
	"github.com/orchard-mlops/orchard/shared/registry"
)

// gateRuntime runs the quality gate's integrity check (reproducing the
// verification logits) and evaluation-set scores with onnxruntime. Without
// cgo (gate_nocgo.go) it is nil, and promote and sweep -publish refuse.
var gateRuntime registry.Runtime = onnxrt.Runtime{}
