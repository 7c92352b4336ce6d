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

// Reproduce runs the classifier on the verification inputs and checks
// that every logit is within the tolerance of the recorded one.
func (v *Verification) Reproduce(c *Classifier) error {
	per, k := c.meta.Preprocessing.TensorLen(), len(c.meta.Labels)
	if v.Images < 1 || len(v.Inputs) != v.Images*per || len(v.Logits) != v.Images*k {
		return fmt.Errorf("%w: %s holds %d inputs and %d logits, not %d images of %d values and %d labels",
			ErrIntegrity, VerificationFile, len(v.Inputs), len(v.Logits), v.Images, per, k)
	}
	got, err := c.Logits(v.Inputs, v.Images)
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

// CheckIntegrity is what the quality gate requires before an alias moves
// to m: recorded checksums (already checked by Load), a graph onnxruntime
// loads and that matches model.json, and reproduced verification logits.
func (m *Model) CheckIntegrity(opts Options) error {
	c, err := m.VerifiedClassifier(opts)
	if err != nil {
		return err
	}
	return c.Close()
}

// VerifiedClassifier is CheckIntegrity returning the classifier it made.
func (m *Model) VerifiedClassifier(opts Options) (*Classifier, error) {
	if m.Metadata.ONNXSHA256 == "" {
		return nil, fmt.Errorf("%w: %s records no onnx_sha256", ErrIntegrity, MetadataFile)
	}
	if m.Verification == nil {
		return nil, fmt.Errorf("%w: the version has no %s", ErrIntegrity, VerificationFile)
	}
	c, err := NewClassifier(m, opts)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrIntegrity, err)
	}
	if err := m.Verification.Reproduce(c); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}
