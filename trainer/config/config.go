// Package config holds the trainer's configuration: one YAML document with
// every hyperparameter and path (the Hydra role). The embedded default needs
// no flags; a user file is merged over it key by key, then repeatable
// "-set dotted.key=value" overrides are applied, and the result is decoded
// strictly, so a misspelt key is an error rather than silently ignored.
package config

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/orchard-mlops/orchard/shared/errlist"
	"github.com/orchard-mlops/orchard/shared/onnx"
	"github.com/orchard-mlops/orchard/shared/preprocess"
)

//go:embed default.yaml
var defaultYAML []byte

// Config is the resolved configuration.
type Config struct {
	Name    string  `yaml:"name" json:"name"`
	Version string  `yaml:"version" json:"version"`
	Seed    int64   `yaml:"seed" json:"seed"`
	Data    Data    `yaml:"data" json:"data"`
	Model   Model   `yaml:"model" json:"model"`
	Train   Train   `yaml:"train" json:"train"`
	Augment Augment `yaml:"augment" json:"augment"`
	Export  Export  `yaml:"export" json:"export"`
	Report  Report  `yaml:"report" json:"report"`
}

// Data configures the dataset.
type Data struct {
	URI                string  `yaml:"uri" json:"uri"`
	Split              string  `yaml:"split" json:"split"`
	TrainDir           string  `yaml:"train_dir" json:"train_dir"`
	TestDir            string  `yaml:"test_dir" json:"test_dir"`
	ValidationFraction float64 `yaml:"validation_fraction" json:"validation_fraction"`
	MaxImageBytes      int64   `yaml:"max_image_bytes" json:"max_image_bytes"`
	MaxImagePixels     int64   `yaml:"max_image_pixels" json:"max_image_pixels"`
	Workers            int     `yaml:"workers" json:"workers"`
}

// Model configures the CNN.
type Model struct {
	InputSize int `yaml:"input_size" json:"input_size"`
	// Pad, Framing, Levels and Backdrop are the preprocessing spec's
	// fields of the same names (see preprocess.Spec): empty is the old
	// path (a white canvas, the whole photo, no level or backdrop change).
	Pad       string `yaml:"pad" json:"pad"`
	Framing   string `yaml:"framing" json:"framing"`
	Levels    string `yaml:"levels" json:"levels"`
	Backdrop  string `yaml:"backdrop" json:"backdrop"`
	InputNorm bool   `yaml:"input_norm" json:"input_norm"`
	// InputSpace is where input_norm standardises: "" the pixels as
	// given, one of onnx.InputSpaces (log pixel values), or several
	// stacked as more input channels ("linear+log", onnx.ParseInputSpace).
	InputSpace    string  `yaml:"input_space" json:"input_space"`
	Widths        []int   `yaml:"widths" json:"widths"`
	ConvsPerBlock int     `yaml:"convs_per_block" json:"convs_per_block"`
	Conv          string  `yaml:"conv" json:"conv"`
	BatchNorm     bool    `yaml:"batch_norm" json:"batch_norm"`
	BNMomentum    float64 `yaml:"bn_momentum" json:"bn_momentum"`
	BNEpsilon     float64 `yaml:"bn_epsilon" json:"bn_epsilon"`
	Dense         int     `yaml:"dense" json:"dense"`
}

// The values of train.select_by.
const (
	// SelectLoss keeps the epoch of the lowest validation loss. Near 100 %
	// validation accuracy one image decides between epochs, and an early
	// epoch that happens to win that way can be far weaker on shifted
	// photos (trainer/README.md, "Black levels").
	SelectLoss = "loss"
	// SelectAccuracy keeps the epoch of the highest validation accuracy.
	SelectAccuracy = "accuracy"
)

// Train configures optimisation.
type Train struct {
	Epochs                int     `yaml:"epochs" json:"epochs"`
	BatchSize             int     `yaml:"batch_size" json:"batch_size"`
	LearningRate          float64 `yaml:"learning_rate" json:"learning_rate"`
	MinLearningRate       float64 `yaml:"min_learning_rate" json:"min_learning_rate"`
	WarmupEpochs          float64 `yaml:"warmup_epochs" json:"warmup_epochs"`
	WeightDecay           float64 `yaml:"weight_decay" json:"weight_decay"`
	LabelSmoothing        float64 `yaml:"label_smoothing" json:"label_smoothing"`
	EarlyStoppingPatience int     `yaml:"early_stopping_patience" json:"early_stopping_patience"`
	EarlyStoppingMinDelta float64 `yaml:"early_stopping_min_delta" json:"early_stopping_min_delta"`
	// SelectBy is the validation metric that picks the best epoch (the
	// model exported) and drives early stopping: SelectLoss or
	// SelectAccuracy (ties broken by the loss).
	SelectBy       string  `yaml:"select_by" json:"select_by"`
	TargetAccuracy float64 `yaml:"target_accuracy" json:"target_accuracy"`
	EvalBatchSize  int     `yaml:"eval_batch_size" json:"eval_batch_size"`
}

// Limits bound each dataset image the trainer decodes.
func (d Data) Limits() preprocess.Limits {
	return preprocess.Limits{MaxBytes: d.MaxImageBytes, MaxPixels: d.MaxImagePixels}
}

// Spec is the preprocessing spec a model of this configuration is
// trained and served with.
func (m Model) Spec() preprocess.Spec {
	s := preprocess.DefaultSpec(m.InputSize)
	s.Pad, s.Framing, s.Levels, s.Backdrop = m.Pad, m.Framing, m.Levels, m.Backdrop
	return s
}

// Augment configures training-time augmentation.
type Augment struct {
	Enabled bool `yaml:"enabled" json:"enabled"`
	// Source is the picture the geometry and lighting act on:
	// SourceCanvas ("" too), the Size x Size canvas, or SourcePhoto, the photo as
	// serving's Fit receives it (Spec.Raw), each sample then fitted to the
	// canvas by Fit as serving fits a photo. A canonical spec always
	// augments the photo.
	Source         string  `yaml:"source" json:"source"`
	Prob           float64 `yaml:"prob" json:"prob"`
	FlipHorizontal bool    `yaml:"flip_horizontal" json:"flip_horizontal"`
	FlipVertical   bool    `yaml:"flip_vertical" json:"flip_vertical"`
	RotateDegrees  float64 `yaml:"rotate_degrees" json:"rotate_degrees"`
	ScaleMin       float64 `yaml:"scale_min" json:"scale_min"`
	ScaleMax       float64 `yaml:"scale_max" json:"scale_max"`
	Translate      float64 `yaml:"translate" json:"translate"`
	Brightness     float64 `yaml:"brightness" json:"brightness"`
	Contrast       float64 `yaml:"contrast" json:"contrast"`
	Saturation     float64 `yaml:"saturation" json:"saturation"`
	HueDegrees     float64 `yaml:"hue_degrees" json:"hue_degrees"`
	BlurProb       float64 `yaml:"blur_prob" json:"blur_prob"`
	BlurSigmaMax   float64 `yaml:"blur_sigma_max" json:"blur_sigma_max"`
	NoiseProb      float64 `yaml:"noise_prob" json:"noise_prob"`
	NoiseStdMax    float64 `yaml:"noise_std_max" json:"noise_std_max"`
	BackgroundProb float64 `yaml:"background_prob" json:"background_prob"`
	// BackgroundTexture is the share of replaced backgrounds that are a
	// smooth patchwork of random colours rather than one colour.
	BackgroundTexture float64 `yaml:"background_texture" json:"background_texture"`
	LetterboxProb     float64 `yaml:"letterbox_prob" json:"letterbox_prob"`
	// Gamma draws a tone curve v^g with log g uniform in
	// [-log(1+Gamma), log(1+Gamma)] (0: none); WhiteBalance a cast, red
	// gain 1+t and blue 1-t with t uniform in [-WhiteBalance, WhiteBalance]
	// (0: none).
	Gamma        float64 `yaml:"gamma" json:"gamma"`
	WhiteBalance float64 `yaml:"white_balance" json:"white_balance"`
	// Haze lifts every value towards white, v(1-a) + a with a uniform in
	// [0, Haze] (0: none): glare, a dirty lens, a washed-out exposure.
	Haze float64 `yaml:"haze" json:"haze"`
	// CloseupProb is the probability that an augmented sample is a
	// skin-only close-up: zoomed in by a factor in [CloseupMin, CloseupMax]
	// on the object's centre.
	CloseupProb float64 `yaml:"closeup_prob" json:"closeup_prob"`
	CloseupMin  float64 `yaml:"closeup_min" json:"closeup_min"`
	CloseupMax  float64 `yaml:"closeup_max" json:"closeup_max"`
	// EraseProb is the probability that an augmented sample has a random
	// rectangle of EraseAreaMin..EraseAreaMax of its area painted one
	// random colour (random erasing): a finger, a leaf or a price tag.
	EraseProb    float64 `yaml:"erase_prob" json:"erase_prob"`
	EraseAreaMin float64 `yaml:"erase_area_min" json:"erase_area_min"`
	EraseAreaMax float64 `yaml:"erase_area_max" json:"erase_area_max"`
}

// Augmentation sources (Augment.Source).
const (
	SourceCanvas = "canvas"
	SourcePhoto  = "photo"
)

// FromPhoto says whether the augmenter works on the photo (Spec.Raw).
func (a Augment) FromPhoto(spec preprocess.Spec) bool {
	return a.Source == SourcePhoto || spec.Canonical()
}

// Export configures the ONNX export and its verification.
type Export struct {
	FoldBatchNorm bool    `yaml:"fold_batch_norm" json:"fold_batch_norm"`
	Opset         int     `yaml:"opset" json:"opset"`
	Tolerance     float64 `yaml:"tolerance" json:"tolerance"`
}

// Report configures the HTML report.
type Report struct {
	Enabled     bool `yaml:"enabled" json:"enabled"`
	WorstImages int  `yaml:"worst_images" json:"worst_images"`
	// CurveEverySteps samples the training curves every this many steps,
	// besides once per epoch (0: per epoch only).
	CurveEverySteps int `yaml:"curve_every_steps" json:"curve_every_steps"`
	// Drift names the corruptions of `trainer eval -corrupt` the exported
	// model is evaluated under on the validation split, for the report
	// and model.json's metrics: "all", a comma-separated list, or "" for
	// none.
	Drift string `yaml:"drift" json:"drift"`
}

// Default returns the embedded default configuration.
func Default() *Config {
	c, err := Load(nil, nil)
	if err != nil {
		panic(err) // the embedded file is tested
	}
	return c
}

// LoadFile reads an optional user file (path may be empty) and applies the
// overrides.
func LoadFile(path string, sets []string) (*Config, error) {
	var user []byte
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		user = b
	}
	return Load(user, sets)
}

// Load merges the user document (may be nil) over the default, applies the
// "key=value" overrides in order and decodes strictly.
func Load(user []byte, sets []string) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(defaultYAML, &root); err != nil {
		return nil, fmt.Errorf("config: default: %w", err)
	}
	base := docMapping(&root)
	if len(bytes.TrimSpace(user)) > 0 {
		var u yaml.Node
		if err := yaml.Unmarshal(user, &u); err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		um := docMapping(&u)
		if um == nil || um.Kind != yaml.MappingNode {
			return nil, errors.New("config: the file must be a YAML mapping")
		}
		if err := merge(base, um, ""); err != nil {
			return nil, err
		}
	}
	for _, s := range sets {
		if err := applySet(base, s); err != nil {
			return nil, err
		}
	}
	var out bytes.Buffer
	enc := yaml.NewEncoder(&out)
	if err := enc.Encode(base); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	dec := yaml.NewDecoder(&out)
	dec.KnownFields(true)
	var c Config
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

func docMapping(n *yaml.Node) *yaml.Node {
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		return n.Content[0]
	}
	return n
}

// merge copies src over dst. Only keys of the default exist: an unknown key
// is an error naming its dotted path.
func merge(dst, src *yaml.Node, prefix string) error {
	for i := 0; i+1 < len(src.Content); i += 2 {
		k, v := src.Content[i].Value, src.Content[i+1]
		path := joinKey(prefix, k)
		idx := findKey(dst, k)
		if idx < 0 {
			return fmt.Errorf("config: unknown key %q", path)
		}
		cur := dst.Content[idx+1]
		if cur.Kind == yaml.MappingNode {
			if v.Kind != yaml.MappingNode {
				return fmt.Errorf("config: key %q must be a mapping", path)
			}
			if err := merge(cur, v, path); err != nil {
				return err
			}
			continue
		}
		dst.Content[idx+1] = v
	}
	return nil
}

func joinKey(prefix, k string) string {
	if prefix == "" {
		return k
	}
	return prefix + "." + k
}

func findKey(m *yaml.Node, k string) int {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == k {
			return i
		}
	}
	return -1
}

// applySet applies one "dotted.key=value" override; the value is parsed as
// YAML, so "[16,32]", "true", "0.5" and "hello world" all work.
func applySet(root *yaml.Node, s string) error {
	key, val, ok := strings.Cut(s, "=")
	key = strings.TrimSpace(key)
	if !ok || key == "" {
		return fmt.Errorf("config: -set %q: want key=value", s)
	}
	var vn yaml.Node
	if err := yaml.Unmarshal([]byte(val), &vn); err != nil {
		return fmt.Errorf("config: -set %s: %w", key, err)
	}
	value := docMapping(&vn)
	if vn.Kind == 0 { // empty value
		value = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: ""}
	}
	node := root
	parts := strings.Split(key, ".")
	for i, p := range parts {
		if node.Kind != yaml.MappingNode {
			return fmt.Errorf("config: -set %s: %q is not a mapping", key, strings.Join(parts[:i], "."))
		}
		idx := findKey(node, p)
		if idx < 0 {
			return fmt.Errorf("config: -set %s: unknown key %q", key, strings.Join(parts[:i+1], "."))
		}
		if i == len(parts)-1 {
			if node.Content[idx+1].Kind == yaml.MappingNode {
				return fmt.Errorf("config: -set %s: cannot replace a whole section", key)
			}
			node.Content[idx+1] = value
			return nil
		}
		node = node.Content[idx+1]
	}
	return nil
}

// Validate checks value ranges and combinations.
func (c *Config) Validate() error {
	var errs []error
	add := func(cond bool, format string, args ...any) {
		if cond {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	add(c.Name == "", "name is empty")
	switch c.Data.Split {
	case "auto", "stratified", "folders":
	default:
		add(true, "data.split %q is not auto, stratified or folders", c.Data.Split)
	}
	add(c.Data.ValidationFraction <= 0 || c.Data.ValidationFraction >= 1, "data.validation_fraction %v must be in (0,1)", c.Data.ValidationFraction)
	add(c.Data.Workers < 0, "data.workers must be >= 0")
	add(len(c.Model.Widths) == 0, "model.widths is empty")
	add(c.Model.InputSpace != "" && !c.Model.InputNorm, "model.input_space %q needs model.input_norm (model.input_space= for none)", c.Model.InputSpace)
	for _, f := range []struct {
		key, v string
		want   []string
	}{
		{"pad", c.Model.Pad, []string{preprocess.PadBorderMedian}},
		{"framing", c.Model.Framing, preprocess.FramingValues()},
		{"levels", c.Model.Levels, preprocess.LevelsValues()},
		{"backdrop", c.Model.Backdrop, preprocess.BackdropValues()},
	} {
		add(f.v != "" && !slices.Contains(f.want, f.v), "model.%s %q must be empty or one of %q", f.key, f.v, f.want)
	}
	if _, err := onnx.ParseInputSpace(c.Model.InputSpace); err != nil {
		add(true, "model.input_space %q must be empty, one of %q, or several of %q joined by +", c.Model.InputSpace, onnx.InputSpaces(), append([]string{onnx.InputLinear}, onnx.InputSpaces()...))
	}
	for _, w := range c.Model.Widths {
		add(w < 1, "model.widths entries must be >= 1")
	}
	if n := len(c.Model.Widths); n > 0 && n < 20 {
		add(c.Model.InputSize < 1<<n || c.Model.InputSize%(1<<n) != 0,
			"model.input_size %d must be a positive multiple of 2^%d (one 2x2 pooling per block)", c.Model.InputSize, n)
	}
	add(c.Model.ConvsPerBlock < 1, "model.convs_per_block must be >= 1")
	add(c.Model.Conv != "im2col" && c.Model.Conv != "native", "model.conv %q is not im2col or native", c.Model.Conv)
	add(c.Model.BNMomentum < 0 || c.Model.BNMomentum >= 1, "model.bn_momentum must be in [0,1)")
	add(c.Model.BNEpsilon <= 0, "model.bn_epsilon must be > 0")
	add(c.Model.Dense < 0, "model.dense must be >= 0")
	add(c.Report.CurveEverySteps < 0, "report.curve_every_steps must be >= 0")
	add(c.Train.Epochs < 1, "train.epochs must be >= 1")
	add(c.Train.BatchSize < 1, "train.batch_size must be >= 1")
	add(c.Train.EvalBatchSize < 1, "train.eval_batch_size must be >= 1")
	add(c.Train.LearningRate <= 0, "train.learning_rate must be > 0")
	add(c.Train.MinLearningRate < 0 || c.Train.MinLearningRate > c.Train.LearningRate, "train.min_learning_rate must be in [0, learning_rate]")
	add(c.Train.WarmupEpochs < 0, "train.warmup_epochs must be >= 0")
	add(c.Train.WeightDecay < 0, "train.weight_decay must be >= 0")
	add(c.Train.LabelSmoothing < 0 || c.Train.LabelSmoothing >= 1, "train.label_smoothing must be in [0,1)")
	add(c.Train.EarlyStoppingPatience < 0, "train.early_stopping_patience must be >= 0")
	add(c.Train.SelectBy != SelectLoss && c.Train.SelectBy != SelectAccuracy, "train.select_by %q must be %s or %s", c.Train.SelectBy, SelectLoss, SelectAccuracy)
	add(!slices.Contains([]string{"", SourceCanvas, SourcePhoto}, c.Augment.Source), "augment.source must be canvas or photo")
	add(c.Augment.ScaleMin <= 0 || c.Augment.ScaleMax < c.Augment.ScaleMin, "augment.scale_min/scale_max invalid")
	add(c.Augment.LetterboxProb < 0 || c.Augment.LetterboxProb > 1, "augment.letterbox_prob must be in [0, 1]")
	add(c.Augment.BackgroundTexture < 0 || c.Augment.BackgroundTexture > 1, "augment.background_texture must be in [0, 1]")
	add(c.Augment.Gamma < 0, "augment.gamma must be >= 0")
	add(c.Augment.WhiteBalance < 0 || c.Augment.WhiteBalance >= 1, "augment.white_balance must be in [0, 1)")
	add(c.Augment.CloseupProb < 0 || c.Augment.CloseupProb > 1, "augment.closeup_prob must be in [0, 1]")
	add(c.Augment.Haze < 0 || c.Augment.Haze >= 1, "augment.haze must be in [0, 1)")
	add(c.Augment.EraseProb < 0 || c.Augment.EraseProb > 1, "augment.erase_prob must be in [0, 1]")
	add(c.Augment.EraseProb > 0 && (c.Augment.EraseAreaMin <= 0 || c.Augment.EraseAreaMax < c.Augment.EraseAreaMin || c.Augment.EraseAreaMax > 1),
		"augment.erase_area_min/erase_area_max invalid: need 0 < min <= max <= 1")
	add(c.Augment.CloseupProb > 0 && (c.Augment.CloseupMin < 1 || c.Augment.CloseupMax < c.Augment.CloseupMin), "augment.closeup_min/closeup_max invalid: need 1 <= min <= max")
	add(c.Export.Tolerance <= 0, "export.tolerance must be > 0")
	add(c.Export.Opset < 13, "export.opset must be >= 13")
	if err := errlist.Join(errs...); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return nil
}

// YAML returns the resolved configuration as YAML.
func (c *Config) YAML() []byte {
	b, err := yaml.Marshal(c)
	if err != nil {
		panic(err)
	}
	return b
}

// JSON returns the resolved configuration as JSON (for model.json).
func (c *Config) JSON() json.RawMessage {
	b, err := json.Marshal(c)
	if err != nil {
		panic(err)
	}
	return b
}
