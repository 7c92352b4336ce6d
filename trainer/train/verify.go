package train

import (
	"fmt"
	"math"

	"github.com/orchard-mlops/orchard/shared/model"
	"github.com/orchard-mlops/orchard/shared/onnxrt"
)

// Verification compares onnxruntime with the GoMLX model on the same
// inputs.
type Verification struct {
	Images         int     `json:"images"`
	MaxAbsDiff     float64 `json:"max_abs_logit_diff"`
	Tolerance      float64 `json:"tolerance"`
	Top1Mismatches int     `json:"top1_mismatches"` // outside near-ties: any is a failure
	NearTies       int     `json:"near_ties"`       // GoMLX top-2 within tolerance: a flip there is not a disagreement
}

// Verify runs the exported model with onnxruntime (through the serving
// classifier, shared/model) over x (n images) and compares with the GoMLX
// logits: every |difference| must be <= tol and the top-1 class must
// agree. It returns the ORT logits, or an error naming the worst image.
func Verify(m *model.Model, x []float32, goLogits []float32, n, batch int, tol float64) (Verification, []float32, error) {
	v := Verification{Images: n, Tolerance: tol}
	clf, err := onnxrt.NewClassifier(m, onnxrt.Options{})
	if err != nil {
		return v, nil, fmt.Errorf("onnx verification: %w", err)
	}
	defer clf.Close()
	per := m.Metadata.Preprocessing.TensorLen()
	k := len(m.Metadata.Labels)
	ort := make([]float32, 0, n*k)
	for start := 0; start < n; start += batch {
		b := min(batch, n-start)
		out, err := clf.Logits(x[start*per:(start+b)*per], b)
		if err != nil {
			return v, nil, fmt.Errorf("onnx verification: %w", err)
		}
		ort = append(ort, out...)
	}
	worst := -1
	for i := range n {
		g, o := goLogits[i*k:(i+1)*k], ort[i*k:(i+1)*k]
		for j := range k {
			if d := math.Abs(float64(g[j]) - float64(o[j])); d > v.MaxAbsDiff || math.IsNaN(d) {
				v.MaxAbsDiff, worst = d, i
				if math.IsNaN(d) {
					v.MaxAbsDiff = math.Inf(1)
				}
			}
		}
		if argmax(g) != argmax(o) {
			if margin(g) <= tol {
				v.NearTies++
			} else {
				v.Top1Mismatches++
			}
		}
	}
	if v.MaxAbsDiff > tol {
		return v, ort, fmt.Errorf("onnx verification failed: max |logit diff| %.3g > tolerance %.3g (validation image %d)", v.MaxAbsDiff, tol, worst)
	}
	if v.Top1Mismatches > 0 {
		return v, ort, fmt.Errorf("onnx verification failed: top-1 class differs on %d of %d validation images", v.Top1Mismatches, n)
	}
	return v, ort, nil
}

// margin is the gap between the two largest logits.
func margin(v []float32) float64 {
	a, b := math.Inf(-1), math.Inf(-1)
	for _, x := range v {
		f := float64(x)
		if f > a {
			a, b = f, a
		} else if f > b {
			b = f
		}
	}
	return a - b
}

// VerificationImages is how many validation images the verification batch
// stored with a model holds (model.VerificationFile).
const VerificationImages = 8

// VerificationBatch keeps the first few verification inputs (n images of
// per values in x) and the onnxruntime logits (k per image) Verify
// produced for them, so the registry's gate can check that the stored
// graph reproduces them before any alias moves to it.
func VerificationBatch(x, ortLogits []float32, n, per, k int, tol float64) *model.Verification {
	b := min(n, VerificationImages)
	return &model.Verification{Images: b, Tolerance: tol,
		Inputs: append([]float32(nil), x[:b*per]...), Logits: append([]float32(nil), ortLogits[:b*k]...)}
}
