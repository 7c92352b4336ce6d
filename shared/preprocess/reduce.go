package preprocess

import (
	"image"
	"image/color"
	"image/draw"
)

// reduce shrinks a source by the integer factor f with a box filter and
// returns it as premultiplied RGBA, the resizer's input. Catmull-Rom's
// support grows with the scale factor, so resizing a large source straight
// to 32x32 costs hundreds of taps per output pixel; a box pre-reduction
// touches each source pixel once (the same trick as Pillow's reducing_gap).
//
// It works plane-wise on the decoder's own pixel layout: it sums the stored
// samples of each f x f box (Y, Cb and Cr for YCbCr; alpha-weighted colour
// for non-premultiplied types; all 16 bits for 16-bit types) and converts
// colour once per output pixel, never per source pixel. With f = 1 it is
// only that conversion, and an *image.RGBA comes back as it is.
func reduce(img image.Image, f int) *image.RGBA {
	if m, ok := img.(*image.RGBA); ok && f == 1 && m.Rect.Min == (image.Point{}) {
		return m
	}
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	ow, oh := (w+f-1)/f, (h+f-1)/f
	out := image.NewRGBA(image.Rect(0, 0, ow, oh))
	r := newBoxRows(img)
	sums := make([]uint64, 4*ow)
	for oy := range oh {
		clear(sums)
		y0, y1 := oy*f, min(h, (oy+1)*f)
		for y := y0; y < y1; y++ {
			r.add(sums, b.Min.X, b.Min.Y+y, w, f)
		}
		o := out.Pix[oy*out.Stride : oy*out.Stride+4*ow]
		for ox := range ow {
			n := uint64((min(w, (ox+1)*f) - ox*f) * (y1 - y0))
			r.put(o[4*ox:4*ox+4:4*ox+4], sums[4*ox:4*ox+4:4*ox+4], n)
		}
	}
	return out
}

// boxRows sums source rows into per-output-column sums (four per column)
// and turns a column's sums over n pixels into one premultiplied RGBA pixel.
type boxRows interface {
	add(sums []uint64, x0, y, w, f int)
	put(dst []uint8, s []uint64, n uint64)
}

func newBoxRows(img image.Image) boxRows {
	switch m := img.(type) {
	case *image.YCbCr:
		return ycbcrRows{m}
	case *image.RGBA:
		return rgbaRows{m.Pix, m.Stride, m.PixOffset(0, 0)}
	case *image.NRGBA:
		return nrgbaRows{m}
	case *image.Gray:
		return grayRows{m}
	case *image.Gray16:
		return gray16Rows{m}
	case *image.RGBA64:
		return rgba64Rows{m}
	case *image.NRGBA64:
		return nrgba64Rows{m}
	case *image.Paletted:
		return newPalettedRows(m)
	}
	return newGenericRows(img)
}

// div is sum / n rounded to nearest.
func div(sum, n uint64) uint64 { return (sum + n/2) / n }

// put8 writes four 8-bit averages.
func put8(dst []uint8, s []uint64, n uint64) {
	dst[0], dst[1], dst[2], dst[3] = uint8(div(s[0], n)), uint8(div(s[1], n)), uint8(div(s[2], n)), uint8(div(s[3], n))
}

// put16 writes four 16-bit averages as 8-bit (v/257, rounded).
func put16(dst []uint8, s []uint64, n uint64) {
	for c := range 4 {
		dst[c] = uint8(div(s[c], 257*n))
	}
}

// ycbcrRows sums Y, Cb and Cr separately (chroma at its own subsampled
// position) and converts the averages to RGB: the conversion is affine, so
// converting the mean equals the mean of the conversions up to rounding.
type ycbcrRows struct{ m *image.YCbCr }

func (r ycbcrRows) add(sums []uint64, x0, y, w, f int) {
	m := r.m
	yi := m.YOffset(x0, y)
	yrow := m.Y[yi : yi+w]
	ci0 := m.COffset(x0, y)
	cb, cr := m.Cb[ci0:], m.Cr[ci0:]
	var hs int // horizontal chroma shift: 4:2:0, 4:2:2 and 4:1:1 subsample columns
	switch m.SubsampleRatio {
	case image.YCbCrSubsampleRatio420, image.YCbCrSubsampleRatio422:
		hs = 1
	case image.YCbCrSubsampleRatio411, image.YCbCrSubsampleRatio410:
		hs = 2
	}
	for ox := 0; ox*f < w; ox++ {
		var sy, sb, sr uint64
		for x := ox * f; x < min(w, (ox+1)*f); x++ {
			ci := (x0+x)>>hs - x0>>hs // relative to x0's chroma sample
			sy += uint64(yrow[x])
			sb += uint64(cb[ci])
			sr += uint64(cr[ci])
		}
		s := sums[4*ox : 4*ox+3 : 4*ox+3]
		s[0] += sy
		s[1] += sb
		s[2] += sr
	}
}

func (ycbcrRows) put(dst []uint8, s []uint64, n uint64) {
	dst[0], dst[1], dst[2] = color.YCbCrToRGB(uint8(div(s[0], n)), uint8(div(s[1], n)), uint8(div(s[2], n)))
	dst[3] = 255
}

// rgbaRows sums premultiplied 8-bit samples. It keeps the raw slice (not
// *image.RGBA) so decodeJPEG's output and any RGBA share one loop.
type rgbaRows struct {
	pix    []uint8
	stride int
	origin int // offset of the bounds' origin in pix
}

func (r rgbaRows) add(sums []uint64, x0, y, w, f int) {
	i := r.origin + y*r.stride + 4*x0
	row := r.pix[i : i+4*w]
	for ox := 0; ox*f < w; ox++ {
		var s0, s1, s2, s3 uint64
		for x := ox * f; x < min(w, (ox+1)*f); x++ {
			p := row[4*x : 4*x+4 : 4*x+4]
			s0 += uint64(p[0])
			s1 += uint64(p[1])
			s2 += uint64(p[2])
			s3 += uint64(p[3])
		}
		s := sums[4*ox : 4*ox+4 : 4*ox+4]
		s[0], s[1], s[2], s[3] = s[0]+s0, s[1]+s1, s[2]+s2, s[3]+s3
	}
}

func (rgbaRows) put(dst []uint8, s []uint64, n uint64) { put8(dst, s, n) }

// nrgbaRows sums alpha-weighted colour (c*a) and alpha, so a transparent
// pixel's colour counts for nothing.
type nrgbaRows struct{ m *image.NRGBA }

func (r nrgbaRows) add(sums []uint64, x0, y, w, f int) {
	i := r.m.PixOffset(x0, y)
	row := r.m.Pix[i : i+4*w]
	for ox := 0; ox*f < w; ox++ {
		var s0, s1, s2, s3 uint64
		for x := ox * f; x < min(w, (ox+1)*f); x++ {
			p := row[4*x : 4*x+4 : 4*x+4]
			a := uint64(p[3])
			s0 += uint64(p[0]) * a
			s1 += uint64(p[1]) * a
			s2 += uint64(p[2]) * a
			s3 += a
		}
		s := sums[4*ox : 4*ox+4 : 4*ox+4]
		s[0], s[1], s[2], s[3] = s[0]+s0, s[1]+s1, s[2]+s2, s[3]+s3
	}
}

func (nrgbaRows) put(dst []uint8, s []uint64, n uint64) {
	for c := range 3 {
		dst[c] = uint8(div(s[c], 255*n))
	}
	dst[3] = uint8(div(s[3], n))
}

type grayRows struct{ m *image.Gray }

func (r grayRows) add(sums []uint64, x0, y, w, f int) {
	i := r.m.PixOffset(x0, y)
	row := r.m.Pix[i : i+w]
	for ox := 0; ox*f < w; ox++ {
		var s uint64
		for _, v := range row[ox*f : min(w, (ox+1)*f)] {
			s += uint64(v)
		}
		sums[4*ox] += s
	}
}

func (grayRows) put(dst []uint8, s []uint64, n uint64) {
	v := uint8(div(s[0], n))
	dst[0], dst[1], dst[2], dst[3] = v, v, v, 255
}

type gray16Rows struct{ m *image.Gray16 }

func (r gray16Rows) add(sums []uint64, x0, y, w, f int) {
	i := r.m.PixOffset(x0, y)
	row := r.m.Pix[i : i+2*w]
	for ox := 0; ox*f < w; ox++ {
		var s uint64
		for x := ox * f; x < min(w, (ox+1)*f); x++ {
			s += uint64(row[2*x])<<8 | uint64(row[2*x+1])
		}
		sums[4*ox] += s
	}
}

func (gray16Rows) put(dst []uint8, s []uint64, n uint64) {
	v := uint8(div(s[0], 257*n))
	dst[0], dst[1], dst[2], dst[3] = v, v, v, 255
}

// rgba64Rows sums premultiplied big-endian 16-bit samples.
type rgba64Rows struct{ m *image.RGBA64 }

func (r rgba64Rows) add(sums []uint64, x0, y, w, f int) {
	i := r.m.PixOffset(x0, y)
	row := r.m.Pix[i : i+8*w]
	for ox := 0; ox*f < w; ox++ {
		s := sums[4*ox : 4*ox+4 : 4*ox+4]
		for x := ox * f; x < min(w, (ox+1)*f); x++ {
			p := row[8*x : 8*x+8 : 8*x+8]
			s[0] += uint64(p[0])<<8 | uint64(p[1])
			s[1] += uint64(p[2])<<8 | uint64(p[3])
			s[2] += uint64(p[4])<<8 | uint64(p[5])
			s[3] += uint64(p[6])<<8 | uint64(p[7])
		}
	}
}

func (rgba64Rows) put(dst []uint8, s []uint64, n uint64) { put16(dst, s, n) }

// nrgba64Rows sums alpha-weighted 16-bit colour and alpha.
type nrgba64Rows struct{ m *image.NRGBA64 }

func (r nrgba64Rows) add(sums []uint64, x0, y, w, f int) {
	i := r.m.PixOffset(x0, y)
	row := r.m.Pix[i : i+8*w]
	for ox := 0; ox*f < w; ox++ {
		s := sums[4*ox : 4*ox+4 : 4*ox+4]
		for x := ox * f; x < min(w, (ox+1)*f); x++ {
			p := row[8*x : 8*x+8 : 8*x+8]
			a := uint64(p[6])<<8 | uint64(p[7])
			s[0] += (uint64(p[0])<<8 | uint64(p[1])) * a
			s[1] += (uint64(p[2])<<8 | uint64(p[3])) * a
			s[2] += (uint64(p[4])<<8 | uint64(p[5])) * a
			s[3] += a
		}
	}
}

func (nrgba64Rows) put(dst []uint8, s []uint64, n uint64) {
	for c := range 3 {
		dst[c] = uint8(div(s[c], 65535*257*n))
	}
	dst[3] = uint8(div(s[3], 257*n))
}

// palettedRows looks each index up in the palette, premultiplied once.
type palettedRows struct {
	m   *image.Paletted
	pal [256][4]uint64
}

func newPalettedRows(m *image.Paletted) *palettedRows {
	r := &palettedRows{m: m}
	for i, c := range m.Palette {
		cr, cg, cb, ca := c.RGBA()
		r.pal[i] = [4]uint64{uint64(cr >> 8), uint64(cg >> 8), uint64(cb >> 8), uint64(ca >> 8)}
	}
	return r
}

func (r *palettedRows) add(sums []uint64, x0, y, w, f int) {
	i := r.m.PixOffset(x0, y)
	row := r.m.Pix[i : i+w]
	for ox := 0; ox*f < w; ox++ {
		s := sums[4*ox : 4*ox+4 : 4*ox+4]
		for _, v := range row[ox*f : min(w, (ox+1)*f)] {
			p := &r.pal[v] // an index past the palette reads as transparent black
			s[0], s[1], s[2], s[3] = s[0]+p[0], s[1]+p[1], s[2]+p[2], s[3]+p[3]
		}
	}
}

func (*palettedRows) put(dst []uint8, s []uint64, n uint64) { put8(dst, s, n) }

// genericRows converts any other image type (CMYK, NYCbCrA, Alpha...) one
// row at a time through image/draw, which premultiplies alpha, then sums
// the RGBA row. These types are rare for photos.
type genericRows struct {
	img image.Image
	tmp *image.RGBA
}

func newGenericRows(img image.Image) *genericRows {
	return &genericRows{img: img, tmp: image.NewRGBA(image.Rect(0, 0, img.Bounds().Dx(), 1))}
}

func (r *genericRows) add(sums []uint64, x0, y, w, f int) {
	draw.Draw(r.tmp, r.tmp.Bounds(), r.img, image.Pt(x0, y), draw.Src)
	rgbaRows{r.tmp.Pix, r.tmp.Stride, 0}.add(sums, 0, 0, w, f)
}

func (*genericRows) put(dst []uint8, s []uint64, n uint64) { put8(dst, s, n) }
