//go:build ignore

// gen writes the JPEG fixtures image/jpeg cannot encode, through
// libjpeg-turbo's own encoder: a progressive JPEG and a CMYK (YCCK, Adobe
// marker) JPEG of the same 96x64 picture, whose RGB original is
// fixture.png. Run from this directory: go run gen.go
package main

/*
#cgo LDFLAGS: -l:libturbojpeg.a
#include <turbojpeg.h>
*/
import "C"

import (
	"bytes"
	"fmt"
	"image"
	"image/png"
	"log"
	"math"
	"os"
	"unsafe"
)

func main() {
	const w, h = 96, 64
	m := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			i := m.PixOffset(x, y)
			d := math.Hypot(float64(x-w/2), float64(y-h/2))
			r, g, b := uint8(40+2*x), uint8(30+3*y), uint8(200-x)
			if d < 20 {
				r, g, b = 220, uint8(60+x), 40
			}
			m.Pix[i], m.Pix[i+1], m.Pix[i+2], m.Pix[i+3] = r, g, b, 255
		}
	}
	var pb bytes.Buffer
	if err := png.Encode(&pb, m); err != nil {
		log.Fatal(err)
	}
	write("fixture.png", pb.Bytes())
	write("progressive.jpg", compress(m.Pix, w, h, C.TJPF_RGBA, C.TJSAMP_420, C.TJFLAG_PROGRESSIVE))
	// CMYK as Adobe applications store it, inverted: 255 is no ink.
	cmyk := make([]byte, 4*w*h)
	for i := 0; i < w*h; i++ {
		r, g, b := float64(m.Pix[4*i]), float64(m.Pix[4*i+1]), float64(m.Pix[4*i+2])
		k := 255 - max(r, g, b)
		ink := func(v float64) byte {
			if k == 255 {
				return 255
			}
			return byte(255 - math.Round((255-v-k)/(255-k)*255))
		}
		cmyk[4*i], cmyk[4*i+1], cmyk[4*i+2], cmyk[4*i+3] = ink(r), ink(g), ink(b), byte(255-k)
	}
	write("cmyk.jpg", compress(cmyk, w, h, C.TJPF_CMYK, C.TJSAMP_444, 0))
}

func compress(pix []byte, w, h int, pf, subsamp, flags C.int) []byte {
	t := C.tjInitCompress()
	defer C.tjDestroy(t)
	var out *C.uchar
	var n C.ulong
	if C.tjCompress2(t, (*C.uchar)(unsafe.Pointer(&pix[0])), C.int(w), 0, C.int(h), pf, &out, &n, subsamp, 95, flags) != 0 {
		log.Fatal(C.GoString(C.tjGetErrorStr2(t)))
	}
	defer C.tjFree(out)
	return C.GoBytes(unsafe.Pointer(out), C.int(n))
}

func write(name string, b []byte) {
	if err := os.WriteFile(name, b, 0o644); err != nil {
		log.Fatal(err)
	}
	fmt.Println(name, len(b), "bytes")
}
