package dataset

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/orchard-mlops/orchard/shared/preprocess"
	"github.com/orchard-mlops/orchard/shared/preprocess/preprocesstest"
)

// TestGoldenTensor pins the trainer's side of the no-skew contract: the
// golden image, loaded as part of a dataset (decode, Fit, then Tensor, a
// different call sequence from the serving functions' Spec.Process), gives
// exactly the golden tensor that serving gives.
func TestGoldenTensor(t *testing.T) {
	dir := t.TempDir()
	// Two classes of two copies each: the split needs an image per side.
	for _, p := range []string{"class a/golden.jpg", "class a/golden 2.jpg", "class b/golden copy.jpg", "class b/golden copy 2.jpg"} {
		path := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, preprocesstest.GoldenJPEG, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, g := range []struct {
		spec   preprocess.Spec
		digest string
	}{
		{preprocesstest.GoldenSpec, preprocesstest.GoldenDigest},
		{preprocesstest.GoldenPaddedSpec, preprocesstest.GoldenPaddedDigest},
		{preprocesstest.GoldenCanonicalSpec, preprocesstest.GoldenCanonicalDigest},
		{preprocesstest.GoldenSmallSpec, preprocesstest.GoldenSmallDigest},
	} {
		o := opts(dir, g.spec.Size)
		o.Spec = g.spec
		o.ValidationFraction = 0.5
		ds, err := Load(context.Background(), o)
		if err != nil {
			t.Fatal(err)
		}
		samples := append(append([]Sample{}, ds.Train...), ds.Validation...)
		if len(samples) != 4 {
			t.Fatalf("%d samples, want 4 (skipped: %+v)", len(samples), ds.Skipped)
		}
		for _, s := range samples {
			if got := preprocesstest.TensorDigest(s.Tensor); got != g.digest {
				t.Errorf("%s: tensor digest %s, want the golden %s", s.Path, got, g.digest)
			}
		}
	}
}
