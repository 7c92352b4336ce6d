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
		Steps:     []StepPoint{{Epoch: 0.5, TrainLoss: 1.2, TrainAcc: 0.4, LearningRate: 2e-3}, {Epoch: 1, TrainLoss: 1, TrainAcc: 0.5, LearningRate: 1e-3}, {Epoch: 1.5, TrainLoss: 0.7}, {Epoch: 2, TrainLoss: 0.5, TrainAcc: 0.8}},
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

// The training curve follows the step samples; validation stays per epoch.
func TestCurvesUseSteps(t *testing.T) {
	in := Input{
		History: []Point{{Epoch: 1, TrainLoss: 1, ValLoss: 0.8}, {Epoch: 2, TrainLoss: 0.5, ValLoss: 0.4}},
		Steps:   []StepPoint{{Epoch: 0.5, TrainLoss: 1.2}, {Epoch: 1, TrainLoss: 1}, {Epoch: 1.5, TrainLoss: 0.7}, {Epoch: 2, TrainLoss: 0.5}},
	}
	loss := curves(in)[0]
	if got := loss.s[0].X; !slices.Equal(got, []float64{0.5, 1, 1.5, 2}) {
		t.Errorf("train x = %v, want the step samples' epochs", got)
	}
	if got := loss.s[1].X; !slices.Equal(got, []float64{1, 2}) {
		t.Errorf("validation x = %v, want one point per epoch", got)
	}
	in.Steps = nil
	if got := curves(in)[0].s[0].X; !slices.Equal(got, []float64{1, 2}) {
		t.Errorf("without steps, train x = %v, want per epoch", got)
	}
}

// Class names, not indices, label the confusion matrix: a longer name
// makes room above the columns for it.
func TestConfusionPlotNames(t *testing.T) {
	m := [][]int{{3, 1}, {0, 4}}
	short := ConfusionPlot(m, []string{"a", "b"}).Bounds().Dy()
	long := ConfusionPlot(m, []string{"apple_red_delicious", "b"}).Bounds().Dy()
	if long <= short {
		t.Errorf("height with a long class name %d, with short ones %d", long, short)
	}
}
