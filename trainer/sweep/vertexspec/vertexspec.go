// Package vertexspec translates a sweep.Spec to and from the StudySpec of
// a Vertex AI HyperparameterTuningJob: `orchard sweep` sends one, and the
// local Vertex AI stand-in reads it back to choose the trials with the same
// code as `trainer sweep`. It is a separate package so that the trainer
// binary does not link the aiplatform client.
package vertexspec

import (
	"fmt"
	"strconv"

	"cloud.google.com/go/aiplatform/apiv1/aiplatformpb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/orchard-mlops/orchard/trainer/sweep"
)

// StudySpec returns the spec's Vertex AI study.
func StudySpec(s *sweep.Spec) *aiplatformpb.StudySpec {
	goal := aiplatformpb.StudySpec_MetricSpec_MAXIMIZE
	if s.Goal == sweep.Minimize {
		goal = aiplatformpb.StudySpec_MetricSpec_MINIMIZE
	}
	algo := aiplatformpb.StudySpec_GRID_SEARCH
	if s.Algorithm == sweep.Random {
		algo = aiplatformpb.StudySpec_RANDOM_SEARCH
	}
	st := &aiplatformpb.StudySpec{
		Metrics:   []*aiplatformpb.StudySpec_MetricSpec{{MetricId: s.Metric, Goal: goal}},
		Algorithm: algo,
	}
	for _, p := range s.Params {
		ps := &aiplatformpb.StudySpec_ParameterSpec{ParameterId: p.Key}
		switch {
		case p.Min != nil && p.Type == "integer":
			ps.ParameterValueSpec = &aiplatformpb.StudySpec_ParameterSpec_IntegerValueSpec_{
				IntegerValueSpec: &aiplatformpb.StudySpec_ParameterSpec_IntegerValueSpec{MinValue: int64(*p.Min), MaxValue: int64(*p.Max)}}
		case p.Min != nil:
			ps.ParameterValueSpec = &aiplatformpb.StudySpec_ParameterSpec_DoubleValueSpec_{
				DoubleValueSpec: &aiplatformpb.StudySpec_ParameterSpec_DoubleValueSpec{MinValue: *p.Min, MaxValue: *p.Max}}
		case p.Numeric():
			vs := make([]float64, len(p.Values))
			for i, v := range p.Values {
				vs[i], _ = strconv.ParseFloat(v, 64)
			}
			ps.ParameterValueSpec = &aiplatformpb.StudySpec_ParameterSpec_DiscreteValueSpec_{
				DiscreteValueSpec: &aiplatformpb.StudySpec_ParameterSpec_DiscreteValueSpec{Values: vs}}
		default:
			ps.ParameterValueSpec = &aiplatformpb.StudySpec_ParameterSpec_CategoricalValueSpec_{
				CategoricalValueSpec: &aiplatformpb.StudySpec_ParameterSpec_CategoricalValueSpec{Values: append([]string(nil), p.Values...)}}
		}
		if p.Min != nil {
			ps.ScaleType = aiplatformpb.StudySpec_ParameterSpec_UNIT_LINEAR_SCALE
			if p.Scale == "log" {
				ps.ScaleType = aiplatformpb.StudySpec_ParameterSpec_UNIT_LOG_SCALE
			}
		}
		st.Parameters = append(st.Parameters, ps)
	}
	return st
}

// FromJob reads a tuning job back as a spec (name: the model name the
// stand-in does not need, set to the display name). Only what Vertex AI
// and the stand-in both support is accepted: one metric, grid or random
// search, double/integer/discrete/categorical parameters without
// conditions. The spec is validated against the trainer's config.
func FromJob(j *aiplatformpb.HyperparameterTuningJob) (*sweep.Spec, error) {
	st := j.GetStudySpec()
	if st == nil {
		return nil, fmt.Errorf("study_spec is required")
	}
	if len(st.GetMetrics()) != 1 {
		return nil, fmt.Errorf("study_spec.metrics: exactly one metric is supported, got %d", len(st.GetMetrics()))
	}
	m := st.GetMetrics()[0]
	s := &sweep.Spec{Name: "stand-in", Metric: m.GetMetricId(), Trials: int(j.GetMaxTrialCount()),
		Parallel: int(j.GetParallelTrialCount()), MaxFailed: int(j.GetMaxFailedTrialCount())}
	switch m.GetGoal() {
	case aiplatformpb.StudySpec_MetricSpec_MAXIMIZE:
		s.Goal = sweep.Maximize
	case aiplatformpb.StudySpec_MetricSpec_MINIMIZE:
		s.Goal = sweep.Minimize
	default:
		return nil, fmt.Errorf("study_spec.metrics[0].goal is required")
	}
	switch st.GetAlgorithm() {
	case aiplatformpb.StudySpec_GRID_SEARCH:
		s.Algorithm = sweep.Grid
	case aiplatformpb.StudySpec_RANDOM_SEARCH:
		s.Algorithm = sweep.Random
	default:
		return nil, fmt.Errorf("study_spec.algorithm %s is not supported by the stand-in (GRID_SEARCH or RANDOM_SEARCH)", st.GetAlgorithm())
	}
	if s.Trials <= 0 || s.Parallel <= 0 {
		return nil, fmt.Errorf("max_trial_count and parallel_trial_count must be > 0")
	}
	for _, ps := range st.GetParameters() {
		if len(ps.GetConditionalParameterSpecs()) > 0 {
			return nil, fmt.Errorf("parameter %s: conditional parameters are not supported by the stand-in", ps.GetParameterId())
		}
		p := sweep.Param{Key: ps.GetParameterId()}
		if ps.GetScaleType() == aiplatformpb.StudySpec_ParameterSpec_UNIT_LOG_SCALE {
			p.Scale = "log"
		}
		switch v := ps.GetParameterValueSpec().(type) {
		case *aiplatformpb.StudySpec_ParameterSpec_DoubleValueSpec_:
			lo, hi := v.DoubleValueSpec.GetMinValue(), v.DoubleValueSpec.GetMaxValue()
			p.Min, p.Max, p.Type = &lo, &hi, "double"
		case *aiplatformpb.StudySpec_ParameterSpec_IntegerValueSpec_:
			lo, hi := float64(v.IntegerValueSpec.GetMinValue()), float64(v.IntegerValueSpec.GetMaxValue())
			p.Min, p.Max, p.Type = &lo, &hi, "integer"
		case *aiplatformpb.StudySpec_ParameterSpec_DiscreteValueSpec_:
			for _, x := range v.DiscreteValueSpec.GetValues() {
				p.Values = append(p.Values, strconv.FormatFloat(x, 'g', -1, 64))
			}
		case *aiplatformpb.StudySpec_ParameterSpec_CategoricalValueSpec_:
			p.Values = v.CategoricalValueSpec.GetValues()
		default:
			return nil, fmt.Errorf("parameter %s: a value spec is required", ps.GetParameterId())
		}
		s.Params = append(s.Params, p)
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return s, nil
}

// TrialParameters is a trial's parameters as Vertex AI reports them:
// numbers for double, integer and discrete parameters, strings for
// categorical ones.
func TrialParameters(s *sweep.Spec, t sweep.Trial) []*aiplatformpb.Trial_Parameter {
	out := make([]*aiplatformpb.Trial_Parameter, len(t.Params))
	for i, v := range t.Params {
		val := structpb.NewStringValue(v.Value)
		if p := s.Params[i]; p.Min != nil || p.Numeric() {
			f, _ := strconv.ParseFloat(v.Value, 64)
			val = structpb.NewNumberValue(f)
		}
		out[i] = &aiplatformpb.Trial_Parameter{ParameterId: v.Key, Value: val}
	}
	return out
}
