// Package onnxrt is the serving side of a model: it runs the graph with
// onnxruntime (cgo, onnxruntime_go). It finds and initialises the shared
// library once per process and builds the Classifier the functions, the
// trainer's checks and the registry's gate run. onnxruntime_go loads the
// library with dlopen, so it must be a file on disk: ORT_LIB names it,
// otherwise the path `make ort` writes is searched for from the working
// directory and the executable's directory upwards.
//
// The model format itself (model.json, verification.json, checksums) is
// pure Go in shared/model, so packages that only read or move models do not
// link onnxruntime.
package onnxrt

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	onnx "github.com/yalue/onnxruntime_go"
)

// RelPath is where `make ort` puts the library, relative to the repo root.
const RelPath = ".cache/onnxruntime/libonnxruntime.so.1"

// ErrNotFound means no library file was found; the message says how to get one.
var ErrNotFound = errors.New("onnxruntime library not found: set ORT_LIB to libonnxruntime.so.1 or run `make ort`")

var (
	once    sync.Once
	initErr error
	libPath string
)

// Init initialises onnxruntime once; later calls return the first result.
func Init() error {
	once.Do(func() {
		libPath, initErr = Find()
		if initErr != nil {
			return
		}
		onnx.SetSharedLibraryPath(libPath)
		if err := onnx.InitializeEnvironment(onnx.WithLogLevelError()); err != nil {
			initErr = fmt.Errorf("initialising onnxruntime from %s: %w", libPath, err)
		}
	})
	return initErr
}

// Path is the library Init loaded ("" before a successful Init).
func Path() string {
	if initErr != nil {
		return ""
	}
	return libPath
}

// Find returns the library path without loading it.
func Find() (string, error) {
	if p := os.Getenv("ORT_LIB"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("ORT_LIB=%s: %w (run `make ort` to fetch the library)", p, err)
		}
		return p, nil
	}
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if exe, err := os.Executable(); err == nil {
		starts = append(starts, filepath.Dir(exe))
	}
	for _, dir := range starts {
		for {
			p := filepath.Join(dir, RelPath)
			if _, err := os.Stat(p); err == nil {
				return p, nil
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	return "", ErrNotFound
}
