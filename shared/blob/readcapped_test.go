package blob_test

import (
	"bytes"
	"errors"
	"testing"
	"testing/iotest"

	"github.com/orchard-mlops/orchard/shared/blob"
)

func TestReadCapped(t *testing.T) {
	data := bytes.Repeat([]byte("orchard "), 1000) // 8000 bytes
	n := int64(len(data))
	for _, tc := range []struct {
		name      string
		size, max int64
		tooLarge  bool
	}{
		{"declared size, no cap", n, 0, false},
		{"unknown size, no cap", -1, 0, false},
		{"size understated", 10, 0, false},
		{"size overstated", 2 * n, 0, false},
		{"exactly at the cap", n, n, false},
		{"declared over the cap", n + 1, n, true},
		{"declared under the cap but longer", 10, n - 1, true},
		{"unknown size, over the cap", -1, n - 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// OneByteReader: short reads must not lose or repeat bytes.
			got, err := blob.ReadCapped(iotest.OneByteReader(bytes.NewReader(data)), tc.size, tc.max)
			if tc.tooLarge {
				if !errors.Is(err, blob.ErrTooLarge) || got != nil {
					t.Fatalf("got %d bytes, err %v; want ErrTooLarge", len(got), err)
				}
				return
			}
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("got %d bytes (equal %v), err %v", len(got), bytes.Equal(got, data), err)
			}
		})
	}
	// A read error is returned as it is.
	if _, err := blob.ReadCapped(iotest.ErrReader(iotest.ErrTimeout), 10, 0); !errors.Is(err, iotest.ErrTimeout) {
		t.Errorf("read error = %v", err)
	}
}
