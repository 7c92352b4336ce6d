package preprocess

import (
	"image"
	"math"
	"testing"
)

// TestStatsOfKnownCanvases checks each statistic on canvases whose values
// are known by construction.
func TestStatsOfKnownCanvases(t *testing.T) {
	spec := DefaultSpec(8)
	fill := func(f func(x, y int) [3]uint8) *image.RGBA {
		m := image.NewRGBA(image.Rect(0, 0, 8, 8))
		for y := range 8 {
			for x := range 8 {
				p := f(x, y)
				i := m.PixOffset(x, y)
				m.Pix[i], m.Pix[i+1], m.Pix[i+2], m.Pix[i+3] = p[0], p[1], p[2], 255
			}
		}
		return m
	}
	near := func(name string, got, want float64) {
		t.Helper()
		if math.Abs(got-want) > 1e-9 {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	dst := make([]float32, spec.TensorLen())
	src := Source{Width: 300, Height: 200, Format: JPEG}

	// Flat mid grey: luma 0.5 (128/255), no contrast, no saturation, no foreground.
	st, err := spec.TensorStats(fill(func(int, int) [3]uint8 { return [3]uint8{128, 128, 128} }), src, dst)
	if err != nil {
		t.Fatal(err)
	}
	near("grey luminance", st.Luminance, 128.0/255)
	near("grey contrast", st.Contrast, 0)
	near("grey saturation", st.Saturation, 0)
	near("grey foreground", st.Foreground, 0)
	if st.Width != 300 || st.Height != 200 || st.Format != string(JPEG) {
		t.Errorf("source fields %+v, want 300x200 jpeg", st)
	}
	near("aspect", st.Aspect, 1.5)

	// A pure red 4x4 square in the middle of white: a quarter foreground,
	// saturation 1 on that quarter, luma a mix of 1 and 0.299.
	st, err = spec.TensorStats(fill(func(x, y int) [3]uint8 {
		if x >= 2 && x < 6 && y >= 2 && y < 6 {
			return [3]uint8{255, 0, 0}
		}
		return [3]uint8{255, 255, 255}
	}), src, dst)
	if err != nil {
		t.Fatal(err)
	}
	near("red foreground", st.Foreground, 0.25)
	near("red saturation", st.Saturation, 0.25) // chroma 1 on a quarter
	near("red luminance", st.Luminance, 0.75+0.25*0.299)
	// Two values 1 and 0.299 with weights 3/4 and 1/4: std = sqrt(pq)*|a-b|.
	near("red contrast", st.Contrast, math.Sqrt(0.75*0.25)*(1-0.299))

	// The tensor written alongside is the one Tensor writes.
	want := make([]float32, spec.TensorLen())
	m := fill(func(x, y int) [3]uint8 { return [3]uint8{uint8(30 * x), uint8(20 * y), 7} })
	if err := spec.Tensor(m, want); err != nil {
		t.Fatal(err)
	}
	if _, err := spec.TensorStats(m, src, dst); err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if want[i] != dst[i] {
			t.Fatalf("TensorStats wrote %v at %d, Tensor %v", dst[i], i, want[i])
		}
	}
}

// TestProcessStatsMatchesProcess: the same tensor as Process, and the
// source fields from the container, not the scaled decode.
func TestProcessStatsMatchesProcess(t *testing.T) {
	spec := DefaultSpec(32)
	j := encodeJPEG(t, testImage(640, 480, 5), 90)
	want := make([]float32, spec.TensorLen())
	got := make([]float32, spec.TensorLen())
	if err := spec.Process(j, Limits{}, want); err != nil {
		t.Fatal(err)
	}
	st, err := spec.ProcessStats(j, Limits{}, got)
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if want[i] != got[i] {
			t.Fatalf("ProcessStats tensor differs at %d", i)
		}
	}
	if st.Width != 640 || st.Height != 480 || st.Format != string(JPEG) {
		t.Errorf("source %dx%d %s, want 640x480 jpeg", st.Width, st.Height, st.Format)
	}
	if st.Luminance <= 0 || st.Luminance >= 1 || st.Contrast <= 0 {
		t.Errorf("pixel stats of a noisy image: %+v", st)
	}
	if _, err := spec.ProcessStats([]byte("GIF89a"), Limits{}, got); err == nil {
		t.Error("ProcessStats accepted a GIF")
	}
}
