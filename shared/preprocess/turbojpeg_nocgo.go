//go:build !cgo

package preprocess

import "image"

// Without cgo there is no libjpeg-turbo, and JPEGs are refused rather
// than decoded another way: a decoder that differs from serving's by a
// few levels per pixel would skew whatever this binary trains or
// evaluates against what the functions serve.

// errNoTurboJPEG is every JPEG's error in a cgo-free build.
var errNoTurboJPEG = newError(ErrUnsupportedFormat, nil, "JPEG decoding needs the cgo build (libjpeg-turbo)")

// jpegHeader is empty: no JPEG header is ever read.
type jpegHeader struct{ w, h int }

func turboHeader([]byte) (jpegHeader, error) { return jpegHeader{}, errNoTurboJPEG }

func decodeJPEG([]byte, jpegHeader, int) (image.Image, error) { return nil, errNoTurboJPEG }

func (jpegHeader) gray() bool               { return false }
func (jpegHeader) samplesPerPixel() float64 { return 3 }
