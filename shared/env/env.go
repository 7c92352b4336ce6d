// Package env reads configuration from environment variables in one
// dialect, shared by every Orchard binary and function: values are trimmed,
// an unset or empty variable keeps the default, and a malformed value is an
// error (never silently defaulted). A Reader collects every error, so a
// misconfigured deployment hears of all its mistakes at once, in one line.
package env

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Reader reads variables through getenv (os.Getenv in production).
type Reader struct {
	getenv func(string) string
	errs   []string
}

// New returns a Reader over getenv.
func New(getenv func(string) string) *Reader { return &Reader{getenv: getenv} }

// String is the trimmed value of key, or def when it is unset or blank.
func (r *Reader) String(key, def string) string {
	if s := strings.TrimSpace(r.getenv(key)); s != "" {
		return s
	}
	return def
}

// List splits key on commas, dropping blanks; nil when unset.
func (r *Reader) List(key string) []string {
	var out []string
	for _, f := range strings.Split(r.getenv(key), ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// Int is key as a base-10 integer of at least minimum, or def when unset.
func (r *Reader) Int(key string, def, minimum int64) int64 {
	s := r.String(key, "")
	if s == "" {
		return def
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < minimum {
		r.Failf("%s=%q: want an integer >= %d", key, s, minimum)
		return def
	}
	return v
}

// Bool is key as strconv.ParseBool reads it, or def when unset.
func (r *Reader) Bool(key string, def bool) bool {
	s := r.String(key, "")
	if s == "" {
		return def
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		r.Failf("%s=%q: want true or false", key, s)
		return def
	}
	return b
}

// Duration is key as a Go duration ("30s", "2h") or a whole number of
// unit ("30" with unit time.Second), at least minimum; def when unset.
func (r *Reader) Duration(key string, def, unit, minimum time.Duration) time.Duration {
	s := r.String(key, "")
	if s == "" {
		return def
	}
	d, err := time.ParseDuration(s)
	if n, nerr := strconv.ParseInt(s, 10, 64); nerr == nil {
		d, err = time.Duration(n)*unit, nil
	}
	if err != nil || d < minimum {
		r.Failf("%s=%q: want a whole number of %s or a Go duration such as 30s, at least %v", key, s, unitName(unit), minimum)
		return def
	}
	return d
}

func unitName(unit time.Duration) string {
	switch unit {
	case time.Millisecond:
		return "milliseconds"
	case time.Second:
		return "seconds"
	}
	return unit.String() + "s"
}

// Failf records an error of the caller's own checks.
func (r *Reader) Failf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

// Err is every error recorded, on one line, or nil.
func (r *Reader) Err() error {
	if len(r.errs) == 0 {
		return nil
	}
	return errors.New(strings.Join(r.errs, "; "))
}
