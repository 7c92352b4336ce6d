package preprocess

import (
	"fmt"
	"image"
	"slices"

	"github.com/orchard-mlops/orchard/shared/errlist"
)

// Layout is the order of a tensor's dimensions.
type Layout string

// Supported layouts.
const (
	NCHW Layout = "NCHW"
	NHWC Layout = "NHWC"
)

// ResizeCatmullRom is the only resampling filter today. It is named in the
// spec so a model trained with it keeps being served with it if another is
// added.
const ResizeCatmullRom = "catmull-rom"

// Spec is how a model wants its input; it is stored in model.json so the
// functions rebuild exactly the trainer's tensors. A value is
// (pixel/255 - Mean[c]) / Std[c] for channel c in R, G, B order.
type Spec struct {
	Size       int        `json:"size"`       // square side in pixels
	Layout     Layout     `json:"layout"`     // NCHW or NHWC
	Mean       [3]float32 `json:"mean"`       // per channel, in [0,1] units
	Std        [3]float32 `json:"std"`        // per channel, > 0
	Background [3]uint8   `json:"background"` // canvas colour, RGB
	Resize     string     `json:"resize"`     // resampling filter
	// Pad is how the canvas around a non-square photo is filled: empty
	// (old models) is Background; PadBorderMedian is the per-channel median
	// of the outer ring of the reduced source, so a global exposure change
	// maps the whole canvas affinely and per-image standardisation cancels it.
	Pad string `json:"pad,omitempty"`
	// Framing, Levels and Backdrop are the canonical framing and exposure
	// steps (FramingValues, LevelsValues, BackdropValues; see canon.go).
	// Empty in old models: their canvases are unchanged.
	Framing  string `json:"framing,omitempty"`
	Levels   string `json:"levels,omitempty"`
	Backdrop string `json:"backdrop,omitempty"`
}

// PadBorderMedian fills the canvas with the median of the source's outer
// ring of pixels (see Spec.Pad).
const PadBorderMedian = "border-median"

// DefaultSpec is the Fruits-360 convention: a white square canvas, values
// scaled to about [-1, 1].
func DefaultSpec(size int) Spec {
	return Spec{
		Size:       size,
		Layout:     NCHW,
		Mean:       [3]float32{0.5, 0.5, 0.5},
		Std:        [3]float32{0.5, 0.5, 0.5},
		Background: [3]uint8{255, 255, 255},
		Resize:     ResizeCatmullRom,
	}
}

// MaxSize bounds Spec.Size so a hostile model.json cannot ask for a huge
// canvas per request.
const MaxSize = 1024

// Validate reports what is wrong with the spec, naming the field.
func (s Spec) Validate() error {
	var errs []error
	if s.Size < 1 || s.Size > MaxSize {
		errs = append(errs, fmt.Errorf("size %d is outside 1..%d", s.Size, MaxSize))
	}
	if s.Layout != NCHW && s.Layout != NHWC {
		errs = append(errs, fmt.Errorf("layout %q is not %s or %s", s.Layout, NCHW, NHWC))
	}
	for c, v := range s.Std {
		if !(v > 0) {
			errs = append(errs, fmt.Errorf("std[%d] = %v must be > 0", c, v))
		}
	}
	if s.Resize != ResizeCatmullRom {
		errs = append(errs, fmt.Errorf("resize %q is not %q", s.Resize, ResizeCatmullRom))
	}
	if s.Pad != "" && s.Pad != PadBorderMedian {
		errs = append(errs, fmt.Errorf("pad %q is not empty or %q", s.Pad, PadBorderMedian))
	}
	for _, f := range []struct {
		name, v string
		want    []string
	}{
		{"framing", s.Framing, FramingValues()}, {"levels", s.Levels, LevelsValues()}, {"backdrop", s.Backdrop, BackdropValues()},
	} {
		if f.v != "" && !slices.Contains(f.want, f.v) {
			errs = append(errs, fmt.Errorf("%s %q is not empty or one of %q", f.name, f.v, f.want))
		}
	}
	if err := errlist.Join(errs...); err != nil {
		return fmt.Errorf("preprocessing spec: %w", err)
	}
	return nil
}

// TensorLen is the number of float32 values one image becomes.
func (s Spec) TensorLen() int { return 3 * s.Size * s.Size }

// Shape is the input shape for a batch of n images in the spec's layout.
func (s Spec) Shape(n int) []int64 {
	if s.Layout == NHWC {
		return []int64{int64(n), int64(s.Size), int64(s.Size), 3}
	}
	return []int64{int64(n), 3, int64(s.Size), int64(s.Size)}
}

// Process runs the whole path: decode under the limits, fit, and write
// TensorLen values into dst.
func (s Spec) Process(b []byte, lim Limits, dst []float32) error {
	c, err := s.Canvas(b, lim)
	if err != nil {
		return err
	}
	return s.Tensor(c, dst)
}

// Canvas decodes b for this spec's size (DecodeFor) and fits it (Fit): the
// square image Tensor turns into model input. The trainer keeps canvases
// to augment; Process is Canvas then Tensor.
func (s Spec) Canvas(b []byte, lim Limits) (*image.RGBA, error) {
	c, _, err := s.CanvasSource(b, lim)
	return c, err
}

// Fit is this spec's canvas step for an already decoded image: Fit with
// the spec's size and background, or the border median under
// PadBorderMedian. Every caller that holds a Decoded (the corruption
// suite of `trainer eval`, say) goes through it, so none can pad
// differently from serving.
func (s Spec) Fit(d *Decoded) *image.RGBA {
	if s.Canonical() {
		return s.canonicalFit(s.reduced(d), d.Orientation)
	}
	if s.Pad == PadBorderMedian {
		return fitPadded(d, s.Size, nil)
	}
	return Fit(d, s.Size, s.Background)
}

// PadColour is the colour this spec gives the area a canvas does not
// cover: Background, or under PadBorderMedian the border median of m. The
// augmenter calls it on a canvas so its uncovered area matches serving's.
func (s Spec) PadColour(m *image.RGBA) [3]uint8 {
	if s.Pad == PadBorderMedian {
		return BorderMedian(m)
	}
	return s.Background
}

// DecodeCost estimates the peak bytes Canvas allocates for b, from the
// header alone (see DecodeCost).
func (s Spec) DecodeCost(b []byte, lim Limits) (int64, error) {
	return DecodeCost(b, lim, s.Size)
}

// resampleMargin is how many times the output size the box stages (DCT
// scaling on load, then the box reduction) leave for the Catmull-Rom pass,
// along the longer side. Both stages are box-like averages, cheap but
// softer than Catmull-Rom. Measured on the 600 photos of
// fruits360-10/photos at size 32, as the mean difference of the canvas from
// a full decode resized by Catmull-Rom alone: margin 1: 3.2 levels, 2: 1.36,
// 3: 0.75, 4: 0.54, at 0.42, 0.51, 0.70 and 0.85 ms an image; the path this
// replaced (full decode, box to 2x) was 1.74. 2 is as faithful as before at
// the least cost.
const resampleMargin = 2

// Fit draws the decoded image, centred and scaled to keep its aspect ratio,
// onto a size x size canvas of the background colour (transparent pixels
// composite over it), then applies the EXIF orientation. Orientation is
// applied to the small square output rather than the large source: on a
// centred square canvas the two orders give the same picture.
//
// Sources more than twice resampleMargin times the size are first box
// reduced by an integer factor (a plane-wise pass over the decoded pixels,
// see reduce), then resized with Catmull-Rom (see resizeOnto).
func Fit(d *Decoded, size int, bg [3]uint8) *image.RGBA {
	return fitPadded(d, size, &bg)
}

// fitPadded is Fit; a nil bg pads with the border median of the reduced
// source (PadBorderMedian), computed after the box reduction so it costs
// one pass over a small image.
func fitPadded(d *Decoded, size int, bgp *[3]uint8) *image.RGBA {
	sb := d.Image.Bounds()
	src := reduce(d.Image, boxFactor(sb.Dx(), sb.Dy(), size))
	var bg [3]uint8
	if bgp != nil {
		bg = *bgp
	} else {
		bg = BorderMedian(src)
	}
	canvas := image.NewRGBA(image.Rect(0, 0, size, size))
	for i := 0; i < len(canvas.Pix); i += 4 {
		canvas.Pix[i], canvas.Pix[i+1], canvas.Pix[i+2], canvas.Pix[i+3] = bg[0], bg[1], bg[2], 255
	}
	// The placement comes from the stored size, so a JPEG scaled on load
	// lands on exactly the pixels its full-size decode would.
	w, h := d.stored()
	side := max(w, h)
	tw := max(1, (w*size+side/2)/side)
	th := max(1, (h*size+side/2)/side)
	ox, oy := (size-tw)/2, (size-th)/2
	resizeOnto(canvas, image.Rect(ox, oy, ox+tw, oy+th), src, bg)
	return orient(canvas, d.Orientation)
}

// boxFactor is the integer box-reduction factor for a w x h source and a
// size x size output: 1 (none) unless the source's longer side is at least
// twice resampleMargin times the size.
func boxFactor(w, h, size int) int {
	return max(1, max(w, h)/(resampleMargin*size))
}

// orient returns the image as EXIF orientation o says to display it: a
// w x h image, h x w for the orientations that swap the axes (5 to 8).
// Serving orients square canvases; the augmenter's raw pictures need not
// be square (Spec.Raw).
func orient(m *image.RGBA, o int) *image.RGBA {
	if o <= 1 || o > 8 {
		return m
	}
	w, h := m.Bounds().Dx(), m.Bounds().Dy()
	ow, oh := w, h
	if o >= 5 {
		ow, oh = h, w
	}
	out := image.NewRGBA(image.Rect(0, 0, ow, oh))
	for y := 0; y < oh; y++ {
		for x := 0; x < ow; x++ {
			// (sx, sy) is the stored pixel shown at (x, y).
			var sx, sy int
			switch o {
			case 2: // mirror horizontal
				sx, sy = w-1-x, y
			case 3: // rotate 180
				sx, sy = w-1-x, h-1-y
			case 4: // mirror vertical
				sx, sy = x, h-1-y
			case 5: // transpose
				sx, sy = y, x
			case 6: // rotate 90 clockwise
				sx, sy = y, h-1-x
			case 7: // transverse
				sx, sy = w-1-y, h-1-x
			case 8: // rotate 90 counter-clockwise
				sx, sy = w-1-y, x
			}
			copy(out.Pix[y*out.Stride+4*x:y*out.Stride+4*x+4], m.Pix[sy*m.Stride+4*sx:sy*m.Stride+4*sx+4])
		}
	}
	return out
}

// Tensor writes the canvas into dst (TensorLen values) in the spec's layout
// and normalisation. The canvas must be Size x Size; Fit's output is.
func (s Spec) Tensor(m *image.RGBA, dst []float32) error {
	return s.tensor(m, dst, nil)
}

// tensor is Tensor, accumulating the pixel statistics into acc unless it
// is nil (training augmentation does not need them).
func (s Spec) tensor(m *image.RGBA, dst []float32, acc *pixelStats) error {
	if b := m.Bounds(); b.Dx() != s.Size || b.Dy() != s.Size {
		return fmt.Errorf("tensor: canvas is %dx%d, spec wants %dx%d", b.Dx(), b.Dy(), s.Size, s.Size)
	}
	if len(dst) != s.TensorLen() {
		return fmt.Errorf("tensor: dst holds %d values, spec needs %d", len(dst), s.TensorLen())
	}
	// Multiply by precomputed reciprocals: one rounding path, shared by all
	// callers, so identical inputs give bit-identical tensors. The inner
	// float32 conversion forbids fusing into an FMA, which would round
	// differently on arm64 than on amd64.
	var scale, bias [3]float32
	for c := range 3 {
		scale[c] = 1 / (255 * s.Std[c])
		bias[c] = -s.Mean[c] / s.Std[c]
	}
	n := s.Size
	plane := n * n
	for y := range n {
		row := m.Pix[y*m.Stride : y*m.Stride+4*n]
		if acc != nil {
			acc.addRow(row)
		}
		for x := range n {
			p := row[4*x : 4*x+3 : 4*x+3]
			i := y*n + x
			if s.Layout == NHWC {
				for c := range 3 {
					dst[3*i+c] = float32(float32(p[c])*scale[c]) + bias[c]
				}
			} else {
				for c := range 3 {
					dst[c*plane+i] = float32(float32(p[c])*scale[c]) + bias[c]
				}
			}
		}
	}
	return nil
}

// BorderMedian is the per-channel median of m's outer ring of pixels
// (premultiplied values, as the resizer sees them).
func BorderMedian(m *image.RGBA) [3]uint8 {
	b := m.Bounds()
	var hist [3][256]int
	n := 0
	for y := b.Min.Y; y < b.Max.Y; y++ {
		step := 1
		if y != b.Min.Y && y != b.Max.Y-1 {
			step = max(1, b.Dx()-1)
		}
		for x := b.Min.X; x < b.Max.X; x += step {
			i := m.PixOffset(x, y)
			for c := range 3 {
				hist[c][m.Pix[i+c]]++
			}
			n++
		}
	}
	var out [3]uint8
	for c := range 3 {
		for v, k := 0, 0; v < 256; v++ {
			if k += hist[c][v]; 2*k > n {
				out[c] = uint8(v)
				break
			}
		}
	}
	return out
}
