package preprocess_test

import (
	"encoding/json"
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

// TestGoldenThroughModelJSON: serving reads the spec back from model.json,
// so the golden tensor must survive the spec's JSON round trip.
func TestGoldenThroughModelJSON(t *testing.T) {
	b, err := json.Marshal(preprocesstest.GoldenSpec)
	if err != nil {
		t.Fatal(err)
	}
	var s preprocess.Spec
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	x := make([]float32, s.TensorLen())
	if err := s.Process(preprocesstest.GoldenJPEG, preprocess.Limits{}, x); err != nil {
		t.Fatal(err)
	}
	if got := preprocesstest.TensorDigest(x); got != preprocesstest.GoldenDigest {
		t.Errorf("after the JSON round trip (%s): digest %s, want %s", b, got, preprocesstest.GoldenDigest)
	}
}
