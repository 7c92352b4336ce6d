//go:build cgo

package preprocess

// JPEG decoding through libjpeg-turbo's TurboJPEG API. TurboJPEG reports
// every failure as a return code (libjpeg's longjmp stays inside its own C
// frames), so no Go frame is ever jumped over. The library is linked
// statically on Linux (libturbojpeg.a from Debian's libturbojpeg0-dev), so
// the binaries need no extra shared library at run time.

/*
#cgo linux LDFLAGS: -l:libturbojpeg.a
#cgo !linux pkg-config: libturbojpeg
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

// Both helpers own their handle for the whole call and copy the error
// message out before destroying it, so Go sees plain values only.

static void orchard_tj_error(tjhandle h, char *msg, int n, int *code) {
	*code = tjGetErrorCode(h);
	strncpy(msg, tjGetErrorStr2(h), n - 1);
	msg[n - 1] = 0;
}

static int orchard_tj_header(const unsigned char *buf, unsigned long len,
		int *w, int *h, int *subsamp, int *cs, char *msg, int n, int *code) {
	tjhandle t = tjInitDecompress();
	if (t == NULL) {
		strncpy(msg, tjGetErrorStr2(NULL), n - 1);
		msg[n - 1] = 0;
		*code = TJERR_FATAL;
		return -1;
	}
	int r = tjDecompressHeader3(t, buf, len, w, h, subsamp, cs);
	if (r != 0) {
		orchard_tj_error(t, msg, n, code);
	}
	tjDestroy(t);
	return r;
}

static int orchard_tj_decode(const unsigned char *buf, unsigned long len,
		unsigned char *dst, int w, int pitch, int h, int pf, int flags,
		char *msg, int n, int *code) {
	tjhandle t = tjInitDecompress();
	if (t == NULL) {
		strncpy(msg, tjGetErrorStr2(NULL), n - 1);
		msg[n - 1] = 0;
		*code = TJERR_FATAL;
		return -1;
	}
	int r = tjDecompress2(t, buf, len, dst, w, pitch, h, pf, flags);
	if (r != 0) {
		orchard_tj_error(t, msg, n, code);
	}
	tjDestroy(t);
	return r;
}
*/
import "C"

import (
	"errors"
	"fmt"
	"image"
	"unsafe"
)

// jpegHeader is what TurboJPEG reads from a JPEG's markers.
type jpegHeader struct {
	w, h       int
	subsamp    C.int // TJSAMP_*
	colorspace C.int // TJCS_*
}

const tjErrLen = 200

// tjError turns a TurboJPEG failure into an error. Warnings (a truncated
// file, corrupt entropy data) count as failures too: the image/jpeg decoder
// this replaced refused those files, and a half-grey photo is not worth a
// confident prediction.
func tjError(msg []C.char, code C.int) error {
	s := C.GoString(&msg[0])
	if code == C.TJERR_WARNING {
		return fmt.Errorf("libjpeg-turbo warning: %s", s)
	}
	return errors.New("libjpeg-turbo: " + s)
}

// turboHeader reads a JPEG's dimensions, subsampling and colour space.
func turboHeader(b []byte) (jpegHeader, error) {
	if len(b) == 0 {
		return jpegHeader{}, errors.New("empty input")
	}
	var (
		w, h, sub, cs, code C.int
		msg                 [tjErrLen]C.char
	)
	r := C.orchard_tj_header((*C.uchar)(unsafe.Pointer(&b[0])), C.ulong(len(b)), &w, &h, &sub, &cs, &msg[0], tjErrLen, &code)
	if r != 0 {
		return jpegHeader{}, tjError(msg[:], code)
	}
	return jpegHeader{w: int(w), h: int(h), subsamp: sub, colorspace: cs}, nil
}

// gray reports whether TurboJPEG decodes the JPEG to one channel.
func (h jpegHeader) gray() bool { return h.colorspace == C.TJCS_GRAY }

// cmyk reports whether the JPEG has four components (CMYK or YCCK).
func (h jpegHeader) cmyk() bool { return h.colorspace == C.TJCS_CMYK || h.colorspace == C.TJCS_YCCK }

// samplesPerPixel is the number of stored samples per pixel after chroma
// subsampling: the size of libjpeg's whole-image coefficient buffer (two
// bytes a sample) that progressive JPEGs need.
func (h jpegHeader) samplesPerPixel() float64 {
	switch {
	case h.gray():
		return 1
	case h.cmyk():
		return 4
	}
	switch h.subsamp {
	case C.TJSAMP_420, C.TJSAMP_411:
		return 1.5
	case C.TJSAMP_422, C.TJSAMP_440:
		return 2
	}
	return 3
}

// decodeJPEG decodes at num/8 scale into *image.RGBA (opaque), or
// *image.Gray for greyscale JPEGs. CMYK and YCCK JPEGs are converted to RGB
// the way image/jpeg and browsers treat Adobe's inverted CMYK.
func decodeJPEG(b []byte, h jpegHeader, num int) (image.Image, error) {
	w, ht := scaled(h.w, num), scaled(h.h, num)
	// TJFLAG_LIMITSCANS refuses progressive JPEGs with an absurd number of
	// scans, which would otherwise cost unbounded CPU.
	flags := C.int(C.TJFLAG_LIMITSCANS | C.TJFLAG_ACCURATEDCT)
	var img image.Image
	var pix []byte
	var pitch int
	var pf C.int
	switch {
	case h.gray():
		g := image.NewGray(image.Rect(0, 0, w, ht))
		img, pix, pitch, pf = g, g.Pix, g.Stride, C.TJPF_GRAY
	default:
		m := image.NewRGBA(image.Rect(0, 0, w, ht))
		img, pix, pitch, pf = m, m.Pix, m.Stride, C.TJPF_RGBA
		if h.cmyk() {
			pf = C.TJPF_CMYK
		}
	}
	var (
		code C.int
		msg  [tjErrLen]C.char
	)
	r := C.orchard_tj_decode((*C.uchar)(unsafe.Pointer(&b[0])), C.ulong(len(b)), (*C.uchar)(unsafe.Pointer(&pix[0])),
		C.int(w), C.int(pitch), C.int(ht), pf, flags, &msg[0], tjErrLen, &code)
	if r != 0 {
		return nil, tjError(msg[:], code)
	}
	if pf == C.TJPF_CMYK {
		cmykToRGBA(pix)
	}
	return img, nil
}

// cmykToRGBA converts, in place, the CMYK samples libjpeg outputs (stored
// inverted, as Adobe applications write them: 255 is no ink) to opaque RGBA.
func cmykToRGBA(pix []byte) {
	for i := 0; i+4 <= len(pix); i += 4 {
		p := pix[i : i+4 : i+4]
		k := uint32(p[3])
		p[0] = uint8((uint32(p[0])*k + 127) / 255)
		p[1] = uint8((uint32(p[1])*k + 127) / 255)
		p[2] = uint8((uint32(p[2])*k + 127) / 255)
		p[3] = 255
	}
}
