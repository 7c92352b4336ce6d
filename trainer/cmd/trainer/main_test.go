package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCLI(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		args    []string
		wantOut string
		wantErr string
	}{
		{"gen-data", []string{"gen-data", "-out", dir, "-classes", "3", "-per-class", "2", "-size", "16"}, "wrote 3 classes", ""},
		{"config override", []string{"config", "-set", "train.epochs=3", "-set", "model.widths=[8,16]"}, "epochs: 3", ""},
		{"config typo", []string{"config", "-set", "train.epoch=3"}, "", `unknown key "train.epoch"`},
		{"unknown command", []string{"fly"}, "", "unknown command"},
		{"train without output", []string{"train", "-data", dir}, "", "no output"},
		{"train missing data", []string{"train", "-data", filepath.Join(dir, "nope"), "-out", t.TempDir()}, "", "not a directory"},
		{"eval flags", []string{"eval", "-model", dir}, "", "required"},
		{"eval corruption", []string{"eval", "-model", dir, "-data", dir, "-corrupt", "fog"}, "", "unknown corruption"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.name == "train without output" {
				t.Setenv("AIP_MODEL_DIR", "")
			}
			var out, errb bytes.Buffer
			err := run(context.Background(), tt.args, &out, &errb)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out.String(), tt.wantOut) {
				t.Fatalf("output %q lacks %q", out.String(), tt.wantOut)
			}
		})
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 3 {
		t.Fatalf("gen-data wrote %v (%v)", entries, err)
	}
}

// TestSIMDWarning checks the start-up line against how this test binary
// was built: `make test` builds with GOEXPERIMENT=simd (no warning);
// `GOEXPERIMENT= go test` exercises the warning.
func TestSIMDWarning(t *testing.T) {
	var errb bytes.Buffer
	run(context.Background(), []string{"train", "-data", t.TempDir()}, &bytes.Buffer{}, &errb)
	got := strings.Count(errb.String(), "built without GOEXPERIMENT=simd")
	if want := map[bool]int{true: 0, false: 1}[simdBuild]; got != want {
		t.Errorf("simdBuild=%v: %d warning lines, want %d:\n%s", simdBuild, got, want, errb.String())
	}
}
