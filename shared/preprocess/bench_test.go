package preprocess

import (
	"fmt"
	"image"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	xdraw "golang.org/x/image/draw"
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
			defer reportCPU(b)()
			for b.Loop() {
				if err := spec.Process(j, Limits{}, dst); err != nil {
					b.Fatal(err)
				}
			}
		})
		// Process with the drift statistics, as serving runs it; beside
		// the plain Process above, so -count interleaves the two.
		b.Run(fmt.Sprintf("jpeg_%s/stats", sz.name), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(j)))
			defer reportCPU(b)()
			for b.Loop() {
				if _, err := spec.ProcessStats(j, Limits{}, dst); err != nil {
					b.Fatal(err)
				}
			}
		})
		// The decode alone, at the scale Process uses: what is left after
		// scaling on load is libjpeg-turbo's entropy decoding.
		b.Run(fmt.Sprintf("jpeg_%s/decode_only", sz.name), func(b *testing.B) {
			b.SetBytes(int64(len(j)))
			for b.Loop() {
				if _, err := DecodeFor(j, Limits{}, spec.Size); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkResize is the Catmull-Rom pass alone, at the sizes Fit gives
// it (a 100x100 crop, and a box-reduced photo), beside x/image/draw's.
func BenchmarkResize(b *testing.B) {
	for _, sz := range [][2]int{{100, 100}, {72, 54}} {
		src := testImage(sz[0], sz[1], 3)
		dst := image.NewRGBA(image.Rect(0, 0, 32, 32))
		r := image.Rect(0, 0, 32, 32*sz[1]/sz[0])
		b.Run(fmt.Sprintf("%dx%d/fixed", sz[0], sz[1]), func(b *testing.B) {
			for b.Loop() {
				resizeOnto(dst, r, src, [3]uint8{255, 255, 255})
			}
		})
		b.Run(fmt.Sprintf("%dx%d/xdraw", sz[0], sz[1]), func(b *testing.B) {
			for b.Loop() {
				xdraw.CatmullRom.Scale(dst, r, src, src.Bounds(), xdraw.Over, nil)
			}
		})
	}
}

// BenchmarkReduce is the box reduction of a 12 MP source to about 2x a
// 32x32 target, for the layouts decoders return, beside the per-pixel
// conversion it replaced (image/draw into RGBA, row by row).
func BenchmarkReduce(b *testing.B) {
	srcs := reducerSources(b, 4000, 3000)
	for _, name := range []string{"ycbcr YCbCrSubsampleRatio420", "rgba", "nrgba", "gray", "nrgba64"} {
		src := srcs[name]
		b.Run(strings.Fields(name)[0], func(b *testing.B) {
			b.SetBytes(4000 * 3000)
			for b.Loop() {
				reduce(src, 62)
			}
		})
	}
}

// BenchmarkProcessSpec is the serving path under a base spec and a spec
// with canonical steps, interleaved image by image on one locked thread
// and timed in that thread's CPU time, so the waits of a loaded machine
// (which swing wall times by 2x between runs) count for neither:
// base-cpu-ns/op and canonical-cpu-ns/op per image, extra-cpu-% their
// difference. "all": an old spec against every canonical step
// (border-median pad, object framing and levels, backdrop repaint);
// "small": the border-median spec against it with small-object framing
// (the default config's spec since 2026-12-07).
func BenchmarkProcessSpec(b *testing.B) {
	old := DefaultSpec(32)
	canon := old
	canon.Pad, canon.Framing, canon.Levels, canon.Backdrop = PadBorderMedian, FramingObject, LevelsObject, BackdropRepaint
	padded := old
	padded.Pad = PadBorderMedian
	small := padded
	small.Framing = FramingSmall
	for _, pair := range []struct {
		name       string
		base, spec Spec
	}{{"all", old, canon}, {"small", padded, small}} {
		for _, sz := range []struct {
			name string
			w, h int
		}{{"100x100", 100, 100}, {"12MP", 4000, 3000}} {
			j := encodeJPEG(b, testImage(sz.w, sz.h, 9), 90)
			b.Run(pair.name+"/"+sz.name, func(b *testing.B) { benchSpecPair(b, j, pair.base, pair.spec) })
		}
	}
}

func benchSpecPair(b *testing.B, j []byte, base, spec Spec) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	dst := make([]float32, base.TensorLen())
	var spent [2]time.Duration
	n := 0
	for b.Loop() {
		for k, sp := range []Spec{base, spec} {
			t0 := threadCPU(b)
			if err := sp.Process(j, Limits{}, dst); err != nil {
				b.Fatal(err)
			}
			spent[k] += threadCPU(b) - t0
		}
		n++
	}
	b.ReportMetric(float64(spent[0].Nanoseconds())/float64(n), "base-cpu-ns/op")
	b.ReportMetric(float64(spent[1].Nanoseconds())/float64(n), "canonical-cpu-ns/op")
	b.ReportMetric(100*float64(spent[1]-spent[0])/float64(spent[0]), "extra-cpu-%")
}

// threadCPU is the CPU time the calling OS thread has used.
func threadCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_THREAD, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports the process's CPU time (user + system) per operation
// as cpu-ns/op when the returned function runs: on a machine shared with
// other jobs, wall time per op measures the load as much as the code.
func reportCPU(b *testing.B) func() {
	start := cpuTime(b)
	return func() {
		if b.N > 0 {
			b.ReportMetric(float64((cpuTime(b)-start).Nanoseconds())/float64(b.N), "cpu-ns/op")
		}
	}
}

func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkTensorStats is the tensor pass alone on a 32x32 canvas, without
// and with the drift statistics: their whole cost per image.
func BenchmarkTensorStats(b *testing.B) {
	spec := DefaultSpec(32)
	c := Fit(&Decoded{Image: testImage(100, 100, 4), Format: JPEG, Orientation: 1}, 32, spec.Background)
	dst := make([]float32, spec.TensorLen())
	b.Run("tensor", func(b *testing.B) {
		defer reportCPU(b)()
		for b.Loop() {
			if err := spec.Tensor(c, dst); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("tensor+stats", func(b *testing.B) {
		defer reportCPU(b)()
		for b.Loop() {
			if _, err := spec.TensorStats(c, Source{Width: 100, Height: 100, Format: JPEG}, dst); err != nil {
				b.Fatal(err)
			}
		}
	})
}
