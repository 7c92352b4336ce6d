//go:build !cgo

package main

import "github.com/orchard-mlops/orchard/shared/registry"

// gateRuntime is nil in a build without cgo, which cannot link onnxruntime:
// every other subcommand works, but the quality gate cannot reproduce a
// candidate's verification logits, so promote and sweep -publish fail with
// registry.ErrNoRuntime (naming the cgo build) and no alias moves.
var gateRuntime registry.Runtime
