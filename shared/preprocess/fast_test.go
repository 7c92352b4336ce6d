package preprocess

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/jpeg"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"testing"

	xdraw "golang.org/x/image/draw"
)

// Tests of the fast path: TurboJPEG decoding (scaled on load), the
// plane-wise box reducer and the fixed-point resizer, each against the
// standard library or x/image as the reference.

// diffStats compares two equally sized RGBA images channel by channel.
func diffStats(a, b *image.RGBA) (maxDiff int, mean float64) {
	var sum float64
	for i := range a.Pix {
		d := absDiff(a.Pix[i], b.Pix[i])
		maxDiff = max(maxDiff, d)
		sum += float64(d)
	}
	return maxDiff, sum / float64(len(a.Pix))
}

// translucent returns m with a diagonal alpha ramp (premultiplied).
func translucent(m *image.RGBA) *image.RGBA {
	out := image.NewRGBA(m.Bounds())
	w, h := m.Bounds().Dx(), m.Bounds().Dy()
	for y := range h {
		for x := range w {
			c := m.RGBAAt(x, y)
			a := uint32(255 * (x + y) / (w + h - 1))
			out.SetRGBA(x, y, color.RGBA{uint8(uint32(c.R) * a / 255), uint8(uint32(c.G) * a / 255), uint8(uint32(c.B) * a / 255), uint8(a)})
		}
	}
	return out
}

// The resizer's stated tolerance against x/image/draw's CatmullRom: every
// channel within 1 level, mean under 0.3 level (measured: at most 0.24). x/image/draw
// truncates where this rounds, hence the difference.
func TestResizeMatchesXDraw(t *testing.T) {
	const maxTol, meanTol = 1, 0.3
	bg := color.RGBA{250, 240, 230, 255}
	for _, tc := range []struct{ sw, sh, dw, dh int }{
		{256, 192, 32, 24}, {100, 100, 32, 32}, {127, 65, 32, 16}, {64, 64, 32, 32},
		{40, 30, 32, 24}, {32, 32, 32, 32}, {9, 13, 20, 29}, {1, 1, 7, 7}, {300, 7, 32, 1},
	} {
		for _, alpha := range []bool{false, true} {
			t.Run(fmt.Sprintf("%dx%d_to_%dx%d_alpha=%v", tc.sw, tc.sh, tc.dw, tc.dh, alpha), func(t *testing.T) {
				src := testImage(tc.sw, tc.sh, uint64(tc.sw*tc.sh))
				if alpha {
					src = translucent(src)
				}
				got := image.NewRGBA(image.Rect(0, 0, tc.dw+4, tc.dh+4))
				draw.Draw(got, got.Bounds(), image.NewUniform(bg), image.Point{}, draw.Src)
				want := image.NewRGBA(got.Bounds())
				copy(want.Pix, got.Pix)
				r := image.Rect(2, 2, 2+tc.dw, 2+tc.dh)
				resizeOnto(got, r, src, [3]uint8{bg.R, bg.G, bg.B})
				xdraw.CatmullRom.Scale(want, r, src, src.Bounds(), xdraw.Over, nil)
				m, mean := diffStats(got, want)
				t.Logf("max %d, mean %.3f levels", m, mean)
				if m > maxTol || mean > meanTol {
					t.Errorf("max difference %d levels, mean %.3f; want <= %d and <= %.1f", m, mean, maxTol, meanTol)
				}
			})
		}
	}
}

// Flat areas must stay exactly flat: the fixed-point weights of every
// output pixel sum to one.
func TestResizeKeepsFlatColour(t *testing.T) {
	for _, n := range []int{1, 3, 31, 100, 1000} {
		src := image.NewRGBA(image.Rect(0, 0, n, n+1))
		draw.Draw(src, src.Bounds(), image.NewUniform(color.RGBA{201, 13, 77, 255}), image.Point{}, draw.Src)
		dst := image.NewRGBA(image.Rect(0, 0, 32, 32))
		resizeOnto(dst, dst.Bounds(), src, [3]uint8{})
		for i := 0; i < len(dst.Pix); i += 4 {
			if p := dst.Pix[i : i+4]; p[0] != 201 || p[1] != 13 || p[2] != 77 || p[3] != 255 {
				t.Fatalf("%dx%d: pixel %d = %v, want [201 13 77 255]", n, n+1, i/4, p)
			}
		}
	}
}

// referenceReduce is the definition reduce implements: convert every
// pixel to premultiplied RGBA, then average each box in floating point.
// YCbCr pixels are converted without clipping (JFIF's formulas), and the
// average is clipped: averaging the samples before one conversion, as
// reduce does, is that, whereas image/draw's per-pixel conversion clips
// the out-of-gamut colours that chroma subsampling produces at edges.
func referenceReduce(img image.Image, f int) *image.RGBA {
	b := img.Bounds()
	full := image.NewRGBA(image.Rect(0, 0, b.Dx(), b.Dy()))
	draw.Draw(full, full.Bounds(), img, b.Min, draw.Src)
	ycc, _ := img.(*image.YCbCr)
	ow, oh := (b.Dx()+f-1)/f, (b.Dy()+f-1)/f
	out := image.NewRGBA(image.Rect(0, 0, ow, oh))
	for oy := range oh {
		for ox := range ow {
			var s [4]float64
			n := 0.0
			for y := oy * f; y < min(b.Dy(), (oy+1)*f); y++ {
				for x := ox * f; x < min(b.Dx(), (ox+1)*f); x++ {
					p := full.Pix[full.PixOffset(x, y):]
					for c := range 4 {
						s[c] += float64(p[c])
					}
					if ycc != nil {
						yi, ci := ycc.YOffset(b.Min.X+x, b.Min.Y+y), ycc.COffset(b.Min.X+x, b.Min.Y+y)
						yy, cb, cr := float64(ycc.Y[yi]), float64(ycc.Cb[ci])-128, float64(ycc.Cr[ci])-128
						s[0] += yy + 1.402*cr - float64(p[0])
						s[1] += yy - 0.344136*cb - 0.714136*cr - float64(p[1])
						s[2] += yy + 1.772*cb - float64(p[2])
					}
					n++
				}
			}
			for c := range 4 {
				out.Pix[out.PixOffset(ox, oy)+c] = uint8(math.Round(min(255, max(0, s[c]/n))))
			}
		}
	}
	return out
}

// reducerSources returns the same picture in every layout reduce has a
// path for, plus one that takes the generic path.
func reducerSources(t testing.TB, w, h int) map[string]image.Image {
	t.Helper()
	rgba := translucent(testImage(w, h, 21))
	opaque := testImage(w, h, 22)
	out := map[string]image.Image{"rgba": rgba}
	nrgba := image.NewNRGBA(rgba.Bounds())
	nrgba64 := image.NewNRGBA64(rgba.Bounds())
	rgba64 := image.NewRGBA64(rgba.Bounds())
	gray := image.NewGray(rgba.Bounds())
	gray16 := image.NewGray16(rgba.Bounds())
	cmyk := image.NewCMYK(rgba.Bounds())
	pal := image.NewPaletted(rgba.Bounds(), palette())
	for _, d := range []draw.Image{nrgba, nrgba64, rgba64} {
		draw.Draw(d, d.Bounds(), rgba, image.Point{}, draw.Src)
	}
	for _, d := range []draw.Image{gray, gray16, cmyk, pal} {
		draw.Draw(d, d.Bounds(), opaque, image.Point{}, draw.Src)
	}
	out["nrgba"], out["nrgba64"], out["rgba64"], out["gray"], out["gray16"] = nrgba, nrgba64, rgba64, gray, gray16
	out["cmyk (generic)"], out["paletted"] = cmyk, pal
	// 16-bit samples with distinct low bytes, so dropping them would show.
	for i := 1; i < len(gray16.Pix); i += 2 {
		gray16.Pix[i] = uint8(i * 37)
	}
	for _, ratio := range []image.YCbCrSubsampleRatio{image.YCbCrSubsampleRatio420, image.YCbCrSubsampleRatio422, image.YCbCrSubsampleRatio444, image.YCbCrSubsampleRatio440, image.YCbCrSubsampleRatio411} {
		y := image.NewYCbCr(rgba.Bounds(), ratio)
		for py := range h {
			for px := range w {
				c := opaque.RGBAAt(px, py)
				yy, cb, cr := color.RGBToYCbCr(c.R, c.G, c.B)
				y.Y[y.YOffset(px, py)] = yy
				y.Cb[y.COffset(px, py)], y.Cr[y.COffset(px, py)] = cb, cr
			}
		}
		out["ycbcr "+ratio.String()] = y
	}
	return out
}

func palette() color.Palette {
	var p color.Palette
	for r := range 6 {
		for g := range 7 {
			for b := range 6 {
				p = append(p, color.RGBA{uint8(r * 51), uint8(g * 42), uint8(b * 51), 255})
			}
		}
	}
	return p
}

// The plane-wise reducer equals converting every pixel and then averaging,
// within one level (two for YCbCr, which is averaged before its
// conversion, and for 16-bit alpha-weighted colour), for every layout.
func TestReduceMatchesReference(t *testing.T) {
	for name, src := range reducerSources(t, 61, 47) {
		for _, f := range []int{1, 2, 5, 8} {
			t.Run(fmt.Sprintf("%s/f=%d", name, f), func(t *testing.T) {
				got := reduce(src, f)
				want := referenceReduce(src, f)
				if got.Bounds() != want.Bounds() {
					t.Fatalf("bounds %v, want %v", got.Bounds(), want.Bounds())
				}
				tol := 1
				if _, ok := src.(*image.YCbCr); ok {
					tol = 2
				}
				if m, _ := diffStats(got, want); m > tol {
					t.Errorf("max difference %d levels, want <= %d", m, tol)
				}
			})
		}
	}
}

// A sub-image (non-zero bounds origin) reduces like a copy of itself.
func TestReduceSubImage(t *testing.T) {
	for name, src := range reducerSources(t, 50, 40) {
		sub := src.(interface {
			SubImage(image.Rectangle) image.Image
		}).SubImage(image.Rect(7, 5, 43, 33))
		got, want := reduce(sub, 3), referenceReduce(sub, 3)
		tol := 1
		if _, ok := src.(*image.YCbCr); ok {
			tol = 2
		}
		if m, _ := diffStats(got, want); m > tol {
			t.Errorf("%s: max difference %d levels, want <= %d", name, m, tol)
		}
	}
}

func TestJPEGScale(t *testing.T) {
	for _, tc := range []struct{ w, h, size, want int }{
		{4000, 3000, 32, 1},  // 500 >= 64
		{1920, 1080, 32, 1},  // 240
		{400, 300, 32, 2},    // 1/8 gives 50 < 64; 1/4 gives 100
		{200, 150, 32, 4},    // 1/2 gives 100
		{100, 100, 32, 8},    // 1/2 gives 50: full size
		{3000, 4000, 224, 1}, // portrait: the longer side counts; 1/8 gives 500 >= 448
		{3000, 2000, 224, 2}, // 1/8 gives 375 < 448
		{10, 10, 0, 8},
	} {
		if got := jpegScale(tc.w, tc.h, tc.size); got != tc.want && tc.size > 0 {
			t.Errorf("jpegScale(%d, %d, %d) = %d/8, want %d/8", tc.w, tc.h, tc.size, got, tc.want)
		}
	}
}

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TurboJPEG and image/jpeg differ in IDCT and chroma upsampling (libjpeg
// interpolates chroma, image/jpeg replicates it, which shows at sharp colour
// edges); decoded at full size they must still show the same picture for
// every JPEG flavour photos come in.
func TestJPEGVariantsMatchImageJPEG(t *testing.T) {
	gray := image.NewGray(image.Rect(0, 0, 96, 64))
	draw.Draw(gray, gray.Bounds(), testImage(96, 64, 31), image.Point{}, draw.Src)
	for _, tc := range []struct {
		name string
		b    []byte
		want color.Model
	}{
		{"baseline 4:2:0", encodeJPEG(t, testImage(96, 64, 30), 90), color.RGBAModel},
		{"grayscale", encodeJPEG(t, gray, 90), color.GrayModel},
		{"progressive", readFixture(t, "progressive.jpg"), color.RGBAModel},
		{"cmyk (YCCK, Adobe)", readFixture(t, "cmyk.jpg"), color.RGBAModel},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := Decode(tc.b, Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if m := d.Image.ColorModel(); m != tc.want {
				t.Errorf("decoded colour model %v, want %v", m, tc.want)
			}
			ref, err := jpeg.Decode(bytes.NewReader(tc.b))
			if err != nil {
				t.Fatal(err)
			}
			got, want := reduce(d.Image, 1), reduce(ref, 1)
			if m, mean := diffStats(got, want); m > 64 || mean > 1.5 {
				t.Errorf("against image/jpeg: max difference %d, mean %.2f levels; want <= 64 and <= 1.5", m, mean)
			}
		})
	}
}

// The CMYK fixture was made from fixture.png: decoding must give back its
// colours, not inverted or ink-heavy ones.
func TestCMYKJPEGShowsTheOriginalColours(t *testing.T) {
	d, err := Decode(readFixture(t, "cmyk.jpg"), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	orig, err := Decode(readFixture(t, "fixture.png"), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if m, mean := diffStats(reduce(d.Image, 1), reduce(orig.Image, 1)); mean > 3 {
		t.Errorf("against the RGB original: max difference %d, mean %.2f levels; want mean <= 3", m, mean)
	}
}

// Scaling on load changes the cost, not the picture: the canvas of a
// photo decoded at 1/8 stays close to the one decoded at full size. The
// box stages align differently (8x8 DCT blocks, then another box), which
// moves sharp edges by a fraction of an output pixel: hence the bound on
// the mean, with a loose one on the maximum.
func TestScaledDecodeMatchesFullDecode(t *testing.T) {
	spec := DefaultSpec(32)
	for _, sz := range [][2]int{{2000, 1500}, {1500, 2000}, {1023, 517}, {640, 480}} {
		b := encodeJPEG(t, testImage(sz[0], sz[1], 41), 90)
		scaledD, err := DecodeFor(b, Limits{}, spec.Size)
		if err != nil {
			t.Fatal(err)
		}
		if num := jpegScale(sz[0], sz[1], spec.Size); scaledD.Image.Bounds().Dx() != scaled(sz[0], num) {
			t.Fatalf("%v: decoded %v, want the %d/8 scale", sz, scaledD.Image.Bounds(), num)
		}
		full, err := Decode(b, Limits{})
		if err != nil {
			t.Fatal(err)
		}
		got := Fit(scaledD, spec.Size, spec.Background)
		want := Fit(full, spec.Size, spec.Background)
		if m, mean := diffStats(got, want); m > 48 || mean > 1 {
			t.Errorf("%v: scaled against full decode: max difference %d, mean %.2f levels; want <= 48 and <= 1", sz, m, mean)
		}
	}
}

// DecodeCost must cover what decoding and fitting allocate on the Go heap
// (libjpeg's own buffers are C memory, covered by the estimate but not
// visible here), without overstating it more than a few times.
func TestDecodeCostCoversAllocations(t *testing.T) {
	rgba := testImage(900, 700, 51)
	nrgba64 := image.NewNRGBA64(rgba.Bounds())
	draw.Draw(nrgba64, nrgba64.Bounds(), rgba, image.Point{}, draw.Src)
	gray16 := image.NewGray16(rgba.Bounds())
	draw.Draw(gray16, gray16.Bounds(), rgba, image.Point{}, draw.Src)
	for name, b := range map[string][]byte{
		"jpeg":       encodeJPEG(t, rgba, 90),
		"png rgba":   encodePNG(t, rgba),
		"png 16bit":  encodePNG(t, nrgba64),
		"png gray16": encodePNG(t, gray16),
	} {
		for _, size := range []int{0, 32} {
			t.Run(fmt.Sprintf("%s/size=%d", name, size), func(t *testing.T) {
				est, err := DecodeCost(b, Limits{}, size)
				if err != nil {
					t.Fatal(err)
				}
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				d, err := DecodeFor(b, Limits{}, size)
				if err != nil {
					t.Fatal(err)
				}
				if size > 0 {
					Fit(d, size, [3]uint8{})
				}
				runtime.ReadMemStats(&after)
				// The encoded-bytes readers and zlib state are not pixel
				// memory; allow them 256 KiB.
				alloc := int64(after.TotalAlloc - before.TotalAlloc)
				if alloc > est+256<<10 {
					t.Errorf("allocated %d bytes, estimate %d", alloc, est)
				}
				if est > 4*alloc+1<<20 {
					t.Errorf("estimate %d bytes is far above the %d allocated", est, alloc)
				}
			})
		}
	}
}

func TestDecodeCostOfProgressiveCountsCoefficients(t *testing.T) {
	prog := readFixture(t, "progressive.jpg")
	base := encodeJPEG(t, testImage(96, 64, 1), 95)
	if !jpegMultiScan(prog) || jpegMultiScan(base) {
		t.Fatalf("multi-scan: progressive %v, baseline %v; want true, false", jpegMultiScan(prog), jpegMultiScan(base))
	}
	p, _ := DecodeCost(prog, Limits{}, 0)
	q, _ := DecodeCost(base, Limits{}, 0)
	if p < q+2*96*64 {
		t.Errorf("progressive estimate %d is not above baseline %d by the coefficient buffer", p, q)
	}
}

func TestDecodeCostRefusesLikeDecodeConfig(t *testing.T) {
	if _, err := DecodeCost(hostilePNG(20000, 20000), Limits{}, 32); !errors.Is(err, ErrTooLarge) {
		t.Errorf("hostile PNG: %v, want ErrTooLarge", err)
	}
	if _, err := DecodeCost([]byte("nope"), Limits{}, 32); !errors.Is(err, ErrUnsupportedFormat) {
		t.Errorf("text: %v, want ErrUnsupportedFormat", err)
	}
}

// FuzzJPEG feeds mutated JPEGs to the TurboJPEG path at every scale it
// uses: any failure must be a *Error, never a crash.
func FuzzJPEG(f *testing.F) {
	gray := image.NewGray(image.Rect(0, 0, 40, 24))
	draw.Draw(gray, gray.Bounds(), testImage(40, 24, 3), image.Point{}, draw.Src)
	f.Add(encodeJPEG(f, testImage(160, 120, 1), 80), uint8(8))
	f.Add(encodeJPEG(f, gray, 80), uint8(4))
	f.Add(withOrientation(encodeJPEG(f, testImage(33, 17, 2), 60), 8, false), uint8(1))
	f.Add(readFixture(f, "progressive.jpg"), uint8(3))
	f.Add(readFixture(f, "cmyk.jpg"), uint8(10))
	r := rand.New(rand.NewPCG(1, 2))
	noise := make([]byte, 64)
	for i := range noise {
		noise[i] = byte(r.Uint32())
	}
	f.Add(append([]byte{0xFF, 0xD8, 0xFF}, noise...), uint8(2))
	f.Fuzz(func(t *testing.T, b []byte, size uint8) {
		spec := DefaultSpec(int(size%64) + 1)
		dst := make([]float32, spec.TensorLen())
		lim := Limits{MaxPixels: 1 << 20}
		err := spec.Process(b, lim, dst)
		var pe *Error
		if err != nil && !errors.As(err, &pe) {
			t.Fatalf("error %v is not a *Error", err)
		}
		if _, cerr := spec.DecodeCost(b, lim); (cerr == nil) != (err == nil) && cerr != nil {
			t.Fatalf("DecodeCost refused (%v) what Process accepted", cerr)
		}
	})
}
