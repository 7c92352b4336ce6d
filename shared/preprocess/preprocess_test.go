package preprocess

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"image"
	"image/color"
	"image/draw"
	"image/jpeg"
	"image/png"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"

	xdraw "golang.org/x/image/draw"
)

// pngChunk encodes one PNG chunk with its CRC.
func pngChunk(typ string, data []byte) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.BigEndian, uint32(len(data)))
	b.WriteString(typ)
	b.Write(data)
	binary.Write(&b, binary.BigEndian, crc32.ChecksumIEEE(append([]byte(typ), data...)))
	return b.Bytes()
}

// hostilePNG is a tiny file whose header declares w x h pixels.
func hostilePNG(w, h uint32) []byte {
	var ihdr [13]byte
	binary.BigEndian.PutUint32(ihdr[0:], w)
	binary.BigEndian.PutUint32(ihdr[4:], h)
	ihdr[8], ihdr[9] = 8, 6 // 8-bit RGBA
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	b.Write(pngChunk("IHDR", ihdr[:]))
	b.Write(pngChunk("IDAT", make([]byte, 64)))
	b.Write(pngChunk("IEND", nil))
	return b.Bytes()
}

// testImage is a deterministic picture with structure at every scale:
// gradients, a coloured disc and some noise, so JPEG sizes are realistic.
func testImage(w, h int, seed uint64) *image.RGBA {
	r := rand.New(rand.NewPCG(seed, 1))
	m := image.NewRGBA(image.Rect(0, 0, w, h))
	cx, cy, rad := float64(w)/2, float64(h)/2, float64(min(w, h))/3
	for y := range h {
		for x := range w {
			i := m.PixOffset(x, y)
			n := uint8(r.IntN(24))
			if d := math.Hypot(float64(x)-cx, float64(y)-cy); d < rad {
				m.Pix[i], m.Pix[i+1], m.Pix[i+2] = 200+n/2, uint8(40+x*100/w), 30+n
			} else {
				m.Pix[i], m.Pix[i+1], m.Pix[i+2] = 230+n/2, 230+n/2, uint8(200+y*40/h)
			}
			m.Pix[i+3] = 255
		}
	}
	return m
}

func encodeJPEG(t testing.TB, m image.Image, q int) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := jpeg.Encode(&b, m, &jpeg.Options{Quality: q}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func encodePNG(t testing.TB, m image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, m); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// withOrientation inserts an EXIF APP1 segment carrying orientation o right
// after the JPEG's SOI marker, in the given byte order.
func withOrientation(j []byte, o uint16, bigEndian bool) []byte {
	var bo binary.ByteOrder = binary.LittleEndian
	hdr := "II*\x00"
	if bigEndian {
		bo, hdr = binary.BigEndian, "MM\x00*"
	}
	tiff := make([]byte, 8+2+2*12+4)
	copy(tiff, hdr)
	bo.PutUint32(tiff[4:], 8)
	bo.PutUint16(tiff[8:], 2)
	// An unrelated tag first, so the parser has to walk entries.
	e := tiff[10:]
	bo.PutUint16(e[0:], 0x010F) // Make
	bo.PutUint16(e[2:], 2)
	bo.PutUint32(e[4:], 1)
	e = tiff[22:]
	bo.PutUint16(e[0:], 0x0112)
	bo.PutUint16(e[2:], 3)
	bo.PutUint32(e[4:], 1)
	bo.PutUint16(e[8:], o)
	seg := append([]byte("Exif\x00\x00"), tiff...)
	app1 := []byte{0xFF, 0xE1, 0, 0}
	binary.BigEndian.PutUint16(app1[2:], uint16(len(seg)+2))
	out := append([]byte{}, j[:2]...)
	out = append(out, app1...)
	out = append(out, seg...)
	return append(out, j[2:]...)
}

func TestSniff(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want Format
		kind error
	}{
		{"jpeg", encodeJPEG(t, testImage(8, 8, 1), 90), JPEG, nil},
		{"png", encodePNG(t, testImage(8, 8, 1)), PNG, nil},
		{"webp", []byte("RIFF\x00\x00\x00\x00WEBPVP8 "), WebP, nil},
		{"gif", []byte("GIF89a......"), "", ErrUnsupportedFormat},
		{"text", []byte("hello, world"), "", ErrUnsupportedFormat},
		{"empty", nil, "", ErrCorrupt},
		{"short jpeg", []byte{0xFF, 0xD8}, "", ErrUnsupportedFormat},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Sniff(tt.in)
			if got != tt.want || !errors.Is(err, tt.kind) || (tt.kind == nil) != (err == nil) {
				t.Errorf("Sniff = %q, %v; want %q, kind %v", got, err, tt.want, tt.kind)
			}
		})
	}
}

func TestDecodeRejects(t *testing.T) {
	good := encodeJPEG(t, testImage(40, 30, 2), 90)
	tests := []struct {
		name string
		in   []byte
		lim  Limits
		kind error
	}{
		{"20000x20000 png", hostilePNG(20000, 20000), Limits{}, ErrTooLarge},
		{"pixel cap", good, Limits{MaxPixels: 40*30 - 1}, ErrTooLarge},
		{"byte cap", good, Limits{MaxBytes: int64(len(good) - 1)}, ErrTooLarge},
		{"zero width png", hostilePNG(0, 10), Limits{}, ErrCorrupt},
		{"negative (huge uint32) height png", hostilePNG(10, 0x80000000), Limits{}, ErrCorrupt},
		{"truncated jpeg", good[:len(good)/2], Limits{}, ErrCorrupt},
		{"header only png", hostilePNG(10, 10), Limits{}, ErrCorrupt},
		{"garbage after jpeg magic", append([]byte{0xFF, 0xD8, 0xFF}, bytes.Repeat([]byte{0x42}, 100)...), Limits{}, ErrCorrupt},
		{"not an image", []byte("%PDF-1.7 ..."), Limits{}, ErrUnsupportedFormat},
		{"bad webp", []byte("RIFF\x10\x00\x00\x00WEBPVP8 \x04\x00\x00\x00abcd"), Limits{}, ErrCorrupt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode(tt.in, tt.lim)
			if !errors.Is(err, tt.kind) {
				t.Fatalf("Decode error = %v, want kind %v", err, tt.kind)
			}
			var pe *Error
			if !errors.As(err, &pe) || pe.Detail == "" {
				t.Errorf("error %v is not a *Error with a reason", err)
			}
		})
	}
}

// The 20000x20000 PNG would need 1.6 GB as RGBA; refusing it must cost
// next to nothing.
func TestHostilePNGRefusedWithoutAllocating(t *testing.T) {
	b := hostilePNG(20000, 20000)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err := Decode(b, Limits{})
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Decode = %v, want ErrTooLarge", err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 1<<20 {
		t.Errorf("refusing the image allocated %d bytes, want < 1 MiB", alloc)
	}
}

func TestFitKeepsAspectOnBackground(t *testing.T) {
	// A wide black image: the canvas must show background bands above and
	// below and black in the middle.
	src := image.NewRGBA(image.Rect(0, 0, 200, 100))
	for i := 3; i < len(src.Pix); i += 4 {
		src.Pix[i] = 255
	}
	c := Fit(&Decoded{Image: src, Orientation: 1}, 32, [3]uint8{255, 255, 255})
	if got := c.RGBAAt(16, 2); got != (color.RGBA{255, 255, 255, 255}) {
		t.Errorf("top band = %v, want white", got)
	}
	if got := c.RGBAAt(16, 16); got.R > 5 {
		t.Errorf("centre = %v, want black", got)
	}
	if got := c.RGBAAt(16, 29); got != (color.RGBA{255, 255, 255, 255}) {
		t.Errorf("bottom band = %v, want white", got)
	}
}

func TestTransparentPNGCompositesOverBackground(t *testing.T) {
	src := image.NewNRGBA(image.Rect(0, 0, 10, 10)) // fully transparent
	d, err := Decode(encodePNG(t, src), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	c := Fit(d, 8, [3]uint8{10, 20, 30})
	if got := c.RGBAAt(4, 4); got != (color.RGBA{10, 20, 30, 255}) {
		t.Errorf("pixel = %v, want the background", got)
	}
}

// quadrants is a square image with a distinct colour in each quadrant.
func quadrants(n int) *image.RGBA {
	cols := []color.RGBA{{255, 0, 0, 255}, {0, 255, 0, 255}, {0, 0, 255, 255}, {255, 255, 0, 255}}
	m := image.NewRGBA(image.Rect(0, 0, n, n))
	for y := range n {
		for x := range n {
			q := 0
			if x >= n/2 {
				q++
			}
			if y >= n/2 {
				q += 2
			}
			m.SetRGBA(x, y, cols[q])
		}
	}
	return m
}

// transform returns how a viewer displays stored image m under EXIF
// orientation o, computed independently of orient (by forward mapping).
func transform(m *image.RGBA, o int) *image.RGBA {
	n := m.Bounds().Dx()
	out := image.NewRGBA(m.Bounds())
	for y := range n {
		for x := range n {
			var dx, dy int // where stored (x, y) is displayed
			switch o {
			case 1:
				dx, dy = x, y
			case 2:
				dx, dy = n-1-x, y
			case 3:
				dx, dy = n-1-x, n-1-y
			case 4:
				dx, dy = x, n-1-y
			case 5:
				dx, dy = y, x
			case 6: // 90° clockwise: the left column becomes the top row
				dx, dy = n-1-y, x
			case 7:
				dx, dy = n-1-y, n-1-x
			case 8: // 90° counter-clockwise: the top row becomes the left column
				dx, dy = y, n-1-x
			}
			out.SetRGBA(dx, dy, m.RGBAAt(x, y))
		}
	}
	return out
}

func TestEXIFOrientation(t *testing.T) {
	src := quadrants(64)
	j := encodeJPEG(t, src, 100)
	for o := 1; o <= 8; o++ {
		for _, big := range []bool{false, true} {
			d, err := Decode(withOrientation(j, uint16(o), big), Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if d.Orientation != o {
				t.Fatalf("orientation %d (big endian %v): read %d", o, big, d.Orientation)
			}
			got := Fit(d, 16, [3]uint8{255, 255, 255})
			want := transform(quadrants(16), o)
			// Compare quadrant centres; edges blur in resampling.
			for _, p := range []image.Point{{4, 4}, {12, 4}, {4, 12}, {12, 12}} {
				g, w := got.RGBAAt(p.X, p.Y), want.RGBAAt(p.X, p.Y)
				if absDiff(g.R, w.R) > 40 || absDiff(g.G, w.G) > 40 || absDiff(g.B, w.B) > 40 {
					t.Errorf("orientation %d: pixel %v = %v, want about %v", o, p, g, w)
				}
			}
		}
	}
}

func absDiff(a, b uint8) int {
	if a > b {
		return int(a - b)
	}
	return int(b - a)
}

func TestOrientationParserIgnoresMalformedEXIF(t *testing.T) {
	j := encodeJPEG(t, testImage(8, 8, 3), 90)
	bad := [][]byte{
		withOrientation(j, 9, false), // out of range
		withOrientation(j, 0, true),
		append(append([]byte{}, j[:2]...), append([]byte{0xFF, 0xE1, 0x00, 0x08, 'E', 'x', 'i', 'f', 0, 0}, j[2:]...)...), // truncated TIFF
		append(append([]byte{}, j[:2]...), append([]byte{0xFF, 0xE1, 0xFF, 0xFF}, j[2:]...)...),                           // length past the end
	}
	for i, b := range bad {
		if o := jpegOrientation(b); o != 1 {
			t.Errorf("case %d: orientation %d, want 1", i, o)
		}
	}
}

func TestTensorLayoutsAndNormalisation(t *testing.T) {
	m := testImage(24, 24, 4)
	d := &Decoded{Image: m, Orientation: 1}
	nchw := DefaultSpec(8)
	nhwc := nchw
	nhwc.Layout = NHWC
	c := Fit(d, 8, nchw.Background)
	a := make([]float32, nchw.TensorLen())
	b := make([]float32, nhwc.TensorLen())
	if err := nchw.Tensor(c, a); err != nil {
		t.Fatal(err)
	}
	if err := nhwc.Tensor(c, b); err != nil {
		t.Fatal(err)
	}
	for y := range 8 {
		for x := range 8 {
			for ch := range 3 {
				va, vb := a[ch*64+y*8+x], b[(y*8+x)*3+ch]
				if va != vb {
					t.Fatalf("(%d,%d,%d): NCHW %v != NHWC %v", x, y, ch, va, vb)
				}
				want := (float32(c.Pix[c.PixOffset(x, y)+ch])/255 - 0.5) / 0.5
				if math.Abs(float64(va-want)) > 1e-6 {
					t.Fatalf("(%d,%d,%d) = %v, want %v", x, y, ch, va, want)
				}
			}
		}
	}
	if err := nchw.Tensor(c, a[:10]); err == nil {
		t.Error("short dst accepted")
	}
}

func TestSpecValidate(t *testing.T) {
	good := DefaultSpec(32)
	if err := good.Validate(); err != nil {
		t.Fatalf("default spec: %v", err)
	}
	bad := []func(*Spec){
		func(s *Spec) { s.Size = 0 },
		func(s *Spec) { s.Size = MaxSize + 1 },
		func(s *Spec) { s.Layout = "CHW" },
		func(s *Spec) { s.Std[1] = 0 },
		func(s *Spec) { s.Std[2] = float32(math.NaN()) },
		func(s *Spec) { s.Resize = "nearest" },
	}
	for i, mutate := range bad {
		s := good
		mutate(&s)
		if err := s.Validate(); err == nil {
			t.Errorf("case %d: %+v validated", i, s)
		}
	}
}

func FuzzProcess(f *testing.F) {
	f.Add(encodeJPEG(f, testImage(16, 12, 5), 80))
	f.Add(withOrientation(encodeJPEG(f, testImage(9, 9, 6), 80), 6, true))
	f.Add(encodePNG(f, testImage(7, 13, 7)))
	f.Add(hostilePNG(20000, 20000))
	spec := DefaultSpec(8)
	dst := make([]float32, spec.TensorLen())
	f.Fuzz(func(t *testing.T, b []byte) {
		err := spec.Process(b, Limits{MaxPixels: 1 << 20}, dst)
		var pe *Error
		if err != nil && !errors.As(err, &pe) {
			t.Fatalf("error %v is not a *Error", err)
		}
	})
}

// The box pre-reduction must not change the picture, only the cost: on a
// smooth image it agrees closely with a single Catmull-Rom pass, for every
// source type it has a path for.
func TestReduceMatchesDirectResize(t *testing.T) {
	rgba := testImage(640, 480, 11)
	ycc, err := jpeg.Decode(bytes.NewReader(encodeJPEG(t, rgba, 100)))
	if err != nil {
		t.Fatal(err)
	}
	nrgba := image.NewNRGBA(rgba.Bounds())
	copy(nrgba.Pix, rgba.Pix)
	for name, src := range map[string]image.Image{"rgba": rgba, "ycbcr": ycc, "nrgba": nrgba} {
		t.Run(name, func(t *testing.T) {
			got := Fit(&Decoded{Image: src, Orientation: 1}, 32, [3]uint8{255, 255, 255})
			want := image.NewRGBA(got.Bounds())
			draw.Draw(want, want.Bounds(), image.White, image.Point{}, draw.Src)
			xdraw.CatmullRom.Scale(want, image.Rect(0, 4, 32, 28), src, src.Bounds(), xdraw.Over, nil)
			var sum, n float64
			for i := range got.Pix {
				sum += math.Abs(float64(got.Pix[i]) - float64(want.Pix[i]))
				n++
			}
			if mean := sum / n; mean > 3 {
				t.Errorf("mean absolute difference %.2f levels, want <= 3", mean)
			}
		})
	}
}

func TestReduceCompositesTransparentSources(t *testing.T) {
	src := image.NewNRGBA(image.Rect(0, 0, 300, 300)) // transparent, takes the generic path
	c := Fit(&Decoded{Image: src, Orientation: 1}, 16, [3]uint8{1, 2, 3})
	if got := c.RGBAAt(8, 8); got != (color.RGBA{1, 2, 3, 255}) {
		t.Errorf("pixel = %v, want the background", got)
	}
}
