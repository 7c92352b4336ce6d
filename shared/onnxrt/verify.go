package onnxrt

import "github.com/orchard-mlops/orchard/shared/model"

// Runtime opens models with onnxruntime. It is the registry's gate runtime
// (registry.Runtime) in binaries built with cgo.
type Runtime struct{ Options Options }

// Open implements registry.Runtime.
func (rt Runtime) Open(m *model.Model) (model.Runner, error) {
	c, err := NewClassifier(m, rt.Options)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Verified is model.Model.Verified with onnxruntime: the checksums, the
// graph against model.json and the reproduced verification logits. It
// returns the classifier it made.
func Verified(m *model.Model, opts Options) (*Classifier, error) {
	r, err := m.Verified(Runtime{opts}.Open)
	if err != nil {
		return nil, err
	}
	return r.(*Classifier), nil
}

// CheckIntegrity is Verified without keeping the classifier.
func CheckIntegrity(m *model.Model, opts Options) error {
	c, err := Verified(m, opts)
	if err != nil {
		return err
	}
	return c.Close()
}
