package onnxrt_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/orchard-mlops/orchard/shared/model"
	"github.com/orchard-mlops/orchard/shared/model/modeltest"
	"github.com/orchard-mlops/orchard/shared/onnxrt"
	"github.com/orchard-mlops/orchard/shared/onnxrt/onnxrttest"
)

// TestIntegrity: Save records the graph's sha256 and the verification
// batch; Load refuses a truncated graph; CheckIntegrity refuses a graph
// that does not reproduce the recorded logits.
func TestIntegrity(t *testing.T) {
	onnxrttest.Init(t)
	ctx := context.Background()
	dir := modeltest.Dir(t, modeltest.Options{})
	m, err := model.Load(ctx, nil, dir)
	if err != nil {
		t.Fatal(err)
	}
	if m.Metadata.ONNXSHA256 != model.SHA256(m.ONNX) || m.Verification == nil {
		t.Fatalf("Save recorded sha %q, verification %v", m.Metadata.ONNXSHA256, m.Verification)
	}
	if err := onnxrt.CheckIntegrity(m, onnxrt.Options{}); err != nil {
		t.Fatalf("a good model fails the integrity check: %v", err)
	}

	m.Verification.Logits[1] += 0.5 // the graph no longer reproduces it
	if err := onnxrt.CheckIntegrity(m, onnxrt.Options{}); !errors.Is(err, model.ErrIntegrity) || !strings.Contains(err.Error(), "verification logit 1 of image 0") {
		t.Errorf("altered logits: %v", err)
	}
	m.Verification = nil
	if err := onnxrt.CheckIntegrity(m, onnxrt.Options{}); !errors.Is(err, model.ErrIntegrity) {
		t.Errorf("no verification batch: %v", err)
	}

	onnxPath := filepath.Join(dir, model.ONNXFile)
	b, _ := os.ReadFile(onnxPath)
	if err := os.WriteFile(onnxPath, b[:len(b)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := model.Load(ctx, nil, dir); !errors.Is(err, model.ErrIntegrity) || !strings.Contains(err.Error(), "truncated or replaced") {
		t.Errorf("truncated graph loaded: %v", err)
	}
}
