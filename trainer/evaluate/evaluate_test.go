package evaluate

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"math/rand/v2"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/orchard-mlops/orchard/shared/monitor"
	"github.com/orchard-mlops/orchard/shared/preprocess"
	"github.com/orchard-mlops/orchard/trainer/dataset"
)

// TestCorruptedTensorPadsAsServing: with no corruption, the corruption
// path gives exactly the tensor serving computes from the same pixels,
// under every pad mode. (It once padded with white whatever the spec said,
// so a border-median model was measured on inputs it never serves.)
func TestCorruptedTensorPadsAsServing(t *testing.T) {
	img := image.NewRGBA(image.Rect(0, 0, 90, 50))
	for y := range 50 {
		for x := range 90 {
			img.Set(x, y, color.RGBA{uint8(20 + x/3), uint8(40 + y/2), 60, 255})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	for _, pad := range []string{"", preprocess.PadBorderMedian} {
		spec := preprocess.DefaultSpec(16)
		spec.Pad = pad
		want := make([]float32, spec.TensorLen())
		if err := spec.Process(buf.Bytes(), preprocess.Limits{}, want); err != nil {
			t.Fatal(err)
		}
		d, err := preprocess.Decode(buf.Bytes(), preprocess.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		got := make([]float32, spec.TensorLen())
		if _, err := corruptedTensor(spec, d, shrink(d.Image, WorkSize), 0, preprocess.Limits{}, got); err != nil {
			t.Fatal(err)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("pad %q: element %d is %v, serving gives %v", pad, i, got[i], want[i])
			}
		}
	}
}

// TestCorruptionsChangeThePicture: every kind returns an opaque picture
// that differs from its input, the same one for the same draw.
func TestCorruptionsChangeThePicture(t *testing.T) {
	src := image.NewRGBA(image.Rect(0, 0, 120, 90))
	for y := range 90 {
		for x := range 120 {
			c := color.RGBA{255, 255, 255, 255}
			if (x-60)*(x-60)+(y-45)*(y-45) < 35*35 {
				c = color.RGBA{uint8(150 + x/2), uint8(60 + y), 40, 255}
			}
			src.SetRGBA(x, y, c)
		}
	}
	seen := map[string]bool{}
	for _, c := range Corruptions {
		if seen[c.Name] {
			t.Errorf("corruption %q listed twice", c.Name)
		}
		seen[c.Name] = true
		run := func() *image.RGBA {
			return c.Apply(cloneRGBA(src), rand.New(rand.NewPCG(7, 9)))
		}
		a, b := run(), run()
		if a.Bounds().Empty() {
			t.Errorf("%s: empty picture", c.Name)
			continue
		}
		if !bytes.Equal(a.Pix, b.Pix) {
			t.Errorf("%s: two runs with the same draw differ", c.Name)
		}
		if c.JPEG == 0 && a.Bounds() == src.Bounds() && bytes.Equal(a.Pix, src.Pix) {
			t.Errorf("%s: picture unchanged", c.Name)
		}
	}
	if len(Corruptions) < 22 {
		t.Errorf("%d corruption kinds, want the 10 old and 12 realistic ones", len(Corruptions))
	}
}

// TestConfused: mistakes are tallied per (true, predicted) pair, the most
// frequent first with ties by name, at most MaxConfused; correct and
// unreadable images do not count.
func TestConfused(t *testing.T) {
	var use []dataset.Entry
	var ok, correct []bool
	var seen []monitor.Prediction
	add := func(class, label string, n int, good bool) {
		for range n {
			use = append(use, dataset.Entry{Class: class})
			ok, correct = append(ok, good), append(correct, class == label)
			seen = append(seen, monitor.Prediction{Label: label})
		}
	}
	add("plum", "onion", 3, true)
	add("peach", "apple", 2, true)
	add("papaya", "apple", 2, true)
	add("cherry", "grape", 1, true)
	add("plum", "plum", 5, true)
	add("cherry", "onion", 9, false) // unreadable
	got := confused(use, ok, correct, seen)
	want := []Confusion{{"plum", "onion", 3}, {"papaya", "apple", 2}, {"peach", "apple", 2}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("confused (-want +got):\n%s", diff)
	}
	if got, want := (Result{Confused: got}).ConfusedText(), "plum -> onion: 3, papaya -> apple: 2, peach -> apple: 2"; got != want {
		t.Errorf("ConfusedText = %q, want %q", got, want)
	}
	if got := confused(use[8:13], ok[8:13], correct[8:13], seen[8:13]); len(got) != 0 {
		t.Errorf("confused with no mistakes = %v, want none", got)
	}
}
