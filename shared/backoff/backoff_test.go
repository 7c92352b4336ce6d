package backoff

import (
	"testing"
	"time"
)

func TestDoubling(t *testing.T) {
	for _, c := range []struct {
		failures int
		want     time.Duration
	}{{0, time.Second}, {1, time.Second}, {2, 2 * time.Second}, {3, 4 * time.Second}, {5, 10 * time.Second}, {60, 10 * time.Second}} {
		if got := Doubling(time.Second, 10*time.Second, c.failures); got != c.want {
			t.Errorf("Doubling(1s, 10s, %d) = %v, want %v", c.failures, got, c.want)
		}
	}
}
