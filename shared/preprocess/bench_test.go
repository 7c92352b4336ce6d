package preprocess

import (
	"fmt"
	"testing"
)

// BenchmarkProcess measures the whole serving path (decode, fit, resize,
// tensor) for the sizes Orchard sees: Fruits-360 crops, 1080p frames and
// 12 MP phone photos.
func BenchmarkProcess(b *testing.B) {
	spec := DefaultSpec(32)
	for _, sz := range []struct {
		name string
		w, h int
	}{
		{"100x100", 100, 100},
		{"1080p", 1920, 1080},
		{"12MP", 4000, 3000},
	} {
		j := encodeJPEG(b, testImage(sz.w, sz.h, 9), 90)
		dst := make([]float32, spec.TensorLen())
		b.Run(fmt.Sprintf("jpeg_%s", sz.name), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(j)))
			for b.Loop() {
				if err := spec.Process(j, Limits{}, dst); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
