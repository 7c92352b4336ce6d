package errlist

import (
	"errors"
	"fmt"
	"io/fs"
	"testing"
)

func TestJoin(t *testing.T) {
	if err := Join(); err != nil {
		t.Errorf("Join() = %v", err)
	}
	if err := Join(nil, nil); err != nil {
		t.Errorf("Join(nil, nil) = %v", err)
	}
	a, b := errors.New("a is wrong"), fmt.Errorf("b: %w", fs.ErrNotExist)
	err := Join(a, nil, Join(b, errors.New("c is wrong")))
	if got, want := err.Error(), "a is wrong; b: file does not exist; c is wrong"; got != want {
		t.Errorf("message %q, want %q", got, want)
	}
	if !errors.Is(err, a) || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("errors.Is does not see the joined errors of %v", err)
	}
	var pe *fs.PathError
	if !errors.As(Join(a, &fs.PathError{Op: "open", Path: "x", Err: fs.ErrPermission}), &pe) || pe.Path != "x" {
		t.Error("errors.As does not see a joined *fs.PathError")
	}
}
