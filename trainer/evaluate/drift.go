package evaluate

import (
	"image"
	"image/color"
	"image/draw"
	"math"
	"math/rand/v2"

	xdraw "golang.org/x/image/draw"
)

// Harder, more realistic conditions than the exact global maps above:
// white balance casts, non-linear low light with sensor noise, textured
// and cluttered backgrounds, a small object in a scene, occlusion, motion
// blur, the JPEG qualities phones and apps really use, and a phone's
// resample-and-sharpen. Random parameters are drawn per image from r.
var realistic = []Corruption{
	{Name: "warm_cast", Desc: "warm white balance (R x1.15, B x0.75)", Apply: cast(1.15, 1.0, 0.75)},
	{Name: "cool_cast", Desc: "cool white balance (R x0.8, B x1.15)", Apply: cast(0.8, 1.0, 1.15)},
	{Name: "tungsten", Desc: "tungsten-like light (R x1.2, G x0.95, B x0.6), gamma 1.2", Apply: tungsten},
	{Name: "low_light", Desc: "gamma 1.8, x0.5, shot and read noise", Apply: lowLight},
	{Name: "gamma", Desc: "gamma 2.0 (dark mid-tones)", Apply: pointwise(func(v float64) float64 { return v * v })},
	{Name: "textured_background", Desc: "near-white background replaced by a random texture", Apply: texturedBackground},
	{Name: "cluttered_background", Desc: "near-white background replaced by random coloured shapes", Apply: clutteredBackground},
	{Name: "small_object", Desc: "object shrunk to 35% at a random place in a cluttered scene", Apply: smallObject},
	{Name: "occlusion", Desc: "a random rectangle of 20-25% of the picture covered", Apply: occlusion},
	{Name: "motion_blur", Desc: "linear motion blur, 6% of the longer side, random angle", Apply: motionBlur},
	{Name: "jpeg_real", Desc: "JPEG quality 45", Apply: func(m *image.RGBA, _ *rand.Rand) *image.RGBA { return m }, JPEG: 45},
	{Name: "phone_resample", Desc: "downscaled to 40% bilinear, upscaled, sharpened, JPEG q70", Apply: phoneResample, JPEG: 70},
}

func init() { Corruptions = append(Corruptions, realistic...) }

// cast multiplies each channel (linear white-balance gains).
func cast(r, g, b float64) func(*image.RGBA, *rand.Rand) *image.RGBA {
	return func(m *image.RGBA, _ *rand.Rand) *image.RGBA {
		gains := [3]float64{r, g, b}
		for i := 0; i < len(m.Pix); i += 4 {
			for k := range 3 {
				m.Pix[i+k] = clamp8(float64(m.Pix[i+k]) * gains[k])
			}
		}
		return m
	}
}

func tungsten(m *image.RGBA, r *rand.Rand) *image.RGBA {
	m = cast(1.2, 0.95, 0.6)(m, r)
	return pointwise(func(v float64) float64 { return math.Pow(v, 1.2) })(m, r)
}

// lowLight is what a phone makes of a dim scene: a darker, non-linear
// response, shot noise growing with the signal and a floor of read noise.
func lowLight(m *image.RGBA, r *rand.Rand) *image.RGBA {
	for i := 0; i < len(m.Pix); i += 4 {
		for k := range 3 {
			v := 0.5 * math.Pow(float64(m.Pix[i+k])/255, 1.8)
			v += r.NormFloat64() * math.Sqrt(0.0016*v+0.0001)
			m.Pix[i+k] = clamp8(255 * v)
		}
	}
	return m
}

// backgroundWeight is how much a pixel is studio background: 1 for
// near-white, 0 for the object, blended over a narrow band.
func backgroundWeight(p []uint8) float64 {
	mn := math.Min(float64(p[0]), math.Min(float64(p[1]), float64(p[2]))) / 255
	return math.Max(0, math.Min(1, (mn-0.86)/0.1))
}

// replaceBackground paints the near-white background with bg(x, y).
func replaceBackground(m *image.RGBA, bg func(x, y int) [3]float64) *image.RGBA {
	b := m.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			i := m.PixOffset(x, y)
			a := backgroundWeight(m.Pix[i : i+3])
			if a == 0 {
				continue
			}
			c := bg(x-b.Min.X, y-b.Min.Y)
			for k := range 3 {
				v := float64(m.Pix[i+k])
				m.Pix[i+k] = clamp8(v + (c[k]-v)*a)
			}
		}
	}
	return m
}

// texture is a random wood- or fabric-like pattern: a base colour
// modulated by a few sines of random frequency and direction.
func texture(r *rand.Rand) func(x, y int) [3]float64 {
	var base [3]float64
	for k := range base {
		base[k] = 60 + 150*r.Float64()
	}
	type wave struct{ fx, fy, ph, amp float64 }
	waves := make([]wave, 4)
	for i := range waves {
		th := r.Float64() * math.Pi
		f := 0.05 + 0.4*r.Float64()
		waves[i] = wave{f * math.Cos(th), f * math.Sin(th), 2 * math.Pi * r.Float64(), 15 + 25*r.Float64()}
	}
	return func(x, y int) [3]float64 {
		var d float64
		for _, w := range waves {
			d += w.amp * math.Sin(w.fx*float64(x)+w.fy*float64(y)+w.ph)
		}
		return [3]float64{base[0] + d, base[1] + 0.8*d, base[2] + 0.6*d}
	}
}

func texturedBackground(m *image.RGBA, r *rand.Rand) *image.RGBA {
	return replaceBackground(m, texture(r))
}

// clutter is a scene of random coloured discs and rectangles over a
// texture, the size of m.
func clutter(w, h int, r *rand.Rand) *image.RGBA {
	out := image.NewRGBA(image.Rect(0, 0, w, h))
	tex := texture(r)
	for y := range h {
		for x := range w {
			c := tex(x, y)
			o := out.PixOffset(x, y)
			out.Pix[o], out.Pix[o+1], out.Pix[o+2], out.Pix[o+3] = clamp8(c[0]), clamp8(c[1]), clamp8(c[2]), 255
		}
	}
	for range 8 + r.IntN(8) {
		c := color.RGBA{uint8(r.IntN(256)), uint8(r.IntN(256)), uint8(r.IntN(256)), 255}
		cx, cy := r.IntN(w), r.IntN(h)
		rad := max(2, int(float64(max(w, h))*(0.04+0.12*r.Float64())))
		disc := r.IntN(2) == 0
		for y := max(0, cy-rad); y < min(h, cy+rad); y++ {
			for x := max(0, cx-rad); x < min(w, cx+rad); x++ {
				if disc && (x-cx)*(x-cx)+(y-cy)*(y-cy) > rad*rad {
					continue
				}
				out.SetRGBA(x, y, c)
			}
		}
	}
	return out
}

func clutteredBackground(m *image.RGBA, r *rand.Rand) *image.RGBA {
	b := m.Bounds()
	scene := clutter(b.Dx(), b.Dy(), r)
	return replaceBackground(m, func(x, y int) [3]float64 {
		o := scene.PixOffset(x, y)
		return [3]float64{float64(scene.Pix[o]), float64(scene.Pix[o+1]), float64(scene.Pix[o+2])}
	})
}

// smallObject shrinks the photo to 35 % and places it, background
// replaced, at a random place in a cluttered scene.
func smallObject(m *image.RGBA, r *rand.Rand) *image.RGBA {
	b := m.Bounds()
	w, h := b.Dx(), b.Dy()
	sw, sh := max(1, w*35/100), max(1, h*35/100)
	small := image.NewRGBA(image.Rect(0, 0, sw, sh))
	xdraw.CatmullRom.Scale(small, small.Bounds(), m, b, xdraw.Src, nil)
	scene := clutter(w, h, r)
	ox, oy := r.IntN(w-sw+1), r.IntN(h-sh+1)
	for y := range sh {
		for x := range sw {
			i := small.PixOffset(x, y)
			a := backgroundWeight(small.Pix[i : i+3])
			o := scene.PixOffset(ox+x, oy+y)
			for k := range 3 {
				scene.Pix[o+k] = clamp8(float64(small.Pix[i+k])*(1-a) + float64(scene.Pix[o+k])*a)
			}
		}
	}
	return scene
}

// occlusion covers a random rectangle of 20-25 % of the picture with a
// skin- or leaf-like flat colour, as a finger or a leaf would.
func occlusion(m *image.RGBA, r *rand.Rand) *image.RGBA {
	b := m.Bounds()
	w, h := b.Dx(), b.Dy()
	area := (0.20 + 0.05*r.Float64()) * float64(w*h)
	aspect := 0.5 + r.Float64()
	rw := min(w, int(math.Sqrt(area*aspect)))
	rh := min(h, int(area/float64(max(1, rw))))
	x0, y0 := b.Min.X+r.IntN(w-rw+1), b.Min.Y+r.IntN(h-rh+1)
	colours := []color.RGBA{{224, 172, 138, 255}, {70, 110, 50, 255}, {120, 120, 120, 255}}
	draw.Draw(m, image.Rect(x0, y0, x0+rw, y0+rh), image.NewUniform(colours[r.IntN(len(colours))]), image.Point{}, draw.Src)
	return m
}

// motionBlur averages along a line of 6 % of the longer side at a random
// angle (a hand moving during the exposure).
func motionBlur(m *image.RGBA, r *rand.Rand) *image.RGBA {
	b := m.Bounds()
	w, h := b.Dx(), b.Dy()
	n := max(2, int(0.06*float64(max(w, h))))
	th := r.Float64() * math.Pi
	dx, dy := math.Cos(th), math.Sin(th)
	out := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			var acc [3]float64
			for s := range n {
				t := float64(s) - float64(n-1)/2
				xx := min(w-1, max(0, int(math.Round(float64(x)+t*dx))))
				yy := min(h-1, max(0, int(math.Round(float64(y)+t*dy))))
				i := m.PixOffset(b.Min.X+xx, b.Min.Y+yy)
				for k := range 3 {
					acc[k] += float64(m.Pix[i+k])
				}
			}
			o := out.PixOffset(x, y)
			for k := range 3 {
				out.Pix[o+k] = clamp8(acc[k] / float64(n))
			}
			out.Pix[o+3] = 255
		}
	}
	return out
}

// phoneResample is a messaging app's round trip: downscaled to 40 % with
// a bilinear filter, upscaled back, then sharpened (unsharp mask, the
// halo phones add); the JPEG step follows (Corruption.JPEG).
func phoneResample(m *image.RGBA, _ *rand.Rand) *image.RGBA {
	b := m.Bounds()
	w, h := b.Dx(), b.Dy()
	small := image.NewRGBA(image.Rect(0, 0, max(1, w*2/5), max(1, h*2/5)))
	xdraw.BiLinear.Scale(small, small.Bounds(), m, b, xdraw.Src, nil)
	up := image.NewRGBA(image.Rect(0, 0, w, h))
	xdraw.BiLinear.Scale(up, up.Bounds(), small, small.Bounds(), xdraw.Src, nil)
	soft := blur(0.01)(cloneRGBA(up), nil)
	for i := 0; i < len(up.Pix); i += 4 {
		for k := range 3 {
			v := float64(up.Pix[i+k])
			up.Pix[i+k] = clamp8(v + 0.8*(v-float64(soft.Pix[i+k])))
		}
	}
	return up
}
