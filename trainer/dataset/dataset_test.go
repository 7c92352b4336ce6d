package dataset

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/orchard-mlops/orchard/shared/preprocess"
	"github.com/orchard-mlops/orchard/trainer/config"
	"github.com/orchard-mlops/orchard/trainer/gendata"
)

func entries(classes map[string]int) []Entry {
	var es []Entry
	for c, n := range classes {
		for i := range n {
			es = append(es, Entry{Path: fmt.Sprintf("%s/%04d.jpg", c, i), Class: c})
		}
	}
	return es
}

func splitOf(es []Entry) map[string]string {
	m := map[string]string{}
	for _, e := range es {
		m[e.Path] = e.Split
	}
	return m
}

func TestStratifiedSplit(t *testing.T) {
	tests := []struct {
		name     string
		classes  map[string]int
		fraction float64
		wantVal  map[string]int
	}{
		{"balanced", map[string]int{"a": 100, "b b": 100}, 0.15, map[string]int{"a": 15, "b b": 15}},
		{"unbalanced", map[string]int{"a": 200, "b": 20, "c": 7}, 0.2, map[string]int{"a": 40, "b": 4, "c": 1}},
		{"tiny class keeps one in each", map[string]int{"a": 2, "b": 3}, 0.1, map[string]int{"a": 1, "b": 1}},
		{"single image stays in train", map[string]int{"a": 1, "b": 10}, 0.5, map[string]int{"a": 0, "b": 5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			es := entries(tt.classes)
			StratifiedSplit(es, tt.fraction, 42)
			got := map[string]int{}
			for _, e := range es {
				if e.Split == SplitValidation {
					got[e.Class]++
				} else if e.Split != SplitTrain {
					t.Fatalf("%s: split %q", e.Path, e.Split)
				}
			}
			for c, want := range tt.wantVal {
				if got[c] != want {
					t.Errorf("class %s: %d validation, want %d", c, got[c], want)
				}
			}
		})
	}
}

func TestStratifiedSplitDeterministic(t *testing.T) {
	a := entries(map[string]int{"x": 50, "y": 60})
	StratifiedSplit(a, 0.2, 7)
	// Same seed, shuffled listing order: same assignment.
	b := entries(map[string]int{"x": 50, "y": 60})
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(b), func(i, j int) { b[i], b[j] = b[j], b[i] })
	StratifiedSplit(b, 0.2, 7)
	sa, sb := splitOf(a), splitOf(b)
	for k, v := range sa {
		if sb[k] != v {
			t.Fatalf("%s: %s vs %s", k, v, sb[k])
		}
	}
	// Another seed: another assignment.
	c := entries(map[string]int{"x": 50, "y": 60})
	StratifiedSplit(c, 0.2, 8)
	diff := 0
	for k, v := range splitOf(c) {
		if sa[k] != v {
			diff++
		}
	}
	if diff == 0 {
		t.Fatal("seed does not change the split")
	}
	// Adding one file moves at most that file in or out of validation
	// plus one other of its class.
	d := entries(map[string]int{"x": 51, "y": 60})
	StratifiedSplit(d, 0.2, 7)
	moved := 0
	for k, v := range sa {
		if splitOf(d)[k] != v {
			moved++
		}
	}
	if moved > 1 {
		t.Fatalf("adding a file moved %d others", moved)
	}
}

func TestManifestDigest(t *testing.T) {
	base := func() *Manifest {
		return &Manifest{URI: "file:///a", Labels: []string{"a", "b"}, Entries: []Entry{
			{Path: "a/1.jpg", Size: 10, SHA256: "aa", Class: "a", Split: SplitTrain},
			{Path: "b/2.jpg", Size: 20, SHA256: "bb", Class: "b", Split: SplitValidation},
		}}
	}
	d0 := base().Digest()
	if d0 != base().Digest() {
		t.Fatal("digest not stable")
	}
	// A pinned value catches accidental changes of the canonical form,
	// which would silently give every dataset a new version.
	const want = "sha256:a19cbf9b5f712628a3ba466737e104315310b77fe6d211de567b0af2c7f8985e"
	if d0 != want {
		t.Fatalf("digest %s, want %s: the canonical form changed (every dataset gets a new version)", d0, want)
	}
	m := base()
	m.URI = "gs://elsewhere/x"
	slices.Reverse(m.Entries)
	if m.Digest() != d0 {
		t.Fatal("digest depends on URI or entry order")
	}
	for name, mutate := range map[string]func(*Manifest){
		"content": func(m *Manifest) { m.Entries[0].SHA256 = "ab" },
		"size":    func(m *Manifest) { m.Entries[0].Size++ },
		"class":   func(m *Manifest) { m.Entries[0].Class = "b" },
		"split":   func(m *Manifest) { m.Entries[0].Split = SplitValidation },
		"path":    func(m *Manifest) { m.Entries[0].Path = "a/3.jpg" },
		"labels":  func(m *Manifest) { m.Labels = []string{"a", "b", "c"} },
		"added":   func(m *Manifest) { m.Entries = append(m.Entries, Entry{Path: "a/9.jpg"}) },
	} {
		m := base()
		mutate(m)
		if m.Digest() == d0 {
			t.Errorf("%s change keeps the digest", name)
		}
	}
}

func TestClassify(t *testing.T) {
	flat := Layout{}
	folders := Layout{Folders: true, TrainDir: "Training", TestDir: "Test"}
	tests := []struct {
		l          Layout
		key        string
		class, spl string
		ok         bool
	}{
		{flat, "Apple Red 1/x.jpg", "Apple Red 1", "", true},
		{flat, "Apple/sub/x.jpg", "Apple", "", true},
		{flat, "x.jpg", "", "", false},
		{flat, ".hidden/x.jpg", "", "", false},
		{folders, "Training/Pear 2/x.jpg", "Pear 2", SplitTrain, true},
		{folders, "Test/Pear 2/x.jpg", "Pear 2", SplitValidation, true},
		{folders, "Other/Pear/x.jpg", "", "", false},
		{folders, "Training/x.jpg", "", "", false},
	}
	for _, tt := range tests {
		c, s, ok := tt.l.Classify(tt.key)
		if c != tt.class || s != tt.spl || ok != tt.ok {
			t.Errorf("Classify(%q) = %q %q %v, want %q %q %v", tt.key, c, s, ok, tt.class, tt.spl, tt.ok)
		}
	}
	if !IsImageKey("a/b.JPEG") || IsImageKey("a/.b.jpg") || IsImageKey("a/b.txt") {
		t.Error("IsImageKey")
	}
}

func opts(dir string, size int) Options {
	return Options{URI: dir, Mode: ModeAuto, TrainDir: "Training", TestDir: "Test", ValidationFraction: 0.25,
		Seed: 3, Spec: preprocess.DefaultSpec(size), KeepRaw: true}
}

func TestLoadSkipsCorruptImages(t *testing.T) {
	dir := t.TempDir()
	if _, err := gendata.Generate(dir, gendata.Options{Classes: 2, PerClass: 6, Size: 24}); err != nil {
		t.Fatal(err)
	}
	cls := gendata.ClassName(0)
	// A truncated JPEG, a text file posing as PNG, an empty file, and a
	// non-image file that must be ignored (not counted).
	good, _ := os.ReadFile(filepath.Join(dir, cls, "000.jpg"))
	for name, data := range map[string][]byte{
		"trunc.jpg": good[:len(good)/3], "fake.png": []byte("hello"), "empty.jpg": nil, "notes.txt": []byte("x"),
	} {
		if err := os.WriteFile(filepath.Join(dir, cls, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ds, err := Load(context.Background(), opts(dir, 16))
	if err != nil {
		t.Fatal(err)
	}
	if len(ds.Skipped) != 3 {
		t.Fatalf("skipped %d, want 3: %+v", len(ds.Skipped), ds.Skipped)
	}
	if n := len(ds.Train) + len(ds.Validation); n != 12 {
		t.Fatalf("%d usable images, want 12", n)
	}
	if c := ds.Manifest.Counts(); c[SplitSkipped] != 3 || len(ds.Manifest.Entries) != 15 {
		t.Fatalf("manifest counts %v of %d", c, len(ds.Manifest.Entries))
	}
	for _, e := range ds.Skipped {
		if e.Reason == "" {
			t.Errorf("%s: no reason", e.Path)
		}
	}
	// Validation tensors are bit-identical to the serving path.
	for _, s := range ds.Validation {
		b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(s.Path)))
		if err != nil {
			t.Fatal(err)
		}
		want := make([]float32, ds.Spec.TensorLen())
		if err := ds.Spec.Process(b, preprocess.Limits{}, want); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(want, s.Tensor) {
			t.Fatalf("%s: tensor differs from Spec.Process", s.Path)
		}
	}
	// Loading again gives the same manifest digest and split.
	ds2, err := Load(context.Background(), opts(dir, 16))
	if err != nil {
		t.Fatal(err)
	}
	if ds.Manifest.Digest() != ds2.Manifest.Digest() {
		t.Fatal("digest changed between loads")
	}
}

func TestLoadFolderSplit(t *testing.T) {
	dir := t.TempDir()
	for _, sub := range []string{"Training", "Test"} {
		if _, err := gendata.Generate(filepath.Join(dir, sub), gendata.Options{Classes: 2, PerClass: 3, Size: 16}); err != nil {
			t.Fatal(err)
		}
	}
	ds, err := Load(context.Background(), opts(dir, 16))
	if err != nil {
		t.Fatal(err)
	}
	if len(ds.Train) != 6 || len(ds.Validation) != 6 || len(ds.Labels) != 2 {
		t.Fatalf("train %d validation %d labels %v", len(ds.Train), len(ds.Validation), ds.Labels)
	}
	o := opts(dir, 16)
	o.Mode = ModeStratified // ignore the given split: classes become Training and Test
	ds, err = Load(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ds.Labels, []string{"Test", "Training"}) {
		t.Fatalf("labels %v", ds.Labels)
	}
}

func TestLoadErrors(t *testing.T) {
	if _, err := Load(context.Background(), opts(filepath.Join(t.TempDir(), "missing"), 16)); err == nil {
		t.Fatal("missing directory accepted")
	}
	dir := t.TempDir()
	if _, err := gendata.Generate(dir, gendata.Options{Classes: 2, PerClass: 2, Size: 16}); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, gendata.ClassName(1))); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(context.Background(), opts(dir, 16)); err == nil {
		t.Fatal("one class accepted")
	}
}

func TestAugmentDeterministic(t *testing.T) {
	dir := t.TempDir()
	if _, err := gendata.Generate(dir, gendata.Options{Classes: 2, PerClass: 4, Size: 32}); err != nil {
		t.Fatal(err)
	}
	ds, err := Load(context.Background(), opts(dir, 16))
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default().Augment
	cfg.Prob = 1
	cfg.BlurProb, cfg.NoiseProb, cfg.BackgroundProb = 1, 1, 1
	a := &Augmenter{Cfg: cfg, Spec: ds.Spec}
	x1 := make([]float32, ds.Spec.TensorLen())
	x2 := make([]float32, ds.Spec.TensorLen())
	a.Apply(&ds.Train[0], x1, SampleRNG(1, 2, 3))
	a.Apply(&ds.Train[0], x2, SampleRNG(1, 2, 3))
	if !slices.Equal(x1, x2) {
		t.Fatal("same RNG key, different augmentation")
	}
	a.Apply(&ds.Train[0], x2, SampleRNG(1, 3, 3))
	if slices.Equal(x1, x2) {
		t.Fatal("different epoch, same augmentation")
	}
	for _, v := range x1 {
		if v < -1.0001 || v > 1.0001 {
			t.Fatalf("value %v outside the normalised range", v)
		}
	}
	cfg.Enabled = false
	a.Cfg = cfg
	a.Apply(&ds.Train[0], x2, SampleRNG(1, 2, 3))
	if !slices.Equal(x2, ds.Train[0].Tensor) {
		t.Fatal("disabled augmentation changed the tensor")
	}
}
