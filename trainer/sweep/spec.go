// Package sweep runs hyperparameter sweeps over trainer config keys: the
// Hydra-multirun / W&B-sweep role. A Spec (YAML) names the keys, their
// values or ranges, the algorithm (grid or random), the metric to optimise
// and how many trials to run, how many at once.
//
// One implementation serves three runners: Trials expands a spec into
// trials for `trainer sweep` (local processes, RunLocal) and for the
// Vertex AI stand-in, which reads the spec back from a
// HyperparameterTuningJob's StudySpec (see sweep/vertexspec, used by
// `orchard sweep`). Every runner starts `trainer train` the way Vertex AI
// does: the trial's parameters as --key=value arguments, CLOUD_ML_TRIAL_ID
// and CLOUD_ML_HP_METRIC_FILE in the environment, and reads the metric
// back from that file (the cloudml-hypertune format, see Report). Finish
// writes the comparison page of all trials and publishes the best through
// the registry's quality gate.
package sweep

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/orchard-mlops/orchard/shared/errlist"
	"github.com/orchard-mlops/orchard/trainer/config"
)

// Algorithms.
const (
	Grid   = "grid"
	Random = "random"
)

// Goals.
const (
	Maximize = "maximize"
	Minimize = "minimize"
)

// DefaultMetric is the onnxruntime-measured validation accuracy of model.json.
const DefaultMetric = "validation_accuracy"

// Spec is a sweep (the YAML file's content).
type Spec struct {
	Name      string   `yaml:"name"`       // model name (name= of every trial)
	Algorithm string   `yaml:"algorithm"`  // grid | random
	Metric    string   `yaml:"metric"`     // a model.json metric (see MetricValue); default validation_accuracy
	Goal      string   `yaml:"goal"`       // maximize (default) | minimize
	Trials    int      `yaml:"trials"`     // trial count; grid: default (and at most) every combination
	Parallel  int      `yaml:"parallel"`   // trials at once; default 1
	MaxFailed int      `yaml:"max_failed"` // failed trials that fail the sweep; default: all of them
	Seed      int64    `yaml:"seed"`       // random search seed
	Set       []string `yaml:"set"`        // fixed key=value overrides for every trial
	Params    []Param  `yaml:"params"`
}

// Param is one swept config key: a list of values, or a range.
type Param struct {
	Key    string   `yaml:"key"`    // config key, e.g. train.learning_rate
	Values []string `yaml:"values"` // discrete numbers or categories (YAML scalars, as -set takes them)
	Min    *float64 `yaml:"min"`
	Max    *float64 `yaml:"max"`
	Type   string   `yaml:"type"`  // with min/max: double (default) | integer
	Scale  string   `yaml:"scale"` // with min/max: linear (default) | log
}

// Value is one parameter of a trial.
type Value struct{ Key, Value string }

// Trial is one point of the sweep. IDs count from 1, as Vertex AI's do.
type Trial struct {
	ID     int
	Params []Value
}

// Set returns the trial's parameters as -set overrides.
func (t Trial) Set() []string {
	out := make([]string, len(t.Params))
	for i, p := range t.Params {
		out[i] = p.Key + "=" + p.Value
	}
	return out
}

// Args returns the parameters as Vertex AI passes them to a trial's
// container: --key=value.
func (t Trial) Args() []string {
	out := make([]string, len(t.Params))
	for i, p := range t.Params {
		out[i] = "--" + p.Key + "=" + p.Value
	}
	return out
}

func (t Trial) String() string { return strings.Join(t.Set(), " ") }

// Load reads and validates a spec file.
func Load(path string) (*Spec, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("sweep spec: %w", err)
	}
	return Parse(b)
}

// Parse decodes a spec strictly (unknown keys are errors) and validates it.
func Parse(b []byte) (*Spec, error) {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var s Spec
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("sweep spec: %w", err)
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return &s, nil
}

// Validate fills defaults and checks the spec, including every value
// against the trainer's config (a typo in a key fails here, not in a trial).
func (s *Spec) Validate() error {
	if s.Algorithm == "" {
		s.Algorithm = Grid
	}
	if s.Metric == "" {
		s.Metric = DefaultMetric
	}
	if s.Goal == "" {
		s.Goal = Maximize
	}
	if s.Parallel <= 0 {
		s.Parallel = 1
	}
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if s.Name == "" {
		add("name (the model name) is required")
	}
	if s.Algorithm != Grid && s.Algorithm != Random {
		add("algorithm %q: want grid or random", s.Algorithm)
	}
	if s.Goal != Maximize && s.Goal != Minimize {
		add("goal %q: want maximize or minimize", s.Goal)
	}
	if len(s.Params) == 0 {
		add("params: at least one parameter is required")
	}
	if s.Trials < 0 || s.MaxFailed < 0 {
		add("trials and max_failed must be >= 0")
	}
	if s.Algorithm == Random && s.Trials == 0 {
		add("trials is required for random search")
	}
	if _, err := config.Load(nil, s.Set); err != nil {
		add("set: %w", err)
	}
	seen := map[string]bool{}
	for i := range s.Params {
		p := &s.Params[i]
		if seen[p.Key] {
			add("params: %q appears twice", p.Key)
		}
		seen[p.Key] = true
		if err := p.validate(s.Algorithm, s.Set); err != nil {
			add("params %q: %w", p.Key, err)
		}
	}
	if err := errlist.Join(errs...); err != nil {
		return fmt.Errorf("sweep spec: %w", err)
	}
	if s.Algorithm == Grid && s.Trials == 0 {
		s.Trials = s.combinations()
	}
	return nil
}

func (p *Param) validate(algo string, base []string) error {
	if p.Key == "" || strings.ContainsAny(p.Key, " \t=") {
		return errors.New("key must be a config key such as train.learning_rate")
	}
	ranged := p.Min != nil || p.Max != nil
	switch {
	case ranged && len(p.Values) > 0:
		return errors.New("give values or min/max, not both")
	case !ranged && len(p.Values) == 0:
		return errors.New("give values or min and max")
	case ranged && (p.Min == nil || p.Max == nil || *p.Min > *p.Max):
		return errors.New("min and max are both required, min <= max")
	}
	if !ranged && (p.Type != "" || p.Scale != "") {
		return errors.New("type and scale apply to min/max ranges only")
	}
	if ranged {
		if p.Type == "" {
			p.Type = "double"
		}
		if p.Scale == "" {
			p.Scale = "linear"
		}
		if p.Type != "double" && p.Type != "integer" {
			return fmt.Errorf("type %q: want double or integer", p.Type)
		}
		if p.Scale != "linear" && p.Scale != "log" {
			return fmt.Errorf("scale %q: want linear or log", p.Scale)
		}
		if p.Scale == "log" && *p.Min <= 0 {
			return errors.New("a log scale needs min > 0")
		}
		if p.Type == "integer" && (*p.Min != math.Trunc(*p.Min) || *p.Max != math.Trunc(*p.Max)) {
			return errors.New("integer ranges need whole min and max")
		}
		if algo == Grid && p.Type == "double" {
			return errors.New("grid search needs values or an integer range (a double range has no grid)")
		}
		if p.Type == "integer" && *p.Max-*p.Min > 10000 {
			return errors.New("integer range wider than 10000")
		}
		p.Values = nil
		for _, v := range []float64{*p.Min, *p.Max} {
			if err := checkValue(base, p.Key, formatNumber(v, p.Type == "integer")); err != nil {
				return err
			}
		}
		return nil
	}
	for _, v := range p.Values {
		if err := checkValue(base, p.Key, v); err != nil {
			return err
		}
	}
	return nil
}

func checkValue(base []string, key, v string) error {
	_, err := config.Load(nil, append(append([]string(nil), base...), key+"="+v))
	return err
}

// Numeric reports whether every value of a value list is a number
// (Vertex AI: a discrete parameter; otherwise categorical).
func (p *Param) Numeric() bool {
	for _, v := range p.Values {
		if _, err := strconv.ParseFloat(v, 64); err != nil {
			return false
		}
	}
	return len(p.Values) > 0
}

// grid returns the values a grid visits.
func (p *Param) grid() []string {
	if p.Min == nil {
		return p.Values
	}
	var out []string
	for v := int64(*p.Min); v <= int64(*p.Max); v++ {
		out = append(out, strconv.FormatInt(v, 10))
	}
	return out
}

func (s *Spec) combinations() int {
	n := 1
	for i := range s.Params {
		n *= len(s.Params[i].grid())
		if n > 1_000_000 {
			return n
		}
	}
	return n
}

// Expand returns the spec's trials: the grid's combinations in order (the
// last parameter varying fastest) up to Trials, or Trials random draws from
// the seeded generator (the same spec gives the same trials).
func (s *Spec) Expand() []Trial {
	var out []Trial
	if s.Algorithm == Grid {
		n := min(s.Trials, s.combinations())
		for i := range n {
			t := Trial{ID: i + 1}
			rest := i
			vals := make([]Value, len(s.Params))
			for j := len(s.Params) - 1; j >= 0; j-- {
				g := s.Params[j].grid()
				vals[j] = Value{s.Params[j].Key, g[rest%len(g)]}
				rest /= len(g)
			}
			t.Params = vals
			out = append(out, t)
		}
		return out
	}
	rng := rand.New(rand.NewPCG(uint64(s.Seed), 0x5eed))
	for i := range s.Trials {
		t := Trial{ID: i + 1}
		for j := range s.Params {
			t.Params = append(t.Params, Value{s.Params[j].Key, s.Params[j].draw(rng)})
		}
		out = append(out, t)
	}
	return out
}

func (p *Param) draw(rng *rand.Rand) string {
	if p.Min == nil {
		return p.Values[rng.IntN(len(p.Values))]
	}
	lo, hi := *p.Min, *p.Max
	if p.Type == "integer" {
		return strconv.FormatInt(int64(lo)+rng.Int64N(int64(hi-lo)+1), 10)
	}
	if p.Scale == "log" {
		return formatNumber(math.Exp(math.Log(lo)+rng.Float64()*(math.Log(hi)-math.Log(lo))), false)
	}
	return formatNumber(lo+rng.Float64()*(hi-lo), false)
}

func formatNumber(v float64, integer bool) string {
	if integer {
		return strconv.FormatInt(int64(math.Round(v)), 10)
	}
	return strconv.FormatFloat(v, 'g', 6, 64)
}

// Better reports whether metric a beats b under the spec's goal.
func (s *Spec) Better(a, b float64) bool {
	if s.Goal == Minimize {
		return a < b
	}
	return a > b
}
