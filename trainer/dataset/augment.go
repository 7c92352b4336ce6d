package dataset

import (
	"image"
	"math"
	"math/rand/v2"

	"github.com/orchard-mlops/orchard/shared/preprocess"
	"github.com/orchard-mlops/orchard/trainer/config"
)

// Augmenter makes randomised training tensors from a sample's fitted canvas,
// aimed at what real uploads do differently from a studio dataset: other
// orientations and framings, lighting and white balance, soft focus, sensor
// noise, and backgrounds that are not white.
type Augmenter struct {
	Cfg  config.Augment
	Spec preprocess.Spec
}

// SampleRNG returns the generator for one sample in one epoch: keyed by
// (seed, epoch, index), so the result does not depend on which goroutine
// augments which sample, and a resumed run repeats the same draws.
func SampleRNG(seed int64, epoch, index int) *rand.Rand {
	return rand.New(rand.NewPCG(uint64(seed)^0x9e3779b97f4a7c15, uint64(epoch)<<32|uint64(uint32(index))))
}

// Apply writes one training tensor for s into dst (Spec.TensorLen values).
// Unaugmented samples get s.Tensor, the exact serving tensor.
func (a *Augmenter) Apply(s *Sample, dst []float32, r *rand.Rand) {
	c := a.Cfg
	if !c.Enabled || r.Float64() >= c.Prob {
		copy(dst, s.Tensor)
		return
	}
	// Working on the photo (Spec.Raw), each sample is fitted to the canvas
	// afterwards as serving fits a photo, canonical steps included (always
	// so for a canonical spec: its steps must run once, on the photo);
	// otherwise the canvas is augmented.
	src, raw := s.Canvas, c.FromPhoto(a.Spec)
	if raw {
		if s.Raw == nil {
			panic("dataset: augmenting the photo, but the sample has no Raw picture (load with Options.KeepRaw)")
		}
		src = s.Raw
	}
	w, h := src.Rect.Dx(), src.Rect.Dy()
	plane := w * h
	// Blur and noise are set in canvas pixels; a raw picture's pixel is
	// a fraction of one (its longer side spans about the canvas).
	rawScale := float64(max(w, h)) / float64(a.Spec.Size)
	px := make([]float32, 3*plane) // RGB planes in [0,1]

	// Background colour for areas outside the source and (optionally) for
	// the source's near-white background: the spec's pad colour of the
	// source, or under a canonical spec (whose canvas pads with the
	// backdrop) the photo's own border, as a wider shot would show.
	var pad [3]uint8
	if a.Spec.Canonical() {
		pad = preprocess.BorderMedian(src)
	} else {
		pad = a.Spec.PadColour(src)
	}
	bg := [3]float32{float32(pad[0]) / 255, float32(pad[1]) / 255, float32(pad[2]) / 255}
	replaceBG := r.Float64() < c.BackgroundProb
	var patch *patchwork
	if replaceBG {
		for k := range 3 {
			bg[k] = r.Float32()
		}
		// Drawn only when enabled, so configs without it keep their stream.
		if c.BackgroundTexture > 0 && r.Float64() < c.BackgroundTexture {
			patch = newPatchwork(r, w, h)
		}
	}

	// Geometry: inverse-map every output pixel into the source canvas.
	theta := (2*r.Float64() - 1) * c.RotateDegrees * math.Pi / 180
	scale := c.ScaleMin + r.Float64()*(c.ScaleMax-c.ScaleMin)
	tx := (2*r.Float64() - 1) * c.Translate * float64(w)
	ty := (2*r.Float64() - 1) * c.Translate * float64(h)
	flipH := c.FlipHorizontal && r.IntN(2) == 1
	flipV := c.FlipVertical && r.IntN(2) == 1
	// A close-up shows the skin only: the object's centre (the canvas's,
	// as the spec or the dataset frames it) magnified past its outline, as
	// a phone held close to a fruit does. Drawn only when enabled, so
	// configs without close-ups keep their random stream.
	if c.CloseupProb > 0 && r.Float64() < c.CloseupProb {
		scale = c.CloseupMin + r.Float64()*(c.CloseupMax-c.CloseupMin)
		tx, ty = tx/scale, ty/scale
	}
	cos, sin := math.Cos(theta)/scale, math.Sin(theta)/scale
	cx, cy := float64(w-1)/2, float64(h-1)/2
	// Letterboxed samples keep the area the moved image leaves uncovered
	// at the pad colour, out of reach of the lighting jitter below, so
	// the model sees objects lit unlike their surroundings. Under the
	// white pad that is what serving does to a dark non-square photo (a
	// dark picture between white bars); under PadBorderMedian serving's
	// pad follows the exposure, yet keeping letterboxed samples measured
	// better than letting the jitter reach them: zoom in 83.7 vs 79.0 %,
	// low light 82.2 vs 76.3 (trainer/README.md, "Border-median padding,
	// close-ups, textured backgrounds").
	// Canonical specs reframe and relevel every sample below, which would
	// undo a letterbox reset anyway.
	letterbox := c.LetterboxProb > 0 && r.Float64() < c.LetterboxProb && !a.Spec.Canonical()
	var outside []bool
	if letterbox {
		outside = make([]bool, plane)
	}
	for y := range h {
		for x := range w {
			dx, dy := float64(x)-cx-tx, float64(y)-cy-ty
			sx := cos*dx + sin*dy + cx
			sy := -sin*dx + cos*dy + cy
			if flipH {
				sx = float64(w-1) - sx
			}
			if flipV {
				sy = float64(h-1) - sy
			}
			if patch != nil {
				bg = patch.at(x, y)
			}
			rgb := bilinear(src, sx, sy, bg)
			if letterbox && (sx < -0.5 || sy < -0.5 || sx > float64(w)-0.5 || sy > float64(h)-0.5) {
				outside[y*w+x] = true
			}
			if replaceBG {
				// Near-white source pixels are background: blend them to bg.
				wt := (min(rgb[0], rgb[1], rgb[2]) - 0.86) / 0.1
				wt = max(0, min(1, wt))
				for k := range 3 {
					rgb[k] += (bg[k] - rgb[k]) * wt
				}
			}
			i := y*w + x
			px[i], px[plane+i], px[2*plane+i] = rgb[0], rgb[1], rgb[2]
		}
	}

	// Photometric jitter.
	gain := float32(1 + (2*r.Float64()-1)*c.Brightness)
	contrast := float32(1 + (2*r.Float64()-1)*c.Contrast)
	sat := float32(1 + (2*r.Float64()-1)*c.Saturation)
	hue := (2*r.Float64() - 1) * c.HueDegrees * math.Pi / 180
	hm := hueMatrix(hue)
	var mean float32
	for i := range plane {
		mean += 0.299*px[i] + 0.587*px[plane+i] + 0.114*px[2*plane+i]
	}
	mean /= float32(plane)
	for i := range plane {
		rr, gg, bb := px[i], px[plane+i], px[2*plane+i]
		rr, gg, bb = hm[0]*rr+hm[1]*gg+hm[2]*bb, hm[3]*rr+hm[4]*gg+hm[5]*bb, hm[6]*rr+hm[7]*gg+hm[8]*bb
		gray := 0.299*rr + 0.587*gg + 0.114*bb
		rr, gg, bb = gray+(rr-gray)*sat, gray+(gg-gray)*sat, gray+(bb-gray)*sat
		rr = ((rr-mean)*contrast + mean) * gain
		gg = ((gg-mean)*contrast + mean) * gain
		bb = ((bb-mean)*contrast + mean) * gain
		px[i], px[plane+i], px[2*plane+i] = rr, gg, bb
	}

	tone(px, c, r)
	erase(px, w, h, c, r)

	if letterbox {
		for i, out := range outside {
			if out {
				for k := range 3 {
					px[k*plane+i] = float32(pad[k]) / 255
				}
			}
		}
	}

	if c.BlurProb > 0 && r.Float64() < c.BlurProb {
		sigma := 0.3 + r.Float64()*max(0, c.BlurSigmaMax-0.3)
		if raw {
			sigma *= rawScale
		}
		for k := range 3 {
			gaussianBlur(px[k*plane:(k+1)*plane], w, h, sigma)
		}
	}
	if c.NoiseProb > 0 && r.Float64() < c.NoiseProb {
		std := r.Float64() * c.NoiseStdMax
		if raw {
			std *= rawScale
		}
		for i := range px {
			px[i] += float32(r.NormFloat64() * std)
		}
	}
	if raw {
		// Serving fits every photo to the canvas (framing, relevelling and
		// repainting it under a canonical spec): the zoomed, moved and relit
		// photo is fitted the same way, through the same code, so training
		// sees what serving would make of it.
		if err := a.Spec.Tensor(a.Spec.Fit(&preprocess.Decoded{Image: toRGBA(px, w, h)}), dst); err != nil {
			panic(err) // unreachable: the canvas is Size x Size and dst TensorLen long
		}
		return
	}
	for k := range 3 {
		inv := 1 / a.Spec.Std[k]
		m := a.Spec.Mean[k]
		for i := range plane {
			v := max(0, min(1, px[k*plane+i]))
			if a.Spec.Layout == preprocess.NHWC {
				dst[3*i+k] = (v - m) * inv
			} else {
				dst[k*plane+i] = (v - m) * inv
			}
		}
	}
}

// erase paints a random rectangle of the sample one random colour (random
// erasing, Zhong et al. 2017), so the model learns from the part of the
// object it can see when a finger or a leaf covers the rest. Drawn only
// when enabled, so configs without it keep their random stream.
func erase(px []float32, w, h int, c config.Augment, r *rand.Rand) {
	if c.EraseProb <= 0 || r.Float64() >= c.EraseProb {
		return
	}
	area := (c.EraseAreaMin + r.Float64()*(c.EraseAreaMax-c.EraseAreaMin)) * float64(w*h)
	aspect := math.Exp((2*r.Float64() - 1) * math.Log(2)) // width/height in [1/2, 2]
	rw := max(1, min(w, int(math.Round(math.Sqrt(area*aspect)))))
	rh := max(1, min(h, int(math.Round(area/float64(rw)))))
	x0, y0 := r.IntN(w-rw+1), r.IntN(h-rh+1)
	colour := [3]float32{r.Float32(), r.Float32(), r.Float32()}
	plane := w * h
	for y := y0; y < y0+rh; y++ {
		for x := x0; x < x0+rw; x++ {
			for k := range 3 {
				px[k*plane+y*w+x] = colour[k]
			}
		}
	}
}

// tone applies the non-linear and per-channel lighting the affine jitter
// cannot make, which exposure levels do not cancel: a gamma (dark
// mid-tones, a phone's low-light response), a white balance cast
// (tungsten, shade) and haze (veiling glare: every value lifted towards
// white, white itself kept). Each draws only when enabled, so configs without
// them keep their random stream.
func tone(px []float32, c config.Augment, r *rand.Rand) {
	gains := [3]float32{1, 1, 1}
	if c.WhiteBalance > 0 {
		// Warm or cool: red and blue move in opposite directions.
		t := float32((2*r.Float64() - 1) * c.WhiteBalance)
		gains = [3]float32{1 + t, 1 + float32((2*r.Float64()-1)*c.WhiteBalance)/4, 1 - t}
	}
	gamma := 1.0
	if c.Gamma > 0 {
		gamma = math.Exp((2*r.Float64() - 1) * math.Log(1+c.Gamma))
	}
	var haze float32
	if c.Haze > 0 {
		haze = float32(r.Float64() * c.Haze)
	}
	if c.WhiteBalance == 0 && gamma == 1 && haze == 0 {
		return
	}
	plane := len(px) / 3
	for k := range 3 {
		for i, v := range px[k*plane : (k+1)*plane] {
			v = max(0, v*gains[k])
			if gamma != 1 {
				v = float32(math.Pow(float64(v), gamma))
			}
			px[k*plane+i] = v*(1-haze) + haze
		}
	}
}

// toRGBA quantises RGB planes in [0,1] of a w x h sample to an image.
func toRGBA(px []float32, w, h int) *image.RGBA {
	m := image.NewRGBA(image.Rect(0, 0, w, h))
	plane := w * h
	for i := range plane {
		for k := range 3 {
			m.Pix[4*i+k] = uint8(max(0, min(1, px[k*plane+i]))*255 + 0.5)
		}
		m.Pix[4*i+3] = 255
	}
	return m
}

// patchwork is a textured background: a coarse grid of random colours,
// bilinearly blended over the picture, like a tablecloth or a cluttered
// worktop out of focus.
type patchwork struct {
	n    int // grid cells along each side
	w, h int
	cols [][3]float32 // (n+1) x (n+1) corner colours
}

func newPatchwork(r *rand.Rand, w, h int) *patchwork {
	p := &patchwork{n: 2 + r.IntN(5), w: w, h: h}
	p.cols = make([][3]float32, (p.n+1)*(p.n+1))
	for i := range p.cols {
		p.cols[i] = [3]float32{r.Float32(), r.Float32(), r.Float32()}
	}
	return p
}

func (p *patchwork) at(x, y int) [3]float32 {
	gx, gy := float32(x)*float32(p.n)/float32(max(1, p.w-1)), float32(y)*float32(p.n)/float32(max(1, p.h-1))
	x0, y0 := min(int(gx), p.n-1), min(int(gy), p.n-1)
	fx, fy := gx-float32(x0), gy-float32(y0)
	c00, c10 := p.cols[y0*(p.n+1)+x0], p.cols[y0*(p.n+1)+x0+1]
	c01, c11 := p.cols[(y0+1)*(p.n+1)+x0], p.cols[(y0+1)*(p.n+1)+x0+1]
	var out [3]float32
	for k := range 3 {
		out[k] = (c00[k]*(1-fx)+c10[k]*fx)*(1-fy) + (c01[k]*(1-fx)+c11[k]*fx)*fy
	}
	return out
}

// bilinear samples an RGBA canvas at (x, y) in pixel-centre coordinates,
// treating everything outside it as bg.
func bilinear(m *image.RGBA, x, y float64, bg [3]float32) [3]float32 {
	mw, mh := m.Bounds().Dx(), m.Bounds().Dy()
	x0, y0 := int(math.Floor(x)), int(math.Floor(y))
	fx, fy := float32(x-float64(x0)), float32(y-float64(y0))
	var out [3]float32
	for j := range 2 {
		for i := range 2 {
			w := (1 - fx)
			if i == 1 {
				w = fx
			}
			if j == 0 {
				w *= 1 - fy
			} else {
				w *= fy
			}
			if w == 0 {
				continue
			}
			xx, yy := x0+i, y0+j
			if xx < 0 || yy < 0 || xx >= mw || yy >= mh {
				for k := range 3 {
					out[k] += w * bg[k]
				}
				continue
			}
			p := m.Pix[yy*m.Stride+4*xx:]
			for k := range 3 {
				out[k] += w * float32(p[k]) / 255
			}
		}
	}
	return out
}

// hueMatrix rotates colours about the grey axis by theta radians.
func hueMatrix(theta float64) [9]float32 {
	c, s := math.Cos(theta), math.Sin(theta)
	k := 1.0 / 3
	sq := math.Sqrt(k)
	a := c + (1-c)*k
	b := k*(1-c) - sq*s
	d := k*(1-c) + sq*s
	return [9]float32{float32(a), float32(b), float32(d), float32(d), float32(a), float32(b), float32(b), float32(d), float32(a)}
}

// gaussianBlur blurs a w x h plane in place (separable, edges clamped).
func gaussianBlur(p []float32, w, h int, sigma float64) {
	rad := int(math.Ceil(2 * sigma))
	k := make([]float32, 2*rad+1)
	var sum float32
	for i := range k {
		d := float64(i - rad)
		k[i] = float32(math.Exp(-d * d / (2 * sigma * sigma)))
		sum += k[i]
	}
	for i := range k {
		k[i] /= sum
	}
	tmp := make([]float32, len(p))
	for y := range h {
		for x := range w {
			var v float32
			for i, wt := range k {
				xx := min(w-1, max(0, x+i-rad))
				v += wt * p[y*w+xx]
			}
			tmp[y*w+x] = v
		}
	}
	for y := range h {
		for x := range w {
			var v float32
			for i, wt := range k {
				yy := min(h-1, max(0, y+i-rad))
				v += wt * tmp[yy*w+x]
			}
			p[y*w+x] = v
		}
	}
}
