package train

import (
	"slices"
	"strings"
	"testing"

	"github.com/orchard-mlops/orchard/shared/model/modeltest"
	"github.com/orchard-mlops/orchard/trainer/config"
)

// TestVerifyDefaultToleranceCatchesExportErrors: the default tolerance is
// loose enough for float32 differences between GoMLX and onnxruntime, and
// still rejects a logit 0.01 off (an export bug moves logits far more).
func TestVerifyDefaultToleranceCatchesExportErrors(t *testing.T) {
	m := modeltest.Colour(t, modeltest.Options{})
	v := m.Verification
	tol := config.Default().Export.Tolerance
	if _, _, err := Verify(m, v.Inputs, v.Logits, v.Images, 2, tol); err != nil {
		t.Fatalf("exact logits: %v", err)
	}
	off := slices.Clone(v.Logits)
	off[4] += 0.01
	_, _, err := Verify(m, v.Inputs, off, v.Images, 2, tol)
	if err == nil || !strings.Contains(err.Error(), "max |logit diff|") {
		t.Fatalf("a logit 0.01 off with tolerance %g: err %v, want a verification failure", tol, err)
	}
}
