package preprocess_test

import (
	"testing"

	"github.com/orchard-mlops/orchard/shared/preprocess"
	"github.com/orchard-mlops/orchard/shared/preprocess/preprocesstest"
)

// TestGolden pins the preprocessing output bit for bit. If it fails, a
// change altered what models see: every trained model would be served
// inputs that differ from its training data.
func TestGolden(t *testing.T) {
	s := preprocesstest.GoldenSpec
	x := make([]float32, s.TensorLen())
	if err := s.Process(preprocesstest.GoldenJPEG, preprocess.Limits{}, x); err != nil {
		t.Fatal(err)
	}
	// Twice, with a dirty buffer, to show no state leaks between calls.
	for i := range x {
		x[i] = -7
	}
	if err := s.Process(preprocesstest.GoldenJPEG, preprocess.Limits{}, x); err != nil {
		t.Fatal(err)
	}
	if got := preprocesstest.TensorDigest(x); got != preprocesstest.GoldenDigest {
		t.Errorf("golden tensor digest = %s, want %s", got, preprocesstest.GoldenDigest)
	}
}
