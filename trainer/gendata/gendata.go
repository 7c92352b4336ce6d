// Package gendata writes a small synthetic folder-per-class dataset: one
// coloured shape per image on a white background, with random size,
// position, rotation, colour and noise, so demos and tests run anywhere and
// a small CNN learns it to high accuracy in a few epochs. Class folder names
// contain spaces on purpose ("red circle"), as real datasets do.
package gendata

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
)

// Options configure Generate.
type Options struct {
	Classes  int   // 2..len(Shapes)*len(Colours); default 4
	PerClass int   // images per class; default 40
	Size     int   // image side in pixels; default 64
	Seed     int64 // default 1
}

type shapeFn func(x, y float64) bool // point in the unit shape centred at 0

// Shapes are the available shapes, in class order.
var Shapes = []struct {
	Name   string
	Inside shapeFn
}{
	{"circle", func(x, y float64) bool { return x*x+y*y <= 1 }},
	{"square", func(x, y float64) bool { return math.Abs(x) <= 0.8 && math.Abs(y) <= 0.8 }},
	{"triangle", func(x, y float64) bool { return y <= 0.8 && y >= -0.9+1.7*math.Abs(x)/0.95 }},
	{"ring", func(x, y float64) bool { r := x*x + y*y; return r <= 1 && r >= 0.35 }},
	{"cross", func(x, y float64) bool {
		return (math.Abs(x) <= 0.3 && math.Abs(y) <= 0.95) || (math.Abs(y) <= 0.3 && math.Abs(x) <= 0.95)
	}},
	{"diamond", func(x, y float64) bool { return math.Abs(x)+math.Abs(y) <= 1 }},
	{"bar", func(x, y float64) bool { return math.Abs(x) <= 0.95 && math.Abs(y) <= 0.35 }},
	{"star", func(x, y float64) bool {
		r := math.Hypot(x, y)
		a := math.Atan2(y, x)
		return r <= 0.45+0.5*math.Pow(math.Abs(math.Cos(2.5*a)), 3)
	}},
}

// Colours are the available colours, in class order.
var Colours = []struct {
	Name string
	RGB  [3]float64
}{
	{"red", [3]float64{210, 40, 40}},
	{"green", [3]float64{40, 160, 60}},
	{"blue", [3]float64{40, 70, 200}},
	{"orange", [3]float64{240, 140, 20}},
	{"purple", [3]float64{130, 50, 160}},
	{"teal", [3]float64{20, 150, 150}},
	{"brown", [3]float64{120, 75, 35}},
	{"grey", [3]float64{90, 90, 90}},
}

// ClassName returns the folder name of class i: shape and colour both
// change from class to class.
func ClassName(i int) string {
	s := Shapes[i%len(Shapes)]
	c := Colours[(i+i/len(Shapes))%len(Colours)]
	return c.Name + " " + s.Name
}

// Generate writes dir/<class>/<nnn>.jpg|png and returns the class names.
func Generate(dir string, opt Options) ([]string, error) {
	if opt.Classes == 0 {
		opt.Classes = 4
	}
	if opt.PerClass == 0 {
		opt.PerClass = 40
	}
	if opt.Size == 0 {
		opt.Size = 64
	}
	if opt.Seed == 0 {
		opt.Seed = 1
	}
	if opt.Classes < 2 || opt.Classes > len(Shapes)*len(Colours) {
		return nil, fmt.Errorf("gendata: classes %d outside 2..%d", opt.Classes, len(Shapes)*len(Colours))
	}
	if opt.PerClass < 1 || opt.Size < 8 || opt.Size > 1024 {
		return nil, fmt.Errorf("gendata: per-class %d or size %d out of range", opt.PerClass, opt.Size)
	}
	names := make([]string, opt.Classes)
	for c := range opt.Classes {
		names[c] = ClassName(c)
		if err := os.MkdirAll(filepath.Join(dir, names[c]), 0o755); err != nil {
			return nil, err
		}
		for i := range opt.PerClass {
			r := rand.New(rand.NewPCG(uint64(opt.Seed), uint64(c)<<32|uint64(i)))
			img := Draw(c, opt.Size, r)
			var buf bytes.Buffer
			ext := ".jpg"
			var err error
			if i%5 == 4 {
				ext = ".png"
				err = png.Encode(&buf, img)
			} else {
				err = jpeg.Encode(&buf, img, &jpeg.Options{Quality: 90})
			}
			if err != nil {
				return nil, err
			}
			if err := os.WriteFile(filepath.Join(dir, names[c], fmt.Sprintf("%03d%s", i, ext)), buf.Bytes(), 0o644); err != nil {
				return nil, err
			}
		}
	}
	return names, nil
}

// Draw renders one random image of class c.
func Draw(c, size int, r *rand.Rand) *image.RGBA {
	shape := Shapes[c%len(Shapes)].Inside
	base := Colours[(c+c/len(Shapes))%len(Colours)].RGB
	var col [3]float64
	for k := range 3 {
		col[k] = max(0, min(255, base[k]+r.NormFloat64()*12))
	}
	n := float64(size)
	radius := n * (0.22 + 0.14*r.Float64())
	cx := n/2 + (r.Float64()*2-1)*n*0.1
	cy := n/2 + (r.Float64()*2-1)*n*0.1
	theta := r.Float64() * 2 * math.Pi
	cos, sin := math.Cos(theta), math.Sin(theta)
	img := image.NewRGBA(image.Rect(0, 0, size, size))
	const ss = 3 // supersampling per axis
	for y := range size {
		for x := range size {
			cover := 0
			for sy := range ss {
				for sx := range ss {
					px := (float64(x) + (float64(sx)+0.5)/ss - cx) / radius
					py := (float64(y) + (float64(sy)+0.5)/ss - cy) / radius
					u, v := cos*px+sin*py, -sin*px+cos*py
					if shape(u, v) {
						cover++
					}
				}
			}
			a := float64(cover) / (ss * ss)
			var p [3]uint8
			for k := range 3 {
				v := 255*(1-a) + col[k]*a + r.NormFloat64()*3
				p[k] = uint8(max(0, min(255, math.Round(v))))
			}
			img.SetRGBA(x, y, color.RGBA{p[0], p[1], p[2], 255})
		}
	}
	return img
}
