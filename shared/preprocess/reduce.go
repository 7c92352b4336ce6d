package preprocess

import (
	"image"
	"image/color"
	"image/draw"
)

// reduce shrinks large sources by an integer factor with a box filter before
// the Catmull-Rom resize. Catmull-Rom's support grows with the scale factor,
// so resizing a 12 MP photo straight to 32x32 costs hundreds of taps per
// output pixel and dominated the serving path; a box pre-reduction touches
// each source pixel once and leaves at least twice the target resolution for
// the final filter, so quality is kept (the same trick as Pillow's
// reducing_gap). Sources already within 4x of the target are returned as is,
// so small training images take exactly the single-filter path.
func reduce(img image.Image, size int) image.Image {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	f := max(w, h) / (2 * size)
	if f < 2 {
		return img
	}
	ow, oh := (w+f-1)/f, (h+f-1)/f
	out := image.NewRGBA(image.Rect(0, 0, ow, oh))
	sums := make([]uint32, 4*ow) // r, g, b, a per output column
	counts := make([]uint32, ow)

	// pixel returns premultiplied 8-bit RGBA for row y; rows are produced
	// one at a time so no full-size RGBA copy of the source is made.
	var row func(y int, dst []uint8)
	switch src := img.(type) {
	case *image.YCbCr:
		row = func(y int, dst []uint8) {
			for x := 0; x < w; x++ {
				yi := src.YOffset(b.Min.X+x, y)
				ci := src.COffset(b.Min.X+x, y)
				r, g, bb := color.YCbCrToRGB(src.Y[yi], src.Cb[ci], src.Cr[ci])
				dst[4*x], dst[4*x+1], dst[4*x+2], dst[4*x+3] = r, g, bb, 255
			}
		}
	case *image.RGBA:
		row = func(y int, dst []uint8) {
			i := src.PixOffset(b.Min.X, y)
			copy(dst, src.Pix[i:i+4*w])
		}
	default:
		// Any other type is converted one row at a time through image/draw,
		// which premultiplies alpha and has fast paths for the common types.
		tmp := image.NewRGBA(image.Rect(0, 0, w, 1))
		row = func(y int, dst []uint8) {
			draw.Draw(tmp, tmp.Bounds(), img, image.Pt(b.Min.X, y), draw.Src)
			copy(dst, tmp.Pix)
		}
	}

	line := make([]uint8, 4*w)
	for oy := range oh {
		clear(sums)
		clear(counts)
		for y := oy * f; y < min(h, (oy+1)*f); y++ {
			row(b.Min.Y+y, line)
			for x := range w {
				ox := x / f
				s := sums[4*ox : 4*ox+4 : 4*ox+4]
				p := line[4*x : 4*x+4 : 4*x+4]
				s[0] += uint32(p[0])
				s[1] += uint32(p[1])
				s[2] += uint32(p[2])
				s[3] += uint32(p[3])
				counts[ox]++
			}
		}
		o := out.Pix[oy*out.Stride:]
		for ox := range ow {
			n, half := counts[ox], counts[ox]/2
			for c := range 4 {
				o[4*ox+c] = uint8((sums[4*ox+c] + half) / n)
			}
		}
	}
	return out
}
