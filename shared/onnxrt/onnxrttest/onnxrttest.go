// Package onnxrttest initialises onnxruntime for tests. It is apart from
// shared/onnxrt so that package testing is not linked into production
// binaries.
package onnxrttest

import (
	"os"
	"testing"

	"github.com/orchard-mlops/orchard/shared/onnxrt"
)

// Init initialises onnxruntime for a test. Without the library the test is
// skipped with the reason, except under CI (CI=true), where a missing
// library must fail the run rather than hide the core paths.
func Init(tb testing.TB) {
	tb.Helper()
	err := onnxrt.Init()
	if err == nil {
		return
	}
	if ci := os.Getenv("CI"); ci == "true" || ci == "1" {
		tb.Fatalf("onnxruntime is required under CI: %v", err)
	}
	tb.Skipf("skipping: %v", err)
}
