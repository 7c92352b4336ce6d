package preprocess

import (
	"image"
	"math"

	"github.com/orchard-mlops/orchard/shared/signals"
)

// ForegroundDistance is how far, in 0..255 levels of any channel, a pixel
// must be from the border median to count as foreground. JPEG ringing
// around a white background stays well under it.
const ForegroundDistance = 32

// Source is what the container says about an image before it is fitted.
type Source struct {
	Width, Height int
	Format        Format
}

// source is d's stored size and format.
func (d *Decoded) source() Source {
	w, h := d.stored()
	return Source{Width: w, Height: h, Format: d.Format}
}

// CanvasSource is Canvas, also returning what TensorStats needs about the
// source.
func (s Spec) CanvasSource(b []byte, lim Limits) (*image.RGBA, Source, error) {
	d, err := DecodeFor(b, lim, s.Size)
	if err != nil {
		return nil, Source{}, err
	}
	return s.Fit(d), d.source(), nil
}

// ProcessStats is Process, also returning the input's statistics: the
// trainer's baseline and every prediction compute them here, in the pass
// that builds the tensor, so the two can be compared.
func (s Spec) ProcessStats(b []byte, lim Limits, dst []float32) (signals.Stats, error) {
	c, src, err := s.CanvasSource(b, lim)
	if err != nil {
		return signals.Stats{}, err
	}
	return s.TensorStats(c, src, dst)
}

// TensorStats is Tensor, also returning the canvas's statistics with
// src's size and format.
func (s Spec) TensorStats(m *image.RGBA, src Source, dst []float32) (signals.Stats, error) {
	acc := newPixelStats(BorderMedian(m))
	if err := s.tensor(m, dst, acc); err != nil {
		return signals.Stats{}, err
	}
	st := acc.stats(s.Size * s.Size)
	st.Width, st.Height, st.Format = src.Width, src.Height, string(src.Format)
	if src.Height > 0 {
		st.Aspect = float64(src.Width) / float64(src.Height)
	}
	return st, nil
}

// pixelStats accumulates signals.Stats over rows of pixels in integers: exact,
// branch-free, and a few nanoseconds a pixel, so serving pays little for
// them (see BenchmarkTensorStats).
type pixelStats struct {
	bg          [3]int32
	luma, luma2 uint64 // sums of luma x1000 (0..255000) and of its square
	chroma      uint64 // sum of max - min channel
	fg          uint64
}

func newPixelStats(bg [3]uint8) *pixelStats {
	return &pixelStats{bg: [3]int32{int32(bg[0]), int32(bg[1]), int32(bg[2])}}
}

// addRow counts the pixels of one RGBA row.
func (a *pixelStats) addRow(row []uint8) {
	bg0, bg1, bg2 := a.bg[0], a.bg[1], a.bg[2]
	var luma, luma2, chroma, fg uint64
	for i := 0; i+3 < len(row); i += 4 {
		r, g, b := int32(row[i]), int32(row[i+1]), int32(row[i+2])
		y := uint64(299*r + 587*g + 114*b)
		luma += y
		luma2 += y * y
		chroma += uint64(max(r, g, b) - min(r, g, b))
		d := max(abs32(r-bg0), abs32(g-bg1), abs32(b-bg2))
		fg += uint64(uint32(ForegroundDistance-d) >> 31) // 1 when d > ForegroundDistance
	}
	a.luma += luma
	a.luma2 += luma2
	a.chroma += chroma
	a.fg += fg
}

func abs32(v int32) int32 {
	m := v >> 31
	return (v ^ m) - m
}

func (a *pixelStats) stats(n int) signals.Stats {
	fn := float64(n)
	mean := float64(a.luma) / fn
	variance := max(0, float64(a.luma2)/fn-mean*mean)
	const scale = 255 * 1000
	return signals.Stats{
		Luminance:  mean / scale,
		Contrast:   math.Sqrt(variance) / scale,
		Saturation: float64(a.chroma) / fn / 255,
		Foreground: float64(a.fg) / fn,
	}
}
