package cnn

import (
	"fmt"

	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/orchard-mlops/orchard/shared/onnx"
)

// Floats returns a copy of a float32 variable's value.
func Floats(store *model.Store, path string) ([]float32, error) {
	v := store.GetVariable(path)
	if v == nil {
		return nil, fmt.Errorf("cnn: variable %s not found", path)
	}
	t, err := v.Value()
	if err != nil {
		return nil, fmt.Errorf("cnn: variable %s: %w", path, err)
	}
	return tensors.CopyFlatData[float32](t)
}

// Net extracts the trained parameters as an onnx.Net.
func Net(store *model.Store, a Arch, inputName, outputName string) (*onnx.Net, error) {
	var err error
	get := func(scope, name string) []float32 {
		if err != nil {
			return nil
		}
		var v []float32
		v, err = Floats(store, "/"+Scope+"/"+scope+"/"+name)
		return v
	}
	net := &onnx.Net{InputSize: a.InputSize, InputName: inputName, OutputName: outputName}
	if a.InputNorm {
		net.InputNormEpsilon = InputNormEpsilon
	}
	if err := net.SetInputSpace(a.InputSpace, a.Pixels, InputLogEpsilon); err != nil {
		return nil, fmt.Errorf("cnn: %w", err)
	}
	debias := 1.0
	if a.BatchNorm {
		steps, err := Floats(store, "/"+Scope+"/"+VarBNSteps)
		if err != nil {
			return nil, err
		}
		debias = BNDebias(a.BNMomentum, float64(steps[0]))
	}
	corrected := func(v []float32) []float32 {
		out := make([]float32, len(v))
		for i, x := range v {
			out[i] = float32(float64(x) * debias)
		}
		return out
	}
	in := net.InputChannels()
	for b, w := range a.Widths {
		var block []onnx.Conv
		for c := range a.ConvsPerBlock {
			s := ConvScope(b, c)
			cv := onnx.Conv{In: in, Out: w, Weights: get(s, VarWeights)}
			if a.BatchNorm {
				cv.BN = &onnx.BatchNorm{Gamma: get(s, VarGamma), Beta: get(s, VarBeta),
					Mean: corrected(get(s, VarMean)), Var: corrected(get(s, VarVar)), Epsilon: a.BNEpsilon}
			} else {
				cv.Bias = get(s, VarBias)
			}
			block = append(block, cv)
			in = w
		}
		net.Blocks = append(net.Blocks, block)
	}
	if a.Dense > 0 {
		net.Hidden = &onnx.Dense{In: in, Out: a.Dense, Weights: get(DenseScope, VarWeights), Bias: get(DenseScope, VarBias)}
		in = a.Dense
	}
	net.Head = onnx.Dense{In: in, Out: a.NumClasses, Weights: get(HeadScope, VarWeights), Bias: get(HeadScope, VarBias)}
	if err != nil {
		return nil, err
	}
	return net, nil
}
