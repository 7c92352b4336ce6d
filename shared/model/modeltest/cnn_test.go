package modeltest

import (
	"math"
	"testing"

	"github.com/orchard-mlops/orchard/shared/onnxrt"
	"github.com/orchard-mlops/orchard/shared/onnxrt/onnxrttest"
)

// TestCNNRuns loads the default-architecture CNN into onnxruntime and checks
// it answers finite, input-dependent logits for every class.
func TestCNNRuns(t *testing.T) {
	m, err := CNN(CNNOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := m.Metadata.Preprocessing.Size, DefaultCNNArch().InputSize; got != want {
		t.Fatalf("input size %d, the default architecture's is %d", got, want)
	}
	onnxrttest.Init(t)
	c, err := onnxrt.NewClassifier(m, onnxrt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	n := m.Metadata.Preprocessing.TensorLen()
	x := make([]float32, 2*n)
	for i := range x {
		x[i] = float32(math.Sin(float64(i) * 0.37))
	}
	for i := range n { // the second image differs
		x[n+i] = -x[i]
	}
	logits, err := c.Logits(x, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(logits) != 2*10 {
		t.Fatalf("%d logits, want 20", len(logits))
	}
	same := true
	for i, v := range logits {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			t.Fatalf("logit %d is %v", i, v)
		}
		if i < 10 && v != logits[10+i] {
			same = false
		}
	}
	if same {
		t.Fatalf("both images got the same logits %v", logits)
	}
}
