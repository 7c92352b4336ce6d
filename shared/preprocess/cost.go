package preprocess

import (
	"image/color"
	"math"
)

// DecodeCost estimates, from the header alone, the peak bytes that
// decoding b for a size x size output (DecodeFor, then Fit) allocates: the
// decoder's own pixel buffer in its native format after any scale-on-load,
// what the decoder needs beside it (libjpeg's coefficient buffer for
// progressive JPEGs, PNG's interlace passes, WebP lossless' ARGB copy), and
// the box-reduced copy and resize buffer. It fails exactly as
// Decode's header check does, so a caller can admit the decode against a memory
// budget before any pixel memory exists. size 0 means a full-size Decode.
func DecodeCost(b []byte, lim Limits, size int) (int64, error) {
	h, err := readHeader(b, lim)
	if err != nil {
		return 0, err
	}
	return h.cost(size), nil
}

func (h header) cost(size int) int64 {
	w, ht := float64(h.cfg.Width), float64(h.cfg.Height)
	px := w * ht
	var decoded, extra float64
	switch h.format {
	case JPEG:
		num := h.scale(size)
		dw, dh := float64(scaled(h.cfg.Width, num)), float64(scaled(h.cfg.Height, num))
		bpp := 4.0
		if h.jpeg.gray() {
			bpp = 1
		}
		decoded = dw * dh * bpp
		if jpegMultiScan(h.b) {
			extra = 2 * h.jpeg.samplesPerPixel() * px
		}
	case PNG:
		decoded = px * bytesPerPixel(h.cfg.ColorModel)
		if pngInterlaced(h.b) {
			extra = decoded // the passes, then the merged image
		}
	case WebP:
		switch h.cfg.ColorModel {
		case color.YCbCrModel:
			decoded = 1.5 * px
		case color.NYCbCrAModel:
			decoded, extra = 2.5*px, 4*px // alpha may be VP8L-coded: an ARGB plane first
		default: // lossless: ARGB pixels, then NRGBA
			decoded, extra = 4*px, 4*px
		}
	}
	if size > 0 {
		extra += fitCost(h.decodedSize(size), size)
	}
	return int64(math.Ceil(decoded + extra))
}

// decodedSize is the pixel size DecodeFor returns for size.
func (h header) decodedSize(size int) [2]int {
	num := h.scale(size)
	return [2]int{scaled(h.cfg.Width, num), scaled(h.cfg.Height, num)}
}

// fitCost is what Fit allocates for a w x h source: the reduced RGBA copy,
// the resizer's int32 row buffer and the canvas (twice, with orientation).
func fitCost(d [2]int, size int) float64 {
	f := boxFactor(d[0], d[1], size)
	rw, rh := float64((d[0]+f-1)/f), float64((d[1]+f-1)/f)
	return 4*rw*rh + 16*float64(size)*rh + 8*float64(size*size)
}

// bytesPerPixel is the memory per pixel of an image in model m, as the
// standard decoders allocate it.
func bytesPerPixel(m color.Model) float64 {
	switch m {
	case color.GrayModel, color.AlphaModel:
		return 1
	case color.Gray16Model, color.Alpha16Model:
		return 2
	case color.RGBA64Model, color.NRGBA64Model:
		return 8
	case color.RGBAModel, color.NRGBAModel, color.CMYKModel:
		return 4
	}
	if _, ok := m.(color.Palette); ok {
		return 1
	}
	return 8 // unknown: the widest standard type
}

// pngInterlaced reads the IHDR interlace method (PNG signature, chunk
// length and type, then 12 bytes of IHDR fields).
func pngInterlaced(b []byte) bool { return len(b) > 28 && b[28] == 1 }
