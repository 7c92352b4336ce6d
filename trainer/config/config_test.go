package config

import (
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/orchard-mlops/orchard/shared/model"
)

func TestDefaultIsValid(t *testing.T) {
	c := Default()
	if c.Model.InputSize != 32 || c.Model.Conv != "im2col" || !c.Augment.Enabled {
		t.Fatalf("unexpected default: %+v", c.Model)
	}
	// The resolved YAML round-trips to the same config.
	c2, err := Load(c.YAML(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if string(c2.YAML()) != string(c.YAML()) {
		t.Fatalf("round trip differs:\n%s\n---\n%s", c.YAML(), c2.YAML())
	}
}

func TestOverrides(t *testing.T) {
	tests := []struct {
		name    string
		file    string
		sets    []string
		check   func(*Config) bool
		wantErr string
	}{
		{name: "int", sets: []string{"train.epochs=20"}, check: func(c *Config) bool { return c.Train.Epochs == 20 }},
		{name: "float", sets: []string{"train.learning_rate=0.01"}, check: func(c *Config) bool { return c.Train.LearningRate == 0.01 }},
		{name: "bool", sets: []string{"augment.enabled=false"}, check: func(c *Config) bool { return !c.Augment.Enabled }},
		{name: "list", sets: []string{"model.widths=[8, 16]", "model.input_size=16"},
			check: func(c *Config) bool { return len(c.Model.Widths) == 2 && c.Model.Widths[1] == 16 }},
		{name: "string with spaces", sets: []string{"data.uri=/data/my fruits"}, check: func(c *Config) bool { return c.Data.URI == "/data/my fruits" }},
		{name: "quoted string", sets: []string{`data.uri="gs://b/p:x"`}, check: func(c *Config) bool { return c.Data.URI == "gs://b/p:x" }},
		{name: "empty value", sets: []string{"version="}, check: func(c *Config) bool { return c.Version == "" }},
		{name: "last wins", sets: []string{"seed=1", "seed=7"}, check: func(c *Config) bool { return c.Seed == 7 }},
		{name: "file then set", file: "train:\n  epochs: 5\n  batch_size: 8\n", sets: []string{"train.epochs=6"},
			check: func(c *Config) bool { return c.Train.Epochs == 6 && c.Train.BatchSize == 8 && c.Train.LearningRate > 0 }},
		{name: "unknown key", sets: []string{"train.epoch=3"}, wantErr: `unknown key "train.epoch"`},
		{name: "unknown section", sets: []string{"optim.lr=3"}, wantErr: `unknown key "optim"`},
		{name: "unknown key in file", file: "model:\n  depth: 3\n", wantErr: `unknown key "model.depth"`},
		{name: "no equals", sets: []string{"train.epochs"}, wantErr: "want key=value"},
		{name: "whole section", sets: []string{"train=1"}, wantErr: "cannot replace a whole section"},
		{name: "bad type", sets: []string{"train.epochs=many"}, wantErr: "cannot unmarshal"},
		{name: "invalid value", sets: []string{"model.conv=fft"}, wantErr: "model.conv"},
		{name: "input size vs depth", sets: []string{"model.input_size=20"}, wantErr: "multiple of 2^3"},
		{name: "unknown pad", sets: []string{"model.pad=mirror"}, wantErr: "model.pad"},
		{name: "unknown framing", sets: []string{"model.framing=tight"}, wantErr: "model.framing"},
		{name: "unknown levels", sets: []string{"model.levels=auto"}, wantErr: "model.levels"},
		{name: "unknown backdrop", sets: []string{"model.backdrop=blur"}, wantErr: "model.backdrop"},
		{name: "unknown input space", sets: []string{"model.input_space=srgb"}, wantErr: "model.input_space"},
		{name: "unknown select_by", sets: []string{"train.select_by=f1"}, wantErr: "train.select_by"},
		{name: "unknown augment source", sets: []string{"augment.source=tile"}, wantErr: "augment.source"},
		{name: "input space without norm", sets: []string{"model.input_space=log", "model.input_norm=false"}, wantErr: "needs model.input_norm"},
		{name: "stacked input spaces", sets: []string{"model.input_space=linear+log-chroma"}, check: func(c *Config) bool { return c.Model.InputSpace == "linear+log-chroma" }},
		{name: "space stacked twice", sets: []string{"model.input_space=log+log"}, wantErr: "joined by +"},
		{name: "log-chroma", sets: []string{"model.input_space=log-chroma"}, check: func(c *Config) bool { return c.Model.InputSpace == "log-chroma" }},
		{name: "canonical steps", sets: []string{"model.framing=object", "model.levels=object", "model.backdrop=repaint"}, check: func(c *Config) bool {
			s := c.Model.Spec()
			return s.Framing == "object" && s.Levels == "object" && s.Backdrop == "repaint" && s.Validate() == nil
		}},
		{name: "border-median pad", sets: []string{"model.pad=border-median"}, check: func(c *Config) bool { return c.Model.Pad == "border-median" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load([]byte(tt.file), tt.sets)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(c) {
				t.Fatalf("override not applied: %s", c.YAML())
			}
		})
	}
}

func TestJSONAndYAMLAgree(t *testing.T) {
	c := Default()
	var m map[string]any
	if err := yaml.Unmarshal(c.JSON(), &m); err != nil { // JSON is YAML
		t.Fatal(err)
	}
	if m["seed"] != 42 {
		t.Fatalf("seed = %v", m["seed"])
	}
}

// The trainer's default name is the one the local stack serves and
// Terraform's model_name defaults to: one default model name everywhere.
func TestDefaultNameIsTheModelDefault(t *testing.T) {
	if got := Default().Name; got != model.DefaultName {
		t.Errorf("default config name %q, want model.DefaultName %q", got, model.DefaultName)
	}
}
