// Package trainertest builds the trainer binary for tests that run it the
// way Vertex AI does: as a process of its own.
package trainertest

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Build compiles trainer/cmd/trainer into a temporary directory of t, with
// GOEXPERIMENT=simd as make builds it, and returns the binary's path.
func Build(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "trainer")
	build := exec.Command("go", "build", "-o", bin, "github.com/orchard-mlops/orchard/trainer/cmd/trainer")
	build.Env = append(os.Environ(), "GOEXPERIMENT=simd")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building trainer/cmd/trainer: %v\n%s", err, out)
	}
	return bin
}
