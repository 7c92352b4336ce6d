package gendata

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestGenerateDeterministic(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	opt := Options{Classes: 3, PerClass: 5, Size: 24, Seed: 9}
	names, err := Generate(a, opt)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Generate(b, opt); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, n := range names {
		if seen[n] {
			t.Fatalf("duplicate class %q", n)
		}
		seen[n] = true
		for _, f := range []string{"000.jpg", "004.png"} {
			x, err1 := os.ReadFile(filepath.Join(a, n, f))
			y, err2 := os.ReadFile(filepath.Join(b, n, f))
			if err1 != nil || err2 != nil || !bytes.Equal(x, y) {
				t.Fatalf("%s/%s differs between runs (%v %v)", n, f, err1, err2)
			}
		}
	}
	if _, err := Generate(t.TempDir(), Options{Classes: 1}); err == nil {
		t.Fatal("one class accepted")
	}
	// All 64 shape/colour combinations are distinct class names.
	all := map[string]bool{}
	for i := range len(Shapes) * len(Colours) {
		all[ClassName(i)] = true
	}
	if len(all) != len(Shapes)*len(Colours) {
		t.Fatalf("%d distinct names", len(all))
	}
}
