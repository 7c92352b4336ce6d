package dataset

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/orchard-mlops/orchard/shared/preprocess"
	"github.com/orchard-mlops/orchard/trainer/config"
)

// BenchmarkLoad times Load (read, hash, decode, fit, tensor) on a real
// dataset: $ORCHARD_BENCH_DATA, or ../shared/datasets/fruits360-10/train
// beside the repository. It reports images per second.
//
//	go test -run '^$' -bench Load -benchtime 3x ./trainer/dataset
func BenchmarkLoad(b *testing.B) {
	dir := os.Getenv("ORCHARD_BENCH_DATA")
	if dir == "" {
		dir = filepath.Join("..", "..", "..", "shared", "datasets", "fruits360-10", "train")
	}
	if _, err := os.Stat(dir); err != nil {
		b.Skipf("no dataset at %s (set ORCHARD_BENCH_DATA): %v", dir, err)
	}
	var n int
	for b.Loop() {
		ds, err := Load(context.Background(), opts(dir, 32))
		if err != nil {
			b.Fatal(err)
		}
		n = len(ds.Train) + len(ds.Validation)
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "img/s")
}

// BenchmarkAugment times one augmented sample of a 100 x 100 photo (the
// Fruits-360 size) under the default config: for the default spec with
// augment.source canvas (the 32-pixel canvas is augmented) and photo (the
// 100-pixel photo is augmented, then fitted), and a canonical spec (the
// photo is augmented, then canonicalised).
//
//	go test -run '^$' -bench Augment ./trainer/dataset
func BenchmarkAugment(b *testing.B) {
	canonical := preprocess.DefaultSpec(32)
	canonical.Framing, canonical.Levels, canonical.Backdrop = preprocess.FramingObject, preprocess.LevelsObject, preprocess.BackdropRepaint
	for _, tc := range []struct {
		name   string
		spec   preprocess.Spec
		source string
	}{{"default", preprocess.DefaultSpec(32), config.SourceCanvas}, {"photo", preprocess.DefaultSpec(32), config.SourcePhoto},
		{"canonical", canonical, config.SourceCanvas}} {
		b.Run(tc.name, func(b *testing.B) {
			canvas, raw, _, err := tc.spec.CanvasRaw(fruitPNG(b, 100, 100, 45), preprocess.Limits{})
			if err != nil {
				b.Fatal(err)
			}
			cfg := config.Default().Augment
			cfg.Prob, cfg.Source = 1, tc.source
			a := &Augmenter{Cfg: cfg, Spec: tc.spec}
			s := &Sample{Canvas: canvas, Raw: raw}
			x := make([]float32, tc.spec.TensorLen())
			i := 0
			for b.Loop() {
				a.Apply(s, x, SampleRNG(1, 0, i))
				i++
			}
		})
	}
}
