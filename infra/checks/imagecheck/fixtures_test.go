//go:build imagecheck

// Package imagecheck writes the fixtures infra/checks/images.sh mounts into
// the functions image: the known-answer colour model from shared/model/modeltest
// and images whose labels it knows. The build tag keeps it out of `go test ./...`.
//
//	ORCHARD_IMAGECHECK_DIR=/tmp/x go test -tags imagecheck -run TestWriteFixtures ./infra/checks/imagecheck
package imagecheck

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/shared/model/modeltest"
)

func TestWriteFixtures(t *testing.T) {
	dir := os.Getenv("ORCHARD_IMAGECHECK_DIR")
	if dir == "" {
		t.Skip("ORCHARD_IMAGECHECK_DIR is not set")
	}
	st, err := blob.NewDir(filepath.Join(dir, "model"))
	if err != nil {
		t.Fatal(err)
	}
	modeltest.Save(t, modeltest.Colour(t, modeltest.Options{Name: "colours", Version: "imagecheck"}), st)
	for name, img := range map[string][]byte{
		"red.png":   modeltest.PNG(t, modeltest.Solid(modeltest.Red, 64, 64)),
		"blue.jpg":  modeltest.JPEG(t, modeltest.Solid(modeltest.Blue, 48, 48)),
		"green.png": modeltest.PNG(t, modeltest.Solid(modeltest.Green, 40, 40)),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), img, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
