// Package preprocess is Orchard's single image path: the trainer and every
// prediction function turn bytes into model input through this package and no
// other, so training and serving cannot drift apart (no train/serve skew).
//
// The path is: sniff the format from the bytes, read only the header
// and refuse oversized or degenerate images before any pixel
// buffer is allocated, decode (JPEGs through libjpeg-turbo, scaled in the
// DCT domain to what the output needs), box-reduce large sources plane by
// plane, resize with a fixed-point Catmull-Rom onto a square canvas of the
// background colour, apply the JPEG EXIF orientation, and write float32
// values in the layout and normalisation that the model metadata declares.
// DecodeCost tells a server, from the header alone, how much memory a
// decode will take, so it can admit decodes against a budget.
//
// Every failure is a *Error whose Kind is one of ErrUnsupportedFormat,
// ErrTooLarge or ErrCorrupt, so callers can map it to an HTTP 4xx answer or to
// "acknowledge the event and record why". No input makes this package panic.
package preprocess

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"

	"golang.org/x/image/webp"
)

// Format is an image container format recognised from its leading bytes.
type Format string

// Supported formats.
const (
	JPEG Format = "jpeg"
	PNG  Format = "png"
	WebP Format = "webp"
)

// ContentType returns the MIME type of the format.
func (f Format) ContentType() string { return "image/" + string(f) }

// Error kinds. Test with errors.Is.
var (
	ErrUnsupportedFormat = errors.New("unsupported image format")
	ErrTooLarge          = errors.New("image too large")
	ErrCorrupt           = errors.New("corrupt image")
)

// Error describes why an image was refused.
type Error struct {
	Kind   error  // ErrUnsupportedFormat, ErrTooLarge or ErrCorrupt
	Detail string // human-readable reason, safe to return to a client
	Err    error  // underlying decoder error, if any
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%v: %s: %v", e.Kind, e.Detail, e.Err)
	}
	return fmt.Sprintf("%v: %s", e.Kind, e.Detail)
}

// Is reports whether target is the kind of this error.
func (e *Error) Is(target error) bool { return target == e.Kind }

// Unwrap returns the decoder error.
func (e *Error) Unwrap() error { return e.Err }

func newError(kind error, err error, format string, args ...any) *Error {
	return &Error{Kind: kind, Detail: fmt.Sprintf(format, args...), Err: err}
}

// Default limits. 32 MiB is the Cloud Run request-body limit; 40 MP covers
// every phone camera while keeping a decoded RGBA image under 160 MB.
const (
	DefaultMaxBytes  = 32 << 20
	DefaultMaxPixels = 40_000_000
)

// Limits bound the work an untrusted image may cause.
type Limits struct {
	MaxBytes  int64 // encoded size; 0 means DefaultMaxBytes
	MaxPixels int64 // width*height; 0 means DefaultMaxPixels
}

func (l Limits) maxBytes() int64 {
	if l.MaxBytes > 0 {
		return l.MaxBytes
	}
	return DefaultMaxBytes
}

func (l Limits) maxPixels() int64 {
	if l.MaxPixels > 0 {
		return l.MaxPixels
	}
	return DefaultMaxPixels
}

// Sniff recognises the image format from the leading bytes, ignoring any
// declared content type (clients and object metadata lie).
func Sniff(b []byte) (Format, error) {
	switch {
	case len(b) >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF:
		return JPEG, nil
	case bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")):
		return PNG, nil
	case len(b) >= 12 && string(b[0:4]) == "RIFF" && string(b[8:12]) == "WEBP":
		return WebP, nil
	case bytes.HasPrefix(b, []byte("GIF8")):
		return "", newError(ErrUnsupportedFormat, nil, "GIF is not supported (use JPEG, PNG or WebP)")
	case len(b) == 0:
		return "", newError(ErrCorrupt, nil, "empty input")
	}
	return "", newError(ErrUnsupportedFormat, nil, "not a JPEG, PNG or WebP image")
}

// Decoded is a decoded image with what was learnt from its container.
type Decoded struct {
	Image       image.Image
	Format      Format
	Orientation int // EXIF orientation 1..8 (1 when absent)
	// Stored is the image's size as stored in the file. It differs from
	// Image's size when the JPEG was scaled on load (DecodeFor); Fit takes
	// the aspect ratio from it. Zero means Image's size.
	Stored image.Point
}

// stored returns the stored dimensions.
func (d *Decoded) stored() (int, int) {
	if d.Stored.X > 0 && d.Stored.Y > 0 {
		return d.Stored.X, d.Stored.Y
	}
	b := d.Image.Bounds()
	return b.Dx(), b.Dy()
}

// header is what the format's header says, read before any pixel buffer
// exists.
type header struct {
	format Format
	cfg    image.Config
	jpeg   jpegHeader // JPEG only
	b      []byte
}

func readHeader(b []byte, lim Limits) (header, error) {
	h := header{b: b}
	if int64(len(b)) > lim.maxBytes() {
		return h, newError(ErrTooLarge, nil, "%d bytes exceeds the %d-byte limit", len(b), lim.maxBytes())
	}
	f, err := Sniff(b)
	if err != nil {
		return h, err
	}
	h.format = f
	err = guard(func() error {
		var err error
		switch f {
		case JPEG:
			if h.jpeg, err = turboHeader(b); err == nil {
				h.cfg = image.Config{Width: h.jpeg.w, Height: h.jpeg.h, ColorModel: color.RGBAModel}
				if h.jpeg.gray() {
					h.cfg.ColorModel = color.GrayModel
				}
			}
		case PNG:
			h.cfg, err = png.DecodeConfig(bytes.NewReader(b))
		case WebP:
			h.cfg, err = webp.DecodeConfig(bytes.NewReader(b))
		}
		return err
	})
	var refused *Error // already classified (a cgo-free build's JPEG)
	if errors.As(err, &refused) {
		return h, refused
	}
	if err != nil {
		return h, newError(ErrCorrupt, err, "reading %s header", f)
	}
	if h.cfg.Width <= 0 || h.cfg.Height <= 0 {
		return h, newError(ErrCorrupt, nil, "%s declares %dx%d pixels", f, h.cfg.Width, h.cfg.Height)
	}
	// Compare in int64 on both sides: Width*Height can overflow int on 32-bit.
	if px := int64(h.cfg.Width) * int64(h.cfg.Height); px > lim.maxPixels() {
		return h, newError(ErrTooLarge, nil, "%dx%d is %d pixels, over the %d-pixel limit", h.cfg.Width, h.cfg.Height, px, lim.maxPixels())
	}
	return h, nil
}

// Decode checks the header against the limits and only then decodes the
// pixels at full size. JPEG EXIF orientation is read but not applied; Fit
// applies it to the small output rather than rotating the large source.
func Decode(b []byte, lim Limits) (*Decoded, error) {
	return DecodeFor(b, lim, 0)
}

// DecodeFor is Decode for an output of size x size pixels: a JPEG is
// decoded in the DCT domain at the smallest scale that still leaves the
// resampler resampleMargin times that size, which skips most of the
// inverse DCT and colour conversion for photos. size 0 decodes at full
// size.
func DecodeFor(b []byte, lim Limits, size int) (*Decoded, error) {
	h, err := readHeader(b, lim)
	if err != nil {
		return nil, err
	}
	return h.decode(size)
}

func (h header) decode(size int) (*Decoded, error) {
	f, cfg, b := h.format, h.cfg, h.b
	want := image.Pt(cfg.Width, cfg.Height)
	var img image.Image
	err := guard(func() error {
		var err error
		switch f {
		case JPEG:
			num := h.scale(size)
			want = image.Pt(scaled(cfg.Width, num), scaled(cfg.Height, num))
			img, err = decodeJPEG(b, h.jpeg, num)
		case PNG:
			img, err = png.Decode(bytes.NewReader(b))
		case WebP:
			img, err = webp.Decode(bytes.NewReader(b))
		}
		return err
	})
	if err != nil {
		return nil, newError(ErrCorrupt, err, "decoding %s", f)
	}
	if bd := img.Bounds(); bd.Dx() != want.X || bd.Dy() != want.Y {
		return nil, newError(ErrCorrupt, nil, "%s header says %dx%d but pixels are %dx%d", f, want.X, want.Y, bd.Dx(), bd.Dy())
	}
	d := &Decoded{Image: img, Format: f, Orientation: 1, Stored: image.Pt(cfg.Width, cfg.Height)}
	if f == JPEG {
		d.Orientation = jpegOrientation(b)
	}
	return d, nil
}

// scale is the JPEG scale-on-load, in eighths, for an output of size.
func (h header) scale(size int) int {
	if h.format != JPEG || size <= 0 {
		return 8
	}
	return jpegScale(h.cfg.Width, h.cfg.Height, size)
}

// guard turns a decoder panic into an error: the standard decoders are
// well fuzzed, but a serving process must survive a decoder bug.
func guard(fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("decoder panic: %v", r)
		}
	}()
	return fn()
}
