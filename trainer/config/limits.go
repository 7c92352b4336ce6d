package config

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/orchard-mlops/orchard/shared/errlist"
)

// Limits are what a training request (SubmitTraining, `orchard train`) may
// override: each allowed key with its upper bound. A request is untrusted
// input that spends the operator's money and feeds the quality gate, so
// the set is an allow-list: data, split and version keys are absent (the
// gate's evaluation set and the registry decide those), and so is anything
// not listed. For a list (model.widths) the bound applies to every entry;
// for a boolean it is ignored (the key is simply allowed).
type Limits map[string]float64

// MaxRequestBlocks caps len(model.widths) in a request.
const MaxRequestBlocks = 5

// DefaultLimits are the bounds used unless the operator sets
// TRAINING_OVERRIDE_LIMITS (see ParseLimits). They allow a run a few times
// the default's cost, not an unbounded one.
func DefaultLimits() Limits {
	return Limits{
		"seed":                           1 << 31,
		"train.epochs":                   50,
		"train.batch_size":               512,
		"train.eval_batch_size":          1024,
		"train.learning_rate":            1,
		"train.min_learning_rate":        1,
		"train.warmup_epochs":            10,
		"train.weight_decay":             1,
		"train.label_smoothing":          0.5,
		"train.early_stopping_patience":  50,
		"train.early_stopping_min_delta": 1,
		"train.target_accuracy":          1,
		"model.input_size":               128,
		"model.input_norm":               1,
		"model.widths":                   256,
		"model.convs_per_block":          4,
		"model.batch_norm":               1,
		"model.dense":                    1024,
		"augment.enabled":                1,
		"augment.prob":                   1,
		"augment.rotate_degrees":         180,
		"augment.flip_horizontal":        1,
		"augment.flip_vertical":          1,
		"report.enabled":                 1,
		"report.worst_images":            64,
	}
}

// forbidden explains why notable keys are not in any Limits.
var forbidden = map[string]string{
	"name":                     "the model name comes from the request's model field",
	"version":                  "version ids are assigned by the trainer, not by requests",
	"data.uri":                 "the dataset comes from the request's dataset field",
	"data.split":               "the validation split is the operator's, not the request's",
	"data.validation_fraction": "the validation split is the operator's, not the request's",
	"data.test_dir":            "the validation split is the operator's, not the request's",
	"data.train_dir":           "the validation split is the operator's, not the request's",
	"data.max_image_bytes":     "decoding limits are the operator's",
	"data.max_image_pixels":    "decoding limits are the operator's",
}

// ParseLimits reads the operator's TRAINING_OVERRIDE_LIMITS: comma-separated
// key=bound pairs over DefaultLimits ("train.epochs=20,model.input_size=64");
// a bound of "off" removes a key from the allow-list. Only keys of
// DefaultLimits may appear, so a typo cannot open a key by accident.
func ParseLimits(s string) (Limits, error) {
	l := DefaultLimits()
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		k, v, ok := strings.Cut(f, "=")
		k = strings.TrimSpace(k)
		if _, known := l[k]; !ok || !known {
			return nil, fmt.Errorf("config: override limit %q: want key=bound with a key of %s", f, strings.Join(l.Keys(), ", "))
		}
		if v = strings.TrimSpace(v); v == "off" {
			delete(l, k)
			continue
		}
		b, err := strconv.ParseFloat(v, 64)
		if err != nil || b < 0 {
			return nil, fmt.Errorf("config: override limit %q: want a non-negative number or off", f)
		}
		l[k] = b
	}
	return l, nil
}

// Keys returns the allowed keys, sorted.
func (l Limits) Keys() []string { return slices.Sorted(maps.Keys(l)) }

// CheckRequest checks a request's "key=value" overrides: every key must be
// allowed by l, the resolved configuration must be valid, and every allowed
// value must be at most its bound. All problems are reported at once.
func CheckRequest(sets []string, l Limits) error {
	var errs []error
	for _, s := range sets {
		k, _, _ := strings.Cut(s, "=")
		k = strings.TrimSpace(k)
		if _, ok := l[k]; ok {
			continue
		}
		why := forbidden[k]
		if why == "" {
			why = "not in the allow-list (" + strings.Join(l.Keys(), ", ") + ")"
			if _, err := Load(nil, []string{s}); err != nil && strings.Contains(err.Error(), "unknown key") {
				why = "unknown key; " + why
			}
		}
		errs = append(errs, fmt.Errorf("override %q: %s", s, why))
	}
	if len(errs) > 0 {
		return fmt.Errorf("config: %w", errlist.Join(errs...))
	}
	c, err := Load(nil, sets)
	if err != nil {
		return err
	}
	var resolved map[string]any
	if err := json.Unmarshal(c.JSON(), &resolved); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	for _, s := range sets {
		k, _, _ := strings.Cut(s, "=")
		k = strings.TrimSpace(k)
		if err := checkBound(k, lookup(resolved, k), l[k]); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errlist.Join(errs...); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return nil
}

func lookup(m map[string]any, dotted string) any {
	var v any = m
	for _, p := range strings.Split(dotted, ".") {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = mm[p]
	}
	return v
}

func checkBound(key string, v any, bound float64) error {
	switch x := v.(type) {
	case float64:
		if x > bound {
			return fmt.Errorf("override %s=%v is above the operator's bound %v", key, x, bound)
		}
	case []any:
		if len(x) > MaxRequestBlocks {
			return fmt.Errorf("override %s has %d entries, at most %d", key, len(x), MaxRequestBlocks)
		}
		for _, e := range x {
			if err := checkBound(key, e, bound); err != nil {
				return err
			}
		}
	}
	return nil
}
