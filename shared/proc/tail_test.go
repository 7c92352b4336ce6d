package proc_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/orchard-mlops/orchard/shared/proc"
)

func TestTailIsBounded(t *testing.T) {
	for _, limit := range []int{0, 1 << 10} {
		b := proc.NewTail(limit)
		want := limit
		if want == 0 {
			want = proc.DefaultTailLimit
		}
		// Enough to pass twice the default limit, where trimming starts.
		for i := range 20000 {
			fmt.Fprintf(b, "line %d\n", i)
		}
		if n := len(b.String()); n > want {
			t.Errorf("limit %d: holds %d bytes", limit, n)
		}
		if got := b.Lines(2); got != "line 19998\nline 19999" {
			t.Errorf("limit %d: Lines(2) = %q", limit, got)
		}
		if !b.Contains("line 19999\n") || b.Contains("line 1\n") {
			t.Errorf("limit %d: Contains sees dropped output or misses the last line", limit)
		}
	}
	var zero proc.Tail
	fmt.Fprint(&zero, strings.Repeat("x", 3*proc.DefaultTailLimit))
	if n := len(zero.String()); n != proc.DefaultTailLimit {
		t.Errorf("zero Tail holds %d bytes, want %d", n, proc.DefaultTailLimit)
	}
}

func TestLastLines(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"", 3, ""},
		{"a\nb\nc\n", 2, "b\nc"},
		{"a\nb\nc", 5, "a\nb\nc"},
		{"a\n\n\n", 1, "a"},
	} {
		if got := proc.LastLines(tc.in, tc.n); got != tc.want {
			t.Errorf("LastLines(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}
