package model_test

import (
	"context"
	"encoding/json"
	"errors"
	"image/color"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/shared/model"
	"github.com/orchard-mlops/orchard/shared/model/modeltest"
)

func TestSoftmaxAndTopK(t *testing.T) {
	got := model.TopK([]string{"a", "b", "c"}, []float32{1000, 1000, -1000}, 2)
	want := []model.Prediction{{Label: "a", Score: 0.5}, {Label: "b", Score: 0.5}}
	if diff := cmp.Diff(want, got, cmpopts.EquateApprox(0, 1e-12)); diff != "" {
		t.Errorf("TopK (-want +got):\n%s", diff)
	}
	if n := len(model.TopK([]string{"a", "b"}, []float32{0, 1}, 0)); n != 2 {
		t.Errorf("k=0 gave %d predictions, want all", n)
	}
}

func TestMetadataValidate(t *testing.T) {
	good := modeltest.Colour(t, modeltest.Options{}).Metadata
	tests := []struct {
		name   string
		mutate func(*model.Metadata)
		want   string
	}{
		{"no labels", func(m *model.Metadata) { m.Labels = nil }, "labels"},
		{"duplicate label", func(m *model.Metadata) { m.Labels = []string{"a", "a", "b"} }, "twice"},
		{"labels vs output", func(m *model.Metadata) { m.Labels = append(m.Labels, "purple") }, "output shape"},
		{"input vs spec", func(m *model.Metadata) { m.Preprocessing.Size = 16 }, "input shape"},
		{"bad layout", func(m *model.Metadata) { m.Preprocessing.Layout = "CHW" }, "layout"},
		{"format", func(m *model.Metadata) { m.FormatVersion = 99 }, "format_version"},
		{"no name", func(m *model.Metadata) { m.Name = "" }, "name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := good
			m.Labels = append([]string(nil), good.Labels...)
			tt.mutate(&m)
			err := m.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate() = %v, want an error mentioning %q", err, tt.want)
			}
		})
	}
}

func TestParseMetadataRejectsUnknownFields(t *testing.T) {
	_, err := model.ParseMetadata([]byte(`{"format_version":1,"labelz":["a"]}`))
	if err == nil || !strings.Contains(err.Error(), "labelz") {
		t.Errorf("ParseMetadata = %v, want an unknown-field error", err)
	}
}

// TestParseMetadataRejectsUnknownSpecFields: a model whose preprocessing
// names a step this binary does not implement (a newer trainer's field, or
// a pad mode it does not know) is refused, never served with the old path.
func TestParseMetadataRejectsUnknownSpecFields(t *testing.T) {
	good := modeltest.Colour(t, modeltest.Options{}).Metadata
	b, err := json.Marshal(good)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := model.ParseMetadata(b); err != nil {
		t.Fatalf("the unmodified metadata is refused: %v", err)
	}
	future := strings.Replace(string(b), `"resize":`, `"vignette":"radial","resize":`, 1)
	if _, err := model.ParseMetadata([]byte(future)); err == nil || !strings.Contains(err.Error(), "vignette") {
		t.Errorf("unknown spec field: ParseMetadata = %v, want an error naming vignette", err)
	}
	// framing is a field this binary knows (issue 12): accepted.
	known := strings.Replace(string(b), `"resize":`, `"framing":"object","resize":`, 1)
	if _, err := model.ParseMetadata([]byte(known)); err != nil {
		t.Errorf("known spec field framing: ParseMetadata = %v", err)
	}
	good.Preprocessing.Pad = "mirror"
	b, err = json.Marshal(good)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := model.ParseMetadata(b); err == nil || !strings.Contains(err.Error(), "pad") {
		t.Errorf("unknown pad mode: ParseMetadata = %v, want an error naming pad", err)
	}
}

func TestLoadMissingModel(t *testing.T) {
	_, err := model.Load(context.Background(), nil, t.TempDir())
	if !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("Load(empty dir) = %v, want ErrNotFound", err)
	}
}

func TestSolidColoursAreDistinct(t *testing.T) {
	if modeltest.Red == (color.RGBA{}) {
		t.Fatal("colour fixtures unset")
	}
}
