package model

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
)

// VerificationFile holds a small batch of input tensors and the logits
// onnxruntime produced for them when the model was exported. The quality
// gate runs the stored graph on the inputs again before any alias moves to
// it: a truncated, replaced or mismatched graph cannot reproduce them.
const VerificationFile = "verification.json"

// MaxVerificationBytes caps verification.json.
const MaxVerificationBytes = 64 << 20

// DefaultVerificationTolerance is the largest |logit difference| accepted
// when the batch records none.
const DefaultVerificationTolerance = 1e-4

// ErrIntegrity means a model's files do not match what model.json records.
var ErrIntegrity = errors.New("model integrity check failed")

// Verification is the content of verification.json.
type Verification struct {
	Images    int       `json:"images"`
	Inputs    []float32 `json:"inputs"` // Images x the preprocessing tensor (NCHW)
	Logits    []float32 `json:"logits"` // Images x len(labels), as onnxruntime computed them at export
	Tolerance float64   `json:"tolerance"`
}

// SHA256 is the lowercase hex sha256 of b, as model.json records it.
func SHA256(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func checkSum(file string, b []byte, want string) error {
	if got := SHA256(b); got != want {
		return fmt.Errorf("%w: %s (%d bytes) has sha256 %s, %s records %s (truncated or replaced)",
			ErrIntegrity, file, len(b), got, MetadataFile, want)
	}
	return nil
}

// Runner runs a model's graph. The serving classifier (shared/onnxrt) is
// one; light packages such as the registry's gate take this interface so
// that they do not link onnxruntime themselves.
type Runner interface {
	// Logits runs n preprocessed images (n*TensorLen values) and returns
	// n*len(labels) logits.
	Logits(batch []float32, n int) ([]float32, error)
	// Classify decodes, preprocesses and classifies one encoded image.
	Classify(img []byte, k int) ([]Prediction, error)
	Close() error
}

// Reproduce runs r (a runner of a model with metadata meta) on the
// verification inputs and checks that every logit is within the tolerance
// of the recorded one.
func (v *Verification) Reproduce(meta *Metadata, r Runner) error {
	per, k := meta.Preprocessing.TensorLen(), len(meta.Labels)
	if v.Images < 1 || len(v.Inputs) != v.Images*per || len(v.Logits) != v.Images*k {
		return fmt.Errorf("%w: %s holds %d inputs and %d logits, not %d images of %d values and %d labels",
			ErrIntegrity, VerificationFile, len(v.Inputs), len(v.Logits), v.Images, per, k)
	}
	got, err := r.Logits(v.Inputs, v.Images)
	if err != nil {
		return fmt.Errorf("%w: running the verification batch: %w", ErrIntegrity, err)
	}
	tol := v.Tolerance
	if tol <= 0 {
		tol = DefaultVerificationTolerance
	}
	for i, want := range v.Logits {
		if d := math.Abs(float64(got[i]) - float64(want)); !(d <= tol) {
			return fmt.Errorf("%w: verification logit %d of image %d is %g, recorded %g (|diff| %.3g > %.3g)",
				ErrIntegrity, i%k, i/k, got[i], want, d, tol)
		}
	}
	return nil
}

// Verified is what the quality gate requires before an alias moves to m:
// recorded checksums (already checked by Load), a graph that open loads and
// that matches model.json, and reproduced verification logits. It returns
// the runner open made; the caller closes it.
func (m *Model) Verified(open func(*Model) (Runner, error)) (Runner, error) {
	if m.Metadata.ONNXSHA256 == "" {
		return nil, fmt.Errorf("%w: %s records no onnx_sha256", ErrIntegrity, MetadataFile)
	}
	if m.Verification == nil {
		return nil, fmt.Errorf("%w: the version has no %s", ErrIntegrity, VerificationFile)
	}
	r, err := open(m)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrIntegrity, err)
	}
	if err := m.Verification.Reproduce(&m.Metadata, r); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}
