package config

import (
	"strings"
	"testing"
)

func TestCheckRequest(t *testing.T) {
	tight, err := ParseLimits("train.epochs=5, model.dense=off")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		sets []string
		lim  Limits
		want string // "" = allowed
	}{
		{[]string{"train.epochs=3", "model.widths=[8,16]", "augment.enabled=false"}, DefaultLimits(), ""},
		{[]string{"data.validation_fraction=0.01"}, DefaultLimits(), "validation split is the operator's"},
		{[]string{"data.split=folders", "data.test_dir=Easy"}, DefaultLimits(), "data.test_dir"},
		{[]string{"version=v1"}, DefaultLimits(), "assigned by the trainer"},
		{[]string{"train.epochz=3"}, DefaultLimits(), "unknown key"},
		{[]string{"export.tolerance=1"}, DefaultLimits(), "not in the allow-list"},
		{[]string{"train.epochs=51"}, DefaultLimits(), "above the operator's bound 50"},
		{[]string{"model.widths=[8,8,8,8,8,8]", "model.input_size=128"}, DefaultLimits(), "at most 5"},
		{[]string{"train.epochs=6"}, tight, "bound 5"},
		{[]string{"model.dense=8"}, tight, "not in the allow-list"},
		{[]string{"train.epochs=-1"}, DefaultLimits(), "train.epochs must be >= 1"},
	}
	for _, tt := range tests {
		err := CheckRequest(tt.sets, tt.lim)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%q refused: %v", tt.sets, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%q: error %v, want it to mention %q", tt.sets, err, tt.want)
		}
	}
	for _, bad := range []string{"train.epochz=3", "data.split=x", "train.epochs=lots", "train.epochs"} {
		if _, err := ParseLimits(bad); err == nil {
			t.Errorf("ParseLimits(%q) accepted", bad)
		}
	}
}
