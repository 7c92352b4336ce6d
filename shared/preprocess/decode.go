// Package preprocess is Orchard's single image path: the trainer and every
// prediction function turn bytes into model input through this package and no
// other, so training and serving cannot drift apart (no train/serve skew).
//
// The path is: sniff the format from the bytes, read only the header
// (DecodeConfig) and refuse oversized or degenerate images before any pixel
// buffer is allocated, decode, then fit the image onto a square canvas of the
// background colour, resize it to the model's input size, apply the JPEG EXIF
// orientation, and write float32 values in the layout and normalisation that
// the model metadata declares.
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
	"image/jpeg"
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
}

// DecodeConfig sniffs the format and reads only the header, refusing
// images over the limits or with non-positive dimensions. It allocates no
// pixel memory, so it is safe on hostile input.
func DecodeConfig(b []byte, lim Limits) (Format, image.Config, error) {
	if int64(len(b)) > lim.maxBytes() {
		return "", image.Config{}, newError(ErrTooLarge, nil, "%d bytes exceeds the %d-byte limit", len(b), lim.maxBytes())
	}
	f, err := Sniff(b)
	if err != nil {
		return "", image.Config{}, err
	}
	var cfg image.Config
	err = guard(func() error {
		var err error
		switch f {
		case JPEG:
			cfg, err = jpeg.DecodeConfig(bytes.NewReader(b))
		case PNG:
			cfg, err = png.DecodeConfig(bytes.NewReader(b))
		case WebP:
			cfg, err = webp.DecodeConfig(bytes.NewReader(b))
		}
		return err
	})
	if err != nil {
		return f, cfg, newError(ErrCorrupt, err, "reading %s header", f)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return f, cfg, newError(ErrCorrupt, nil, "%s declares %dx%d pixels", f, cfg.Width, cfg.Height)
	}
	// Compare in int64 on both sides: Width*Height can overflow int on 32-bit.
	if px := int64(cfg.Width) * int64(cfg.Height); px > lim.maxPixels() {
		return f, cfg, newError(ErrTooLarge, nil, "%dx%d is %d pixels, over the %d-pixel limit", cfg.Width, cfg.Height, px, lim.maxPixels())
	}
	return f, cfg, nil
}

// Decode checks the header against the limits and only then decodes the
// pixels. JPEG EXIF orientation is read but not applied; Fit applies it to
// the small output rather than rotating the large source.
func Decode(b []byte, lim Limits) (*Decoded, error) {
	f, cfg, err := DecodeConfig(b, lim)
	if err != nil {
		return nil, err
	}
	var img image.Image
	err = guard(func() error {
		var err error
		switch f {
		case JPEG:
			img, err = jpeg.Decode(bytes.NewReader(b))
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
	if bd := img.Bounds(); bd.Dx() != cfg.Width || bd.Dy() != cfg.Height {
		return nil, newError(ErrCorrupt, nil, "%s header says %dx%d but pixels are %dx%d", f, cfg.Width, cfg.Height, bd.Dx(), bd.Dy())
	}
	d := &Decoded{Image: img, Format: f, Orientation: 1}
	if f == JPEG {
		d.Orientation = jpegOrientation(b)
	}
	return d, nil
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
