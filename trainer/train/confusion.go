package train

import (
	"context"
	"encoding/json"

	"github.com/orchard-mlops/orchard/shared/blob"
)

// ConfusionFile holds the exported model's validation confusion matrix
// (onnxruntime), so that run comparisons (trainer/compare) show per-class
// precision and recall without the dataset.
const ConfusionFile = "confusion.json"

func writeConfusion(ctx context.Context, st blob.Store, labels []string, m [][]int) error {
	b, err := json.Marshal(struct {
		Labels []string `json:"labels"`
		Matrix [][]int  `json:"matrix"`
	}{labels, m})
	if err != nil {
		return err
	}
	_, err = st.Write(ctx, ConfusionFile, b, blob.WriteOptions{ContentType: "application/json"})
	return err
}
