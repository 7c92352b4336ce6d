package dataset

import (
	"context"
	"os"
	"path/filepath"
	"testing"
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
