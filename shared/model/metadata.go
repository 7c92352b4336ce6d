// Package model is Orchard's model format and the classifier that serves it.
//
// A model is a directory (or GCS prefix) holding two files: model.onnx, the
// graph, and model.json, its Metadata. The trainer writes both; the
// prediction functions load them unchanged. Loading validates the pair: the
// label count must match the graph's output and the input spec must match
// the graph's input, so a bad model fails at load time with a message naming
// what is wrong, never at the first request.
package model

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/orchard-mlops/orchard/shared/errlist"
	"github.com/orchard-mlops/orchard/shared/preprocess"
)

// File names inside a model directory.
const (
	ONNXFile     = "model.onnx"
	MetadataFile = "model.json"
)

// DefaultName is the model name used wherever none is given: the
// trainer's default config, the local stack and demo, and Terraform's
// model_name default. Keep them equal (a test checks the first three).
const DefaultName = "fruits"

// FormatVersion is the model.json schema version this code reads and writes.
const FormatVersion = 1

// Metadata is the content of model.json.
type Metadata struct {
	FormatVersion  int             `json:"format_version"`
	Name           string          `json:"name"`
	Version        string          `json:"version"`
	Labels         []string        `json:"labels"` // in output order
	Input          TensorSpec      `json:"input"`
	Output         TensorSpec      `json:"output"` // logits, one per label
	Preprocessing  preprocess.Spec `json:"preprocessing"`
	Metrics        Metrics         `json:"metrics"`
	Dataset        Dataset         `json:"dataset"`
	TrainingConfig json.RawMessage `json:"training_config,omitempty"` // the resolved trainer config
	CreatedAt      time.Time       `json:"created_at"`
	SourceRevision string          `json:"source_revision,omitempty"` // VCS revision of the trainer
	// ONNXSHA256 is the hex sha256 of model.onnx, checked on every load
	// (Save fills it in). VerificationSHA256 is that of verification.json.
	ONNXSHA256         string `json:"onnx_sha256,omitempty"`
	VerificationSHA256 string `json:"verification_sha256,omitempty"`
}

// TensorSpec names a graph input or output. A dimension of -1 is dynamic
// (the batch dimension always is).
type TensorSpec struct {
	Name  string  `json:"name"`
	Shape []int64 `json:"shape"`
}

// Metrics are the training results worth comparing between versions.
// ValidationAccuracy is measured by onnxruntime on the exported graph, so it
// is the accuracy of what is served, not of the training framework's copy.
type Metrics struct {
	ValidationAccuracy float64            `json:"validation_accuracy"`
	ValidationLoss     float64            `json:"validation_loss,omitempty"`
	TrainAccuracy      float64            `json:"train_accuracy,omitempty"`
	TrainLoss          float64            `json:"train_loss,omitempty"`
	Epochs             int                `json:"epochs,omitempty"`
	ValidationImages   int                `json:"validation_images,omitempty"`
	Extra              map[string]float64 `json:"extra,omitempty"`
}

// Dataset identifies the data a model was trained on (the DVC role): the
// digest of the manifest changes when any file, label or split changes.
type Dataset struct {
	URI            string `json:"uri"`
	ManifestDigest string `json:"manifest_digest"` // "sha256:<hex>"
	Images         int    `json:"images"`
	Skipped        int    `json:"skipped,omitempty"` // unreadable files left out
}

// Validate checks the metadata on its own (the graph is checked by Load).
func (m *Metadata) Validate() error {
	var errs []error
	if m.FormatVersion != FormatVersion {
		errs = append(errs, fmt.Errorf("format_version %d is not %d", m.FormatVersion, FormatVersion))
	}
	if m.Name == "" {
		errs = append(errs, errors.New("name is empty"))
	}
	if m.Version == "" {
		errs = append(errs, errors.New("version is empty"))
	}
	if len(m.Labels) < 2 {
		errs = append(errs, fmt.Errorf("%d labels; a classifier needs at least 2", len(m.Labels)))
	}
	seen := make(map[string]bool, len(m.Labels))
	for i, l := range m.Labels {
		if l == "" {
			errs = append(errs, fmt.Errorf("label %d is empty", i))
		}
		if seen[l] {
			errs = append(errs, fmt.Errorf("label %q appears twice", l))
		}
		seen[l] = true
	}
	if err := m.Preprocessing.Validate(); err != nil {
		errs = append(errs, err)
	}
	if m.Input.Name == "" || m.Output.Name == "" {
		errs = append(errs, errors.New("input and output names must be set"))
	}
	if want := m.Preprocessing.Shape(-1); !ShapeMatches(m.Input.Shape, want) {
		errs = append(errs, fmt.Errorf("input shape %v does not match the preprocessing spec %v", m.Input.Shape, want))
	}
	if want := []int64{-1, int64(len(m.Labels))}; !ShapeMatches(m.Output.Shape, want) {
		errs = append(errs, fmt.Errorf("output shape %v does not match %d labels", m.Output.Shape, len(m.Labels)))
	}
	if err := errlist.Join(errs...); err != nil {
		return fmt.Errorf("model.json: %w", err)
	}
	return nil
}

// ShapeMatches compares shapes where -1 in either is a wildcard (the graph
// check of shared/onnxrt uses it too).
func ShapeMatches(got, want []int64) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i] != want[i] && got[i] != -1 && want[i] != -1 {
			return false
		}
	}
	return true
}
