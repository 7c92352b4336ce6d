package onnxrt_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/orchard-mlops/orchard/shared/model"
	"github.com/orchard-mlops/orchard/shared/model/modeltest"
	"github.com/orchard-mlops/orchard/shared/onnxrt"
	"github.com/orchard-mlops/orchard/shared/onnxrt/onnxrttest"
	"github.com/orchard-mlops/orchard/shared/preprocess"
)

func TestLoadAndClassify(t *testing.T) {
	onnxrttest.Init(t)
	ctx := context.Background()
	dir := modeltest.Dir(t, modeltest.Options{})
	m, err := model.Load(ctx, nil, "file://"+dir)
	if err != nil {
		t.Fatal(err)
	}
	c, err := onnxrt.NewClassifier(m, onnxrt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	cases := []struct {
		img  []byte
		want string
	}{
		{modeltest.JPEG(t, modeltest.Solid(modeltest.Red, 50, 40)), "red"},
		{modeltest.PNG(t, modeltest.Solid(modeltest.Green, 20, 20)), "green"},
		{modeltest.JPEG(t, modeltest.Solid(modeltest.Blue, 300, 200)), "blue"},
	}
	// Concurrent use of one session is the serving pattern; -race checks it.
	var wg sync.WaitGroup
	for i := range 8 {
		tc := cases[i%len(cases)]
		wg.Go(func() {
			ps, err := c.Classify(tc.img, 2)
			if err != nil {
				t.Error(err)
				return
			}
			if len(ps) != 2 || ps[0].Label != tc.want || ps[0].Score < 0.9 || ps[0].Score < ps[1].Score {
				t.Errorf("Classify = %+v, want top-1 %q with score > 0.9", ps, tc.want)
			}
		})
	}
	wg.Wait()

	_, err = c.Classify([]byte("not an image"), 1)
	if !errors.Is(err, preprocess.ErrUnsupportedFormat) {
		t.Errorf("Classify(text) = %v, want ErrUnsupportedFormat", err)
	}
}

func TestClassifierRejectsMismatchedGraph(t *testing.T) {
	onnxrttest.Init(t)
	m := modeltest.Colour(t, modeltest.Options{})
	m.Metadata.Input.Name = "pixels"
	_, err := onnxrt.NewClassifier(m, onnxrt.Options{})
	if err == nil || !strings.Contains(err.Error(), `no input "pixels"`) {
		t.Errorf("NewClassifier = %v, want an error naming the missing input", err)
	}

	// A graph whose output has 3 logits cannot serve 4 labels.
	m = modeltest.Colour(t, modeltest.Options{})
	m.Metadata.Labels = append(m.Metadata.Labels, "purple")
	m.Metadata.Output.Shape = []int64{-1, 4}
	_, err = onnxrt.NewClassifier(m, onnxrt.Options{})
	if err == nil || !strings.Contains(err.Error(), "output") {
		t.Errorf("NewClassifier = %v, want an output shape error", err)
	}
}
