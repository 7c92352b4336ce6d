package blob

import (
	"fmt"
	"io"
)

// ReadCapped reads r to its end, refusing more than maxBytes (<= 0: no
// cap) with ErrTooLarge: at once when the declared size (an object's size,
// a Content-Length; <= 0 when unknown) is over the cap, and otherwise
// without reading more than one byte past it, since a declared size is not
// to be trusted. The buffer is sized from the declared size, so a 3 MB
// photo costs one 3 MB allocation rather than io.ReadAll's doubling series.
// Read errors are returned as they are, for the caller to wrap.
func ReadCapped(r io.Reader, size, maxBytes int64) ([]byte, error) {
	if maxBytes > 0 && size > maxBytes {
		return nil, fmt.Errorf("%d bytes, limit %d: %w", size, maxBytes, ErrTooLarge)
	}
	if maxBytes > 0 {
		r = io.LimitReader(r, maxBytes+1)
	}
	var b []byte
	if size > 0 {
		// One spare byte so that reading EOF does not grow the buffer.
		b = make([]byte, 0, size+1)
	} else {
		b = make([]byte, 0, 512)
	}
	for {
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			return b, err
		}
		if len(b) == cap(b) { // the size was short or unknown: grow as io.ReadAll does
			b = append(b, 0)[:len(b)]
		}
	}
	if maxBytes > 0 && int64(len(b)) > maxBytes {
		return nil, fmt.Errorf("more than %d bytes: %w", maxBytes, ErrTooLarge)
	}
	return b, nil
}
