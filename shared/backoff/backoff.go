// Package backoff holds the one doubling backoff Orchard retries with (the
// lazy model loader, the local Eventarc bridge's redeliveries). It is pure
// Go and imports nothing of Orchard, so light and heavy packages can share
// it.
package backoff

import "time"

// Doubling is the wait after the failures-th consecutive failure: initial
// after the first, doubled after each further one, never more than max.
func Doubling(initial, max time.Duration, failures int) time.Duration {
	d := initial
	for i := 1; i < failures && d < max; i++ {
		d *= 2
	}
	return min(d, max)
}
