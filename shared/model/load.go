package model

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/shared/monitor"
)

// Size caps for the two files, so a hostile or mistaken URI cannot make a
// function read gigabytes at start-up.
const (
	MaxONNXBytes     = 512 << 20
	MaxMetadataBytes = 4 << 20
)

// Model is a loaded, self-consistent pair of files. Only Metadata is
// checked until a Classifier is made, which checks the graph too.
type Model struct {
	Metadata Metadata
	ONNX     []byte
	// Verification is the export-time check batch (verification.json), nil
	// if the version has none.
	Verification *Verification
	// Baseline is the drift monitor's baseline (monitor.BaselineFile), nil
	// for versions trained before baselines existed.
	Baseline *monitor.Baseline
	URI      string // where it was loaded from
}

// Load reads model.json and model.onnx from a directory URI (gs://bucket/
// prefix, file:///dir or a plain path), opened by op (nil: local paths
// only), and validates the metadata.
func Load(ctx context.Context, op *blob.Opener, uri string) (*Model, error) {
	st, err := op.Open(ctx, uri)
	if err != nil {
		return nil, fmt.Errorf("loading model %s: %w", uri, err)
	}
	return LoadFrom(ctx, st)
}

// LoadFrom reads a model from the root of a store.
func LoadFrom(ctx context.Context, st blob.Store) (*Model, error) {
	uri := st.URI("")
	mj, _, err := st.Read(ctx, MetadataFile, MaxMetadataBytes)
	if err != nil {
		return nil, fmt.Errorf("loading model %s: %w", uri, err)
	}
	meta, err := ParseMetadata(mj)
	if err != nil {
		return nil, fmt.Errorf("loading model %s: %w", uri, err)
	}
	onnxBytes, _, err := st.Read(ctx, ONNXFile, MaxONNXBytes)
	if err != nil {
		return nil, fmt.Errorf("loading model %s: %w", uri, err)
	}
	m := &Model{Metadata: *meta, ONNX: onnxBytes, URI: uri}
	if meta.ONNXSHA256 != "" {
		if err := checkSum(ONNXFile, onnxBytes, meta.ONNXSHA256); err != nil {
			return nil, fmt.Errorf("loading model %s: %w", uri, err)
		}
	}
	if meta.VerificationSHA256 != "" {
		if m.Verification, err = loadVerification(ctx, st, meta.VerificationSHA256); err != nil {
			return nil, fmt.Errorf("loading model %s: %w", uri, err)
		}
	}
	if m.Baseline, err = monitor.LoadBaseline(ctx, st); errors.Is(err, blob.ErrNotFound) {
		m.Baseline = nil
	} else if err != nil {
		return nil, fmt.Errorf("loading model %s: %w", uri, err)
	}
	return m, nil
}

func loadVerification(ctx context.Context, st blob.Store, sum string) (*Verification, error) {
	b, _, err := st.Read(ctx, VerificationFile, MaxVerificationBytes)
	if err != nil {
		return nil, err
	}
	if err := checkSum(VerificationFile, b, sum); err != nil {
		return nil, err
	}
	var v Verification
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("%w: parsing %s: %w", ErrIntegrity, VerificationFile, err)
	}
	return &v, nil
}

// ParseMetadata decodes model.json strictly (unknown fields are an error, so
// a typo cannot silently fall back to a default) and validates it.
func ParseMetadata(b []byte) (*Metadata, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var m Metadata
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("parsing %s: %w", MetadataFile, err)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

// Save writes the model's files into a store: the graph and the
// verification batch first, so a reader that finds model.json always finds
// what it describes. model.json records their sha256.
func (m *Model) Save(ctx context.Context, st blob.Store) error {
	if err := m.Metadata.Validate(); err != nil {
		return fmt.Errorf("saving model: %w", err)
	}
	m.Metadata.ONNXSHA256 = SHA256(m.ONNX)
	m.Metadata.VerificationSHA256 = ""
	if m.Verification != nil {
		vb, err := json.Marshal(m.Verification)
		if err != nil {
			return fmt.Errorf("saving model: encoding %s: %w", VerificationFile, err)
		}
		if _, err := st.Write(ctx, VerificationFile, vb, blob.WriteOptions{ContentType: "application/json"}); err != nil {
			return fmt.Errorf("saving model: %w", err)
		}
		m.Metadata.VerificationSHA256 = SHA256(vb)
	}
	mj, err := json.MarshalIndent(&m.Metadata, "", "  ")
	if err != nil {
		return fmt.Errorf("saving model: encoding %s: %w", MetadataFile, err)
	}
	if _, err := st.Write(ctx, ONNXFile, m.ONNX, blob.WriteOptions{ContentType: "application/octet-stream"}); err != nil {
		return fmt.Errorf("saving model: %w", err)
	}
	if _, err := st.Write(ctx, MetadataFile, append(mj, '\n'), blob.WriteOptions{ContentType: "application/json"}); err != nil {
		return fmt.Errorf("saving model: %w", err)
	}
	return nil
}
