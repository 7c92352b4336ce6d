package registry_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/shared/model/modeltest"
	"github.com/orchard-mlops/orchard/shared/onnxrt"
	"github.com/orchard-mlops/orchard/shared/onnxrt/onnxrttest"
	"github.com/orchard-mlops/orchard/shared/registry"
)

// TestGateUsesEvaluationSet: with the operator's evaluation set, the gate
// compares what the models do on it, not what their model.json claims: a
// candidate claiming 0.99 that gets 1 of 3 right is refused against a
// production that gets 3 of 3, and both scores are recorded.
func TestGateUsesEvaluationSet(t *testing.T) {
	onnxrttest.Init(t)
	ctx := t.Context()
	dir := t.TempDir()
	es := must(blob.NewDir(dir))
	for _, s := range []struct {
		label string
		img   []byte
	}{
		{"red", modeltest.JPEG(t, modeltest.Solid(modeltest.Red, 16, 16))},
		{"green", modeltest.JPEG(t, modeltest.Solid(modeltest.Green, 16, 16))},
		{"blue", modeltest.JPEG(t, modeltest.Solid(modeltest.Blue, 16, 16))},
	} {
		if _, err := es.Write(ctx, filepath.Join(s.label, "1.jpg"), s.img, blob.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	eval, err := registry.OpenEvalSet(ctx, nil, dir)
	if err != nil {
		t.Fatal(err)
	}
	reg := registry.New(must(blob.NewDir(t.TempDir())), registry.Options{})
	res := publish(t, reg, modeltest.Options{Version: "v1", Accuracy: 0.6}, registry.PublishOptions{Runtime: onnxrt.Runtime{}, Promote: true, Eval: eval})
	if d := res.Decision; !d.Accepted || d.EvalAccuracy != 1 || d.EvalImages != 3 {
		t.Fatalf("first version: %+v", d)
	}
	// Same label set, two classes swapped: right on red only.
	res = publish(t, reg, modeltest.Options{Version: "v2", Labels: []string{"red", "blue", "green"}, Accuracy: 0.99},
		registry.PublishOptions{Runtime: onnxrt.Runtime{}, Promote: true, Eval: eval})
	d := res.Decision
	if d.Accepted || !strings.Contains(d.Reason, "evaluation set") || d.BaselineEvalAccuracy != 1 || d.EvalAccuracy > 0.34 {
		t.Fatalf("gamed candidate: %+v", d)
	}
	if rec, err := reg.Decision(ctx, "colours", "v2"); err != nil || rec.EvalAccuracy != d.EvalAccuracy || rec.BaselineEvalAccuracy != 1 {
		t.Errorf("recorded %+v, %v", rec, err)
	}
	// Without the set the self-reported 0.99 would have won.
	if ok, _ := registry.Gate(&modeltest.Colour(t, modeltest.Options{Version: "v2", Labels: []string{"red", "blue", "green"}, Accuracy: 0.99}).Metadata,
		&modeltest.Colour(t, modeltest.Options{Version: "v1", Accuracy: 0.6}).Metadata, registry.GateOptions{}); !ok {
		t.Error("the metadata-only gate refused it too: the test proves nothing")
	}
	if a, _ := reg.Alias(ctx, "colours", registry.Production); a.Version != "v1" {
		t.Errorf("production is %s", a.Version)
	}
}
