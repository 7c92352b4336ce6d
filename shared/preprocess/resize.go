package preprocess

import (
	"image"
	"math"
	"sync"
)

// The resizer: separable Catmull-Rom in fixed point, built for this one
// job (a premultiplied RGBA source drawn onto an opaque canvas). It follows
// golang.org/x/image/draw's CatmullRom.Scale (same kernel, same support
// broadening when shrinking, same per-output weight renormalisation at the
// edges), so its output matches that within a level or two (see
// TestResizeMatchesXDraw), at a fraction of the cost: weights are computed
// once per (source size, output size) pair and applied as integers.
//
// Integer arithmetic is also what makes tensors bit-identical everywhere:
// float code may be fused into FMA instructions on one architecture and
// not on another, integer code cannot round differently.

// weightBits is the fixed-point precision of the weights: every output
// pixel's weights sum to exactly 1<<weightBits.
const weightBits = 14

// axis holds the weights of one axis: output i reads source samples
// start[i], start[i]+1, ... with weights w[off[i]:off[i+1]].
type axis struct {
	start []int
	off   []int
	w     []int32
}

// catmullRom is the Catmull-Rom cubic (B=0, C=1/2) at distance t >= 0,
// x/image/draw's CatmullRom.At.
func catmullRom(t float64) float64 {
	if t < 1 {
		return (1.5*t-2.5)*t*t + 1
	}
	return ((-0.5*t+2.5)*t-4)*t + 2
}

// newAxis computes the weights for resampling sw samples to dw.
func newAxis(dw, sw int) *axis {
	scale := float64(sw) / float64(dw)
	half, argScale := 2.0, 1.0 // Catmull-Rom's support is 2
	if scale > 1 {
		half *= scale
		argScale = 1 / scale
	}
	a := &axis{start: make([]int, dw), off: make([]int, dw+1)}
	var fw []float64
	for x := range dw {
		center := (float64(x)+0.5)*scale - 0.5
		lo := max(0, int(math.Floor(center-half)))
		hi := min(sw, int(math.Ceil(center+half)))
		fw = fw[:0]
		first, total := -1, 0.0
		for c := lo; c < hi; c++ {
			t := math.Abs((center - float64(c)) * argScale)
			if t >= 2 {
				if first < 0 {
					continue // before the support
				}
				break // past it
			}
			if first < 0 {
				first = c
			}
			k := catmullRom(t)
			fw = append(fw, k)
			total += k
		}
		if first < 0 || total <= 0 { // cannot happen for sw, dw >= 1; nearest sample then
			first, fw, total = min(sw-1, max(0, int(math.Round(center)))), append(fw[:0], 1), 1
		}
		a.start[x] = first
		a.off[x] = len(a.w)
		// Round each weight, then give the rounding residue to the largest,
		// so the weights sum to exactly one and flat areas stay flat.
		sum, big := int32(0), len(a.w)
		for i, k := range fw {
			q := int32(math.Round(k / total * (1 << weightBits)))
			a.w = append(a.w, q)
			sum += q
			if q > a.w[big] {
				big = a.off[x] + i
			}
		}
		a.w[big] += 1<<weightBits - sum
	}
	a.off[dw] = len(a.w)
	return a
}

// axes caches weights per (output, source) length pair: the trainer and a
// serving instance see few distinct pairs, and a cached pair costs nothing
// to look up. The cache stops growing at maxAxes pairs.
var axes struct {
	sync.Mutex
	m map[[2]int]*axis
}

const maxAxes = 1024

func axisFor(dw, sw int) *axis {
	key := [2]int{dw, sw}
	axes.Lock()
	a, ok := axes.m[key]
	axes.Unlock()
	if ok {
		return a
	}
	a = newAxis(dw, sw)
	axes.Lock()
	if axes.m == nil {
		axes.m = make(map[[2]int]*axis)
	}
	if len(axes.m) < maxAxes {
		axes.m[key] = a
	}
	axes.Unlock()
	return a
}

// resizeOnto fills r, which must lie within dst's bounds, with src (a
// premultiplied RGBA image) resized with Catmull-Rom and composited over the
// opaque background colour bg. Compositing and resampling are both linear
// and the weights sum to one, so src is flattened onto bg first (only when
// it has transparent pixels) and the passes run on three channels: the same
// picture as resizing, then compositing "over", at three quarters the cost.
func resizeOnto(dst *image.RGBA, r image.Rectangle, src *image.RGBA, bg [3]uint8) {
	dw, dh := r.Dx(), r.Dy()
	sw, sh := src.Rect.Dx(), src.Rect.Dy()
	if dw <= 0 || dh <= 0 || sw <= 0 || sh <= 0 {
		return
	}
	src = flatten(src, bg)
	xa, ya := axisFor(dw, sw), axisFor(dh, sh)

	// Horizontal pass over the source rows the vertical pass reads, kept at
	// full precision (value << weightBits, Catmull-Rom's overshoot included).
	y0, y1 := ya.start[0], ya.start[dh-1]+ya.off[dh]-ya.off[dh-1]
	tmp := make([]int32, 3*dw*(y1-y0))
	for sy := y0; sy < y1; sy++ {
		row := src.Pix[src.PixOffset(src.Rect.Min.X, src.Rect.Min.Y+sy):]
		t := tmp[3*dw*(sy-y0) : 3*dw*(sy-y0+1)]
		for x := range dw {
			ws := xa.w[xa.off[x]:xa.off[x+1]]
			p := row[4*xa.start[x] : 4*(xa.start[x]+len(ws))]
			var a0, a1, a2 int32
			for len(p) >= 4 && len(ws) > 0 { // both hold: the checks let the compiler drop bounds checks
				w := ws[0]
				a0 += w * int32(p[0])
				a1 += w * int32(p[1])
				a2 += w * int32(p[2])
				p, ws = p[4:], ws[1:]
			}
			o := t[3*x : 3*x+3 : 3*x+3]
			o[0], o[1], o[2] = a0, a1, a2
		}
	}

	// Vertical pass: accumulate weighted rows in int64 (values <<
	// 2*weightBits), then round and clamp.
	const shift = 2 * weightBits
	acc := make([]int64, 3*dw)
	for y := range dh {
		clear(acc)
		ws := ya.w[ya.off[y]:ya.off[y+1]]
		for k, w := range ws {
			t := tmp[3*dw*(ya.start[y]+k-y0) : 3*dw*(ya.start[y]+k-y0+1)]
			w := int64(w)
			acc := acc[:len(t)]
			for i, v := range t {
				acc[i] += w * int64(v)
			}
		}
		d := dst.Pix[dst.PixOffset(r.Min.X, r.Min.Y+y):]
		for x := range dw {
			s := acc[3*x : 3*x+3 : 3*x+3]
			p := d[4*x : 4*x+4 : 4*x+4]
			p[0], p[1], p[2], p[3] = clamp8(s[0], shift), clamp8(s[1], shift), clamp8(s[2], shift), 255
		}
	}
}

// flatten returns m composited over bg: m itself when it is opaque, else
// an opaque copy.
func flatten(m *image.RGBA, bg [3]uint8) *image.RGBA {
	if m.Opaque() {
		return m
	}
	out := image.NewRGBA(image.Rect(0, 0, m.Rect.Dx(), m.Rect.Dy()))
	for y := range out.Rect.Dy() {
		src := m.Pix[m.PixOffset(m.Rect.Min.X, m.Rect.Min.Y+y):][:4*out.Rect.Dx()]
		dst := out.Pix[y*out.Stride:][:len(src)]
		for i := 0; i+4 <= len(src); i += 4 {
			inv := 255 - uint32(src[i+3])
			for c := range 3 {
				// Premultiplied: src[i+c] <= alpha, so this stays <= 255.
				dst[i+c] = src[i+c] + uint8((uint32(bg[c])*inv+127)/255)
			}
			dst[i+3] = 255
		}
	}
	return out
}

// clamp8 rounds a fixed-point value with shift fractional bits to a byte.
func clamp8(v int64, shift uint) uint8 {
	return uint8(min(255, max(0, (v+1<<(shift-1))>>shift)))
}
