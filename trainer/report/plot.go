package report

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"math"
	"strings"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// Series is one line of a plot.
type Series struct {
	Name  string
	Color color.RGBA
	X, Y  []float64
}

var (
	white     = color.RGBA{255, 255, 255, 255}
	black     = color.RGBA{0, 0, 0, 255}
	gridColor = color.RGBA{225, 225, 225, 255}
	// Blue and orange (colour-blind safe pair), then green.
	Blue   = color.RGBA{31, 119, 180, 255}
	Orange = color.RGBA{255, 127, 14, 255}
	Green  = color.RGBA{44, 160, 44, 255}
)

func text(img draw.Image, x, y int, s string, c color.Color) {
	d := &font.Drawer{Dst: img, Src: image.NewUniform(c), Face: basicfont.Face7x13,
		Dot: fixed.P(x, y)}
	d.DrawString(s)
}

func textWidth(s string) int { return 7 * len(s) }

func line(img *image.RGBA, x0, y0, x1, y1 int, c color.RGBA, thick int) {
	dx, dy := abs(x1-x0), -abs(y1-y0)
	sx, sy := sign(x1-x0), sign(y1-y0)
	e := dx + dy
	for {
		for ox := -thick / 2; ox <= thick/2; ox++ {
			for oy := -thick / 2; oy <= thick/2; oy++ {
				img.SetRGBA(x0+ox, y0+oy, c)
			}
		}
		if x0 == x1 && y0 == y1 {
			return
		}
		e2 := 2 * e
		if e2 >= dy {
			e += dy
			x0 += sx
		}
		if e2 <= dx {
			e += dx
			y0 += sy
		}
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

func sign(v int) int {
	switch {
	case v < 0:
		return -1
	case v > 0:
		return 1
	}
	return 0
}

// niceTicks returns about n round tick values covering [lo, hi].
func niceTicks(lo, hi float64, n int) []float64 {
	if hi <= lo {
		hi = lo + 1
	}
	raw := (hi - lo) / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	var ticks []float64
	for v := math.Ceil(lo/step) * step; v <= hi+step*1e-9; v += step {
		ticks = append(ticks, v)
	}
	return ticks
}

// LinePlot draws series on axes with ticks, a title and a legend.
func LinePlot(title, xLabel string, series []Series, w, h int, logY bool) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.Draw(img, img.Bounds(), image.NewUniform(white), image.Point{}, draw.Src)
	left, right, top, bottom := 64, 16, 28, 40
	pw, ph := w-left-right, h-top-bottom
	tf := func(v float64) float64 {
		if logY {
			return math.Log10(math.Max(v, 1e-12))
		}
		return v
	}
	xmin, xmax, ymin, ymax := math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
	for _, s := range series {
		for i := range s.X {
			if math.IsNaN(s.Y[i]) || math.IsInf(s.Y[i], 0) {
				continue
			}
			xmin, xmax = math.Min(xmin, s.X[i]), math.Max(xmax, s.X[i])
			ymin, ymax = math.Min(ymin, tf(s.Y[i])), math.Max(ymax, tf(s.Y[i]))
		}
	}
	if math.IsInf(xmin, 0) {
		xmin, xmax, ymin, ymax = 0, 1, 0, 1
	}
	if xmax == xmin {
		xmin, xmax = xmin-1, xmax+1
	}
	if ymax == ymin {
		ymin, ymax = ymin-0.5, ymax+0.5
	}
	pad := (ymax - ymin) * 0.05
	ymin, ymax = ymin-pad, ymax+pad
	px := func(x float64) int { return left + int(math.Round((x-xmin)/(xmax-xmin)*float64(pw))) }
	py := func(y float64) int { return top + ph - int(math.Round((tf(y)-ymin)/(ymax-ymin)*float64(ph))) }

	for _, t := range niceTicks(ymin, ymax, 5) {
		y := top + ph - int(math.Round((t-ymin)/(ymax-ymin)*float64(ph)))
		line(img, left, y, left+pw, y, gridColor, 1)
		label := fmt.Sprintf("%.3g", t)
		if logY {
			label = fmt.Sprintf("%.2g", math.Pow(10, t))
		}
		text(img, left-6-textWidth(label), y+4, label, black)
	}
	// The x axis is epochs: whole-number ticks only.
	for _, t := range niceTicks(xmin, xmax, 8) {
		if t != math.Trunc(t) {
			continue
		}
		x := px(t)
		line(img, x, top, x, top+ph, gridColor, 1)
		label := fmt.Sprintf("%g", t)
		text(img, x-textWidth(label)/2, top+ph+16, label, black)
	}
	line(img, left, top, left, top+ph, black, 1)
	line(img, left, top+ph, left+pw, top+ph, black, 1)
	text(img, left+pw/2-textWidth(xLabel)/2, h-6, xLabel, black)
	text(img, w/2-textWidth(title)/2, 18, title, black)

	lx := left + 10
	for _, s := range series {
		for i := 1; i < len(s.X); i++ {
			line(img, px(s.X[i-1]), py(s.Y[i-1]), px(s.X[i]), py(s.Y[i]), s.Color, 2)
		}
		// Markers on sparse series (per epoch), none on dense step samples.
		for i := range s.X {
			if len(s.X) > 30 {
				break
			}
			draw.Draw(img, image.Rect(px(s.X[i])-2, py(s.Y[i])-2, px(s.X[i])+3, py(s.Y[i])+3), image.NewUniform(s.Color), image.Point{}, draw.Src)
		}
		line(img, lx, top+12, lx+18, top+12, s.Color, 3)
		text(img, lx+22, top+16, s.Name, black)
		lx += 40 + textWidth(s.Name)
	}
	return img
}

// ConfusionPlot draws a confusion matrix (rows: true class, columns:
// predicted) as a heat map normalised per row, with counts in the cells and
// class names on both axes (the columns' written upwards).
func ConfusionPlot(m [][]int, labels []string) *image.RGBA {
	k := len(m)
	name := func(i int) string {
		l := fmt.Sprint(i)
		if i < len(labels) {
			l = labels[i]
		}
		if len(l) > maxLabel {
			l = l[:maxLabel-1] + "~"
		}
		return l
	}
	longest := 1
	for i := range k {
		longest = max(longest, len(name(i)))
	}
	cell := max(28, min(56, 560/max(1, k)))
	left, top := 16+textWidth(strings.Repeat("m", longest)), 40+textWidth(strings.Repeat("m", longest))
	const title = "confusion matrix (rows: true, columns: predicted)"
	w, h := max(left+k*cell+16, textWidth(title)+16), top+k*cell+24
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.Draw(img, img.Bounds(), image.NewUniform(white), image.Point{}, draw.Src)
	text(img, 8, 16, title, black)
	for i := range k {
		total := 0
		for _, v := range m[i] {
			total += v
		}
		for j := range k {
			f := 0.0
			if total > 0 {
				f = float64(m[i][j]) / float64(total)
			}
			c := color.RGBA{uint8(255 - 225*f), uint8(255 - 170*f), uint8(255 - 75*f), 255}
			if i != j && m[i][j] > 0 {
				c = color.RGBA{255, uint8(230 - 150*f), uint8(200 - 170*f), 255}
			}
			r := image.Rect(left+j*cell+1, top+i*cell+1, left+(j+1)*cell, top+(i+1)*cell)
			draw.Draw(img, r, image.NewUniform(c), image.Point{}, draw.Src)
			s := fmt.Sprint(m[i][j])
			tc := black
			if f > 0.6 && i == j {
				tc = white
			}
			text(img, r.Min.X+cell/2-textWidth(s)/2, r.Min.Y+cell/2+4, s, tc)
		}
		lbl := name(i)
		text(img, left-8-textWidth(lbl), top+i*cell+cell/2+4, lbl, black)
		verticalText(img, left+i*cell+cell/2-6, top-6, lbl)
	}
	return img
}

// maxLabel caps the class names drawn on the confusion matrix.
const maxLabel = 24

// verticalText draws s reading upwards, ending at (x, bottom), as column
// labels are: rendered horizontally, then turned a quarter to the left.
func verticalText(img *image.RGBA, x, bottom int, s string) {
	tw := textWidth(s)
	tmp := image.NewRGBA(image.Rect(0, 0, tw, 13))
	draw.Draw(tmp, tmp.Bounds(), image.NewUniform(white), image.Point{}, draw.Src)
	text(tmp, 0, 10, s, black)
	for ty := range 13 {
		for tx := range tw {
			// Turn left: (tx, ty) goes to (x+ty, bottom-tx).
			if c := tmp.RGBAAt(tx, ty); c != white {
				img.SetRGBA(x+ty, bottom-tx, c)
			}
		}
	}
}

// Upscale enlarges an image by an integer factor (nearest neighbour), for
// thumbnails of small model inputs.
func Upscale(src image.Image, f int) *image.RGBA {
	b := src.Bounds()
	out := image.NewRGBA(image.Rect(0, 0, b.Dx()*f, b.Dy()*f))
	for y := range out.Bounds().Dy() {
		for x := range out.Bounds().Dx() {
			out.Set(x, y, src.At(b.Min.X+x/f, b.Min.Y+y/f))
		}
	}
	return out
}
