package preprocess

// jpegScales are the DCT scaling factors (eighths) decodeJPEG chooses
// from: 1/8 keeps only each block's DC coefficient (its mean), and
// libjpeg-turbo has SIMD inverse DCTs for 1/4 and 1/2. Allowing the odd
// eighths too was measured on the 600 photos of fruits360-10/photos (100 to
// 900 pixels a side, size 32): about 5% less time, but canvases further from
// a full decode (mean 1.53 against 1.36 levels), so they are not used.
var jpegScales = [...]int{1, 2, 4, 8}

// scaled is TurboJPEG's TJSCALED: the dimension decoded at num/8.
func scaled(dim, num int) int { return (dim*num + 7) / 8 }

// jpegScale returns the smallest scale (in eighths) at which the longer
// side of a w x h JPEG still has at least resampleMargin times size pixels; 8
// (no scaling) when even the full image is smaller.
func jpegScale(w, h, size int) int {
	long := max(w, h)
	for _, num := range jpegScales {
		if scaled(long, num) >= resampleMargin*size {
			return num
		}
	}
	return 8
}
