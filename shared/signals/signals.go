// Package signals is what one prediction says about its input: the input
// statistics (Stats, computed by shared/preprocess in the pass that builds
// the tensor) and the out-of-distribution flag (OOD, set by
// shared/monitor against the model's baseline). It holds only the types,
// in pure Go with no cgo underneath, so the result schema (shared/results)
// that carries them links neither the decoders nor the monitor.
package signals

// Stats are cheap statistics of one input, for drift monitoring: the pixel
// ones describe the fitted canvas the model sees (so padding counts, as it
// does for the model), the source ones the stored image. The trainer's
// baseline and every prediction compute them the same way, so the two can
// be compared.
type Stats struct {
	Luminance float64 `json:"luminance"` // mean Rec. 601 luma, 0..1
	Contrast  float64 `json:"contrast"`  // standard deviation of the luma, 0..0.5
	// Saturation is the mean chroma, (max - min) / 255 over the channels,
	// 0..1: HSV saturation without its per-pixel division.
	Saturation float64 `json:"saturation"`
	// Foreground is the share of pixels farther than
	// preprocess.ForegroundDistance (in any channel) from the canvas's
	// border median colour: the part of the picture that is not background.
	Foreground float64 `json:"foreground"`
	Width      int     `json:"width"`  // source width as stored
	Height     int     `json:"height"` // source height as stored
	Aspect     float64 `json:"aspect"` // Width / Height
	// Format is the source's container format as preprocess.Format names
	// it ("jpeg", "png", "webp").
	Format string `json:"format"`
}

// OOD is a single prediction's out-of-distribution flag.
type OOD struct {
	Flag bool `json:"flag"`
	// Features are the features that put it out: pixel statistics outside
	// the baseline's range, or confidence below the baseline's low
	// percentile.
	Features []string `json:"features,omitempty"`
	Reason   string   `json:"reason,omitempty"`
}
