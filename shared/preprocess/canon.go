package preprocess

import (
	"cmp"
	"image"
	"math"
	"slices"
)

// Canonical framing and exposure: optional spec fields that make the
// canvas depend less on how a photo was taken. Each is empty in old
// models, whose canvases stay bit for bit what they were.
const (
	// FramingObject crops to the object when the photo has a uniform
	// backdrop (see scene), and to the central square when it has none,
	// so a zoomed-out fruit and a wide shot both fill the canvas as the
	// training crops do.
	FramingObject = "object"
	// LevelsObject maps the object's luminance mean and spread to fixed
	// values (levelsMean, levelsStd), measured on the object rather than
	// the whole picture, so a bright backdrop does not decide the exposure.
	LevelsObject = "object"
	// BackdropRepaint paints a detected uniform backdrop in the spec's
	// Background, so a coloured table looks like the studio's white.
	BackdropRepaint = "repaint"
	// FramingSoft is FramingObject with the backdrop decision made soft:
	// the canvas blends the framed and unframed canvases by how clearly
	// the photo has a framable object on a uniform backdrop (sceneWeight),
	// so a mild change (blur, noise, a resample) moves it a little
	// instead of flipping it between two different pictures.
	FramingSoft = "soft"
	// LevelsRobust is LevelsObject measured by the object's luminance
	// median and interquartile spread: a covering rectangle or a tone
	// curve's tail moves them less than the mean and deviation.
	LevelsRobust = "robust"
	// BackdropBalance is BackdropRepaint after a white balance taken from
	// the backdrop when it is bright and near neutral (a white table
	// under a warm light): its tint is the illuminant's. A clearly
	// coloured backdrop (chroma above balanceChromaMax) is only repainted.
	BackdropBalance = "balance"
	// FramingSmall frames only a small object: a solid object on a
	// uniform backdrop whose framed box is at most smallFrame of the
	// photo's longer side is cropped to as FramingObject does; every other
	// photo keeps its whole picture. A photo taken from afar is brought to
	// the training crops' scale, while the decision stays far from the
	// usual shot (an object filling most of the frame), so blur, a tone
	// curve or a cast cannot flip it, and the backdrop around a full-size
	// object stays in the canvas as a reference.
	FramingSmall = "small"
)

// FramingValues, LevelsValues and BackdropValues list the values each
// canonical spec field accepts besides empty. They are functions, each
// call a new slice, so no importer can widen what Spec.Validate (and so a
// functions binary) accepts.
func FramingValues() []string  { return []string{FramingObject, FramingSoft, FramingSmall} }
func LevelsValues() []string   { return []string{LevelsObject, LevelsRobust} }
func BackdropValues() []string { return []string{BackdropRepaint, BackdropBalance} }

// The analysis thresholds. They are relative to the largest colour
// difference from the backdrop in the picture, so a global exposure change
// (which scales every difference alike) moves none of the decisions.
const (
	// analysisCells is the grid the analysis averages the source onto
	// along its longer side, so sensor noise and JPEG blocks do not
	// count as objects.
	analysisCells = 32
	// backdropShare of the outer ring must be close to the ring's median
	// colour for the photo to have a uniform backdrop.
	backdropShare = 0.75
	// foregroundFrac of the largest difference separates object from
	// backdrop.
	foregroundFrac = 0.25
	// minContrast (levels) below which a picture is taken as blank: no
	// object, no backdrop.
	minContrast = 8
	// minSolidity is the least share of the object's box its pixels must
	// cover; below it the "object" is scattered specks and is not framed.
	// A disc covers 0.79 of its box. On the 600 photos, every clean and
	// zoomed-out (55 %) picture framed at 0.5 or more, while 73 of the
	// 117 zoom-in (65 %) crops that passed 0.2 fell below 0.5: highlights
	// and spots on a close-up's skin, not a fruit on a backdrop.
	minSolidity = 0.5
	// maxMagnify bounds how much framing may enlarge the picture: a crop
	// is at least 1/maxMagnify of the source's longer side.
	maxMagnify = 2.5
	// frameMargin is the space left around the object's box on each side,
	// as a fraction of its longer side: about what Fruits-360 crops leave.
	frameMargin = 0.06
	// smallFrame is the largest framed box, as a share of the photo's
	// longer side, that FramingSmall frames: Fruits-360 objects fill 0.9
	// of their photos (0.88-0.92 per class; with the margin, the whole
	// picture), the suite's 55 % zoom-out about 0.56.
	smallFrame = 0.7
	// levelsMean and levelsStd are the object's luminance mean and
	// standard deviation after LevelsObject, in 0..255 levels.
	levelsMean = 128
	levelsStd  = 48
	// iqrPerStd is a normal distribution's interquartile range in
	// standard deviations: LevelsRobust maps the IQR to levelsStd times it.
	iqrPerStd = 1.349
	// balanceChromaFull and balanceChromaMax bound BackdropBalance: a
	// backdrop of chroma (max-min)/max up to the first is fully
	// neutralised, above the second left alone, linearly in between. A
	// warm cast (R x1.15, B x0.75) on white has chroma 0.25.
	balanceChromaFull = 0.3
	balanceChromaMax  = 0.5
	// balanceMinLevel is the least brightest channel of a backdrop taken
	// as a lit white surface.
	balanceMinLevel = 96
)

// The ramps of FramingSoft's sceneWeight: each criterion of analyse
// counts fully above its high end, not at all below its low end. On the
// 600 photos the clean ring shares cluster around backdropShare (fruits
// touching the frame), where the hard test flipped for 40 % of them under
// the evaluation's mere resample to 256 pixels.
var (
	shareRamp    = [2]float64{0.55, 0.9}
	solidityRamp = [2]float64{0.35, 0.65}
	magnifyRamp  = [2]float64{0.8, 1.25}
)

// Canonical reports whether the spec asks for any canonical framing or
// exposure step.
func (s Spec) Canonical() bool { return s.Framing != "" || s.Levels != "" || s.Backdrop != "" }

func (s Spec) frames() bool {
	return s.Framing == FramingObject || s.Framing == FramingSoft || s.Framing == FramingSmall
}
func (s Spec) repaints() bool { return s.Backdrop == BackdropRepaint || s.Backdrop == BackdropBalance }

// scene is what the analysis finds in a picture.
type scene struct {
	backdrop [3]uint8        // median colour of the outer ring
	uniform  bool            // the ring is mostly that colour
	thr      int             // colour difference above which a pixel is object
	box      image.Rectangle // the object's box, in the picture's pixels
	framed   bool            // box is a usable object (uniform, solid, not tiny)
	// weight is FramingSoft's confidence in [0, 1] that the photo is a
	// framable object on a uniform backdrop (see sceneWeight); cand is
	// the object's box whether or not the hard test framed it.
	weight float64
	cand   image.Rectangle
}

// analyse finds the backdrop and the object of an opaque picture m (origin
// at 0,0) on a coarse grid of cell-averaged colours.
func analyse(m *image.RGBA) scene {
	w, h := m.Rect.Dx(), m.Rect.Dy()
	cell := max(1, max(w, h)/analysisCells)
	gw, gh := (w+cell-1)/cell, (h+cell-1)/cell
	grid := make([][3]uint8, gw*gh)
	for gy := range gh {
		for gx := range gw {
			grid[gy*gw+gx] = cellMean(m, gx*cell, gy*cell, min(w, (gx+1)*cell), min(h, (gy+1)*cell))
		}
	}
	var sc scene
	ring := ringOf(grid, gw, gh)
	sc.backdrop = medianColour(ring)
	diffs := make([]int, len(grid))
	most := 0
	for i, c := range grid {
		diffs[i] = colourDiff(c, sc.backdrop)
		most = max(most, diffs[i])
	}
	if most < minContrast {
		return sc
	}
	sc.thr = max(1, int(foregroundFrac*float64(most)))
	close := 0
	for _, c := range ring {
		if colourDiff(c, sc.backdrop) <= sc.thr {
			close++
		}
	}
	share := float64(close) / float64(len(ring))
	sc.uniform = share >= backdropShare
	box, n := foregroundBox(diffs, gw, gh, sc.thr)
	if n > 0 {
		sc.cand = image.Rect(box.Min.X*cell, box.Min.Y*cell, min(w, box.Max.X*cell), min(h, box.Max.Y*cell))
		solidity := float64(n) / float64(box.Dx()*box.Dy())
		// reach is the longest side a framed photo may have: the crop is at
		// least 1/maxMagnify of it.
		reach := maxMagnify * float64(max(sc.cand.Dx(), sc.cand.Dy())) * (1 + 2*frameMargin)
		sc.weight = ramp(share, shareRamp) * ramp(solidity, solidityRamp) * ramp(reach/float64(max(w, h)), magnifyRamp)
		if sc.uniform && float64(n) >= minSolidity*float64(box.Dx()*box.Dy()) {
			sc.box = sc.cand
			sc.framed = float64(max(w, h)) <= reach
		}
	}
	// A uniform ring with no solid object of a framable size on it is a
	// close-up: the "backdrop" is the fruit's own skin and the "object" its
	// highlights and spots. Taken as a backdrop it would be repainted white
	// and the levels measured on the specks (on the photos, 60 % of
	// zoom_in canvases came out mostly white); it is no backdrop.
	sc.uniform = sc.framed
	return sc
}

// small says whether the framed box of sc is at most smallFrame of a
// w x h picture's longer side (FramingSmall).
func (sc scene) small(w, h int) bool {
	side := float64(max(sc.box.Dx(), sc.box.Dy())) * (1 + 2*frameMargin)
	return side <= smallFrame*float64(max(w, h))
}

// ramp is 0 at or below r[0], 1 at or above r[1], linear in between.
func ramp(v float64, r [2]float64) float64 {
	return min(1, max(0, (v-r[0])/(r[1]-r[0])))
}

// foregroundBox is the box of the grid cells differing from the backdrop by
// more than thr, trimmed of the outer 1 % of that mass on each side (a
// stray speck does not stretch it), and how many such cells it holds.
func foregroundBox(diffs []int, gw, gh, thr int) (image.Rectangle, int) {
	cols, rows := make([]int, gw), make([]int, gh)
	total := 0
	for i, d := range diffs {
		if d > thr {
			cols[i%gw]++
			rows[i/gw]++
			total++
		}
	}
	if total == 0 {
		return image.Rectangle{}, 0
	}
	x0, x1 := trimmed(cols, total)
	y0, y1 := trimmed(rows, total)
	n := 0
	for y := y0; y < y1; y++ {
		for x := x0; x < x1; x++ {
			if diffs[y*gw+x] > thr {
				n++
			}
		}
	}
	return image.Rect(x0, y0, x1, y1), n
}

// trimmed is the range [lo, hi) of a histogram that leaves out at most 1 %
// of its total at each end.
func trimmed(h []int, total int) (lo, hi int) {
	cut := total / 100
	for acc := 0; lo < len(h)-1 && acc+h[lo] <= cut; lo++ {
		acc += h[lo]
	}
	hi = len(h)
	for acc := 0; hi > lo+1 && acc+h[hi-1] <= cut; hi-- {
		acc += h[hi-1]
	}
	return lo, hi
}

// cropFor is the square part of a w x h picture the canvas shows: around
// the object when framed, the central square when there is no backdrop
// (but for FramingSmall), and the whole picture (padded to a square)
// otherwise. It may reach past the picture; that area is padding.
func (s Spec) cropFor(sc scene, w, h int) image.Rectangle {
	if !s.frames() {
		return squareAround(image.Rect(0, 0, w, h), max(w, h))
	}
	switch {
	case sc.framed:
		side := int(math.Ceil(float64(max(sc.box.Dx(), sc.box.Dy())) * (1 + 2*frameMargin)))
		return squareAround(sc.box, side)
	case !sc.uniform && s.Framing != FramingSmall:
		return squareAround(image.Rect(0, 0, w, h), min(w, h))
	}
	return squareAround(image.Rect(0, 0, w, h), max(w, h))
}

// squareAround is the side x side square centred on r.
func squareAround(r image.Rectangle, side int) image.Rectangle {
	cx, cy := r.Min.X+r.Dx()/2, r.Min.Y+r.Dy()/2
	x0, y0 := cx-side/2, cy-side/2
	return image.Rect(x0, y0, x0+side, y0+side)
}

// canonicalCanvas makes the size x size canvas of an opaque picture src
// under the spec's canonical steps: pad colour from the backdrop, the crop
// (cropFor), the Catmull-Rom resize, then levels and backdrop repaint. The
// serving path gives it the box-reduced source; the augmenter (through
// Fit) its augmented Raw picture, so training samples are made canonical
// the same way. FramingSmall takes back the framing of an object that is
// not small.
func (s Spec) canonicalCanvas(src *image.RGBA, size int) *image.RGBA {
	sc := analyse(src)
	if s.Framing == FramingSmall && sc.framed && !sc.small(src.Rect.Dx(), src.Rect.Dy()) {
		sc.framed = false
	}
	if s.Framing == FramingSoft {
		return s.softCanvas(src, sc, size)
	}
	return s.canvasFor(src, sc, size)
}

// softCanvas is FramingSoft's canvas: the canvases of sc taken as framed
// and as unframed (no backdrop), blended by sc.weight. Only one is made
// when the weight is 0 or 1.
func (s Spec) softCanvas(src *image.RGBA, sc scene, size int) *image.RGBA {
	flat := sc
	flat.uniform, flat.framed = false, false
	if sc.weight <= 0 {
		return s.canvasFor(src, flat, size)
	}
	framed := sc
	framed.uniform, framed.framed, framed.box = true, true, sc.cand
	out := s.canvasFor(src, framed, size)
	if sc.weight >= 1 {
		return out
	}
	other := s.canvasFor(src, flat, size)
	for i, v := range other.Pix {
		out.Pix[i] = uint8(math.Round(sc.weight*float64(out.Pix[i]) + (1-sc.weight)*float64(v)))
	}
	return out
}

// canvasFor is canonicalCanvas under the scene sc.
func (s Spec) canvasFor(src *image.RGBA, sc scene, size int) *image.RGBA {
	pad := sc.backdrop
	if s.Pad == "" && !sc.uniform {
		pad = s.Background
	}
	crop := s.cropFor(sc, src.Rect.Dx(), src.Rect.Dy())
	canvas := image.NewRGBA(image.Rect(0, 0, size, size))
	fill(canvas, pad)
	resizeOnto(canvas, canvas.Rect, cropOf(src, crop, pad), pad)
	if s.Levels != "" || (s.repaints() && sc.uniform) {
		s.finish(canvas, sc)
	}
	return canvas
}

// cropOf copies the part r of m into a new image, pad where r leaves m.
func cropOf(m *image.RGBA, r image.Rectangle, pad [3]uint8) *image.RGBA {
	if r == m.Rect {
		return m
	}
	out := image.NewRGBA(image.Rect(0, 0, r.Dx(), r.Dy()))
	fill(out, pad)
	in := r.Intersect(m.Rect)
	for y := in.Min.Y; y < in.Max.Y; y++ {
		copy(out.Pix[out.PixOffset(in.Min.X-r.Min.X, y-r.Min.Y):], m.Pix[m.PixOffset(in.Min.X, y):m.PixOffset(in.Max.X, y)])
	}
	return out
}

// finish applies white balance, levels and backdrop repaint to a canvas.
// Which pixels are object is decided on the canvas before any step,
// against the backdrop the analysis found, with a soft edge one threshold
// wide.
func (s Spec) finish(m *image.RGBA, sc scene) {
	n := len(m.Pix) / 4
	alpha := make([]float64, n) // 1: object, 0: backdrop
	for i := range n {
		alpha[i] = 1
		if sc.uniform {
			d := colourDiff([3]uint8(m.Pix[4*i:4*i+3]), sc.backdrop)
			alpha[i] = min(1, max(0, float64(d-sc.thr/2)/float64(max(1, sc.thr))))
		}
	}
	wb := [3]float64{1, 1, 1}
	if s.Backdrop == BackdropBalance && sc.uniform {
		wb = balanceGains(sc.backdrop)
	}
	gain, offset := 1.0, 0.0
	switch s.Levels {
	case LevelsObject:
		gain, offset = levelsFor(m, alpha, wb)
	case LevelsRobust:
		gain, offset = robustLevelsFor(m, alpha, wb)
	}
	repaint := s.repaints() && sc.uniform
	for i := range n {
		p := m.Pix[4*i : 4*i+3]
		for c := range 3 {
			v := float64(p[c])*wb[c]*gain + offset
			if repaint {
				v = alpha[i]*v + (1-alpha[i])*float64(s.Background[c])
			}
			p[c] = uint8(math.Round(min(255, max(0, v))))
		}
	}
}

// balanceGains are the channel gains that make a bright, near-neutral
// backdrop grey at its brightest channel's level, faded out as its chroma
// grows from balanceChromaFull to balanceChromaMax (a coloured backdrop is
// no evidence of the light). 1, 1, 1 when it is dark or coloured.
func balanceGains(bd [3]uint8) [3]float64 {
	hi := float64(max(bd[0], bd[1], bd[2]))
	lo := float64(min(bd[0], bd[1], bd[2]))
	if hi < balanceMinLevel {
		return [3]float64{1, 1, 1}
	}
	k := 1 - ramp((hi-lo)/hi, [2]float64{balanceChromaFull, balanceChromaMax})
	var g [3]float64
	for c := range 3 {
		g[c] = 1 + k*(hi/max(1, float64(bd[c]))-1)
	}
	return g
}

// luma is the luminance of pixel p under channel gains wb.
func luma(p []uint8, wb [3]float64) float64 {
	return 0.299*float64(p[0])*wb[0] + 0.587*float64(p[1])*wb[1] + 0.114*float64(p[2])*wb[2]
}

// levelsFor is the affine map taking the luminance of the object pixels
// (weighted by alpha, under gains wb) to mean levelsMean and deviation
// levelsStd. A flat object is only shifted, not stretched into noise.
func levelsFor(m *image.RGBA, alpha []float64, wb [3]float64) (gain, offset float64) {
	var sw, s1, s2 float64
	for i, a := range alpha {
		if a <= 0 {
			continue
		}
		y := luma(m.Pix[4*i:], wb)
		sw += a
		s1 += a * y
		s2 += a * y * y
	}
	if sw == 0 {
		return 1, 0
	}
	mean := s1 / sw
	std := math.Sqrt(max(0, s2/sw-mean*mean))
	gain = levelsStd / max(std, minContrast)
	return gain, levelsMean - gain*mean
}

// robustLevelsFor is levelsFor by the alpha-weighted median and
// interquartile range of the object's luminance (LevelsRobust).
func robustLevelsFor(m *image.RGBA, alpha []float64, wb [3]float64) (gain, offset float64) {
	type wy struct{ y, w float64 }
	var v []wy
	sw := 0.0
	for i, a := range alpha {
		if a > 0 {
			v = append(v, wy{luma(m.Pix[4*i:], wb), a})
			sw += a
		}
	}
	if sw == 0 {
		return 1, 0
	}
	slices.SortFunc(v, func(a, b wy) int { return cmp.Compare(a.y, b.y) })
	q := func(f float64) float64 {
		acc := 0.0
		for _, e := range v {
			if acc += e.w; acc >= f*sw {
				return e.y
			}
		}
		return v[len(v)-1].y
	}
	med, iqr := q(0.5), q(0.75)-q(0.25)
	gain = levelsStd * iqrPerStd / max(iqr, iqrPerStd*minContrast)
	return gain, levelsMean - gain*med
}

func fill(m *image.RGBA, c [3]uint8) {
	for i := 0; i < len(m.Pix); i += 4 {
		m.Pix[i], m.Pix[i+1], m.Pix[i+2], m.Pix[i+3] = c[0], c[1], c[2], 255
	}
}

// cellMean is the mean colour of m over [x0,x1) x [y0,y1).
func cellMean(m *image.RGBA, x0, y0, x1, y1 int) [3]uint8 {
	var sum [3]int
	for y := y0; y < y1; y++ {
		row := m.Pix[m.PixOffset(x0, y):m.PixOffset(x1, y)]
		for i := 0; i < len(row); i += 4 {
			sum[0] += int(row[i])
			sum[1] += int(row[i+1])
			sum[2] += int(row[i+2])
		}
	}
	k := max(1, (x1-x0)*(y1-y0))
	return [3]uint8{uint8((sum[0] + k/2) / k), uint8((sum[1] + k/2) / k), uint8((sum[2] + k/2) / k)}
}

// ringOf is the outer ring of a gw x gh grid.
func ringOf(g [][3]uint8, gw, gh int) [][3]uint8 {
	var out [][3]uint8
	for y := range gh {
		for x := range gw {
			if y == 0 || y == gh-1 || x == 0 || x == gw-1 {
				out = append(out, g[y*gw+x])
			}
		}
	}
	return out
}

// medianColour is the per-channel median.
func medianColour(cs [][3]uint8) [3]uint8 {
	var out [3]uint8
	v := make([]uint8, len(cs))
	for c := range 3 {
		for i := range cs {
			v[i] = cs[i][c]
		}
		slices.Sort(v)
		out[c] = v[len(v)/2]
	}
	return out
}

// colourDiff is the largest per-channel difference.
func colourDiff(a, b [3]uint8) int {
	d := 0
	for c := range 3 {
		d = max(d, abs(int(a[c])-int(b[c])))
	}
	return d
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// reduced is what a canonical spec analyses and crops: the decoded photo
// box-reduced for the canvas (boxFactor) and composited over Background.
func (s Spec) reduced(d *Decoded) *image.RGBA {
	b := d.Image.Bounds()
	return flatten(reduce(d.Image, boxFactor(b.Dx(), b.Dy(), s.Size)), s.Background)
}

// Raw is the picture the augmenter starts from when it works on the photo
// rather than the canvas: the photo as serving's Fit receives it (box
// reduced for the canvas, composited over Background), in display
// orientation, not square unless the photo is. Augmenting it and then
// fitting the result with Fit (a Decoded of it) makes each sample the way
// serving makes a canvas of a zoomed, moved or relit photo: the same
// resampling from the same pixels, and a canonical spec's steps applied
// once, on the same analysis grid as serving (an unaugmented sample gives
// serving's canvas). Augmenting the canvas instead resamples 32 pixels:
// close-ups are blurred and zoomed-out objects aliased, unlike photos.
func (s Spec) Raw(d *Decoded) *image.RGBA {
	return orient(s.reduced(d), d.Orientation)
}

// CanvasRaw is CanvasSource, also returning the Raw picture: what the
// dataset loader keeps of each image.
func (s Spec) CanvasRaw(b []byte, lim Limits) (canvas, raw *image.RGBA, src Source, err error) {
	d, err := DecodeFor(b, lim, s.Size)
	if err != nil {
		return nil, nil, Source{}, err
	}
	if !s.Canonical() {
		return s.Fit(d), s.Raw(d), d.source(), nil
	}
	// One reduction serves both: canonicalCanvas only reads it.
	r := s.reduced(d)
	return s.canonicalFit(r, d.Orientation), orient(r, d.Orientation), d.source(), nil
}

// canonicalFit is Fit for a canonical spec, from the reduced photo r in
// stored orientation o.
func (s Spec) canonicalFit(r *image.RGBA, o int) *image.RGBA {
	return orient(s.canonicalCanvas(r, s.Size), o)
}
