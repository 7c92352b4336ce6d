//go:build !cgo

package preprocess

import (
	"errors"
	"strings"
	"testing"
)

// A cgo-free build refuses JPEGs as unsupported, naming the cgo build,
// instead of decoding them differently from serving. Run by
// infra/checks/structure.sh (CGO_ENABLED=0 go test -run NoCgo).
func TestNoCgoRefusesJPEG(t *testing.T) {
	jpeg := []byte{0xff, 0xd8, 0xff, 0xe0, 0, 0x10, 'J', 'F', 'I', 'F', 0}
	_, err := Decode(jpeg, Limits{})
	if !errors.Is(err, ErrUnsupportedFormat) || errors.Is(err, ErrCorrupt) {
		t.Fatalf("Decode(JPEG) = %v, want only ErrUnsupportedFormat", err)
	}
	if !strings.Contains(err.Error(), "cgo build (libjpeg-turbo)") {
		t.Errorf("error %q does not name the cgo build", err)
	}
}
