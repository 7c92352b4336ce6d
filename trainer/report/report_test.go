package report

import (
	"bytes"
	"image"
	"image/png"
	"slices"
	"strings"
	"testing"
)

func TestPerClassAndWorst(t *testing.T) {
	m := [][]int{{8, 2}, {1, 9}}
	s := PerClass([]string{"a", "b"}, m)
	if s[0].Recall != 0.8 || s[0].Precision != 8.0/9 || s[1].Support != 10 {
		t.Fatalf("%+v", s)
	}
	probs := [][]float64{{0.9, 0.1}, {0.2, 0.8}, {0.6, 0.4}, {0.3, 0.7}}
	truth := []int{0, 0, 0, 1}
	// Image 1 is wrong with 0.8, then correct ones by rising confidence.
	if got := Worst(probs, truth, 3); !slices.Equal(got, []int{1, 2, 3}) {
		t.Fatalf("worst %v", got)
	}
}

func TestRender(t *testing.T) {
	in := Input{
		Title:     "t <script>",
		Summary:   [][2]string{{"k", "v"}},
		Labels:    []string{"a", "b b"},
		History:   []Point{{Epoch: 1, TrainLoss: 1, ValLoss: 0.8, TrainAcc: 0.5, ValAcc: 0.6, LearningRate: 1e-3}, {Epoch: 2, TrainLoss: 0.5, ValLoss: 0.4, TrainAcc: 0.8, ValAcc: 0.9}},
		Confusion: [][]int{{3, 1}, {0, 4}},
		Examples:  []Example{{Image: image.NewRGBA(image.Rect(0, 0, 16, 16)), Path: "a/1.jpg", True: "a", Pred: "b b", Confidence: 0.7}},
		Skipped:   [][2]string{{"a/bad.jpg", "corrupt image"}},
	}
	files, err := Render(in)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"index.html", "loss.png", "accuracy.png", "lr.png", "confusion.png", "example_00.png"} {
		if len(files[f]) == 0 {
			t.Fatalf("missing %s", f)
		}
		if strings.HasSuffix(f, ".png") {
			if _, err := png.Decode(bytes.NewReader(files[f])); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
		}
	}
	html := string(files["index.html"])
	if strings.Contains(html, "<script>") || !strings.Contains(html, "a/bad.jpg") || !strings.Contains(html, "b b") {
		t.Fatal("html content")
	}
}
