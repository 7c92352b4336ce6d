// Package errlist joins several errors into one whose message stays on one
// line. errors.Join separates its messages with newlines, which break a log
// line, an HTTP JSON error and a .error.json record apart, where the
// project keeps every error on one line.
package errlist

import "strings"

// Join is errors.Join with the messages separated by "; ": errors.Is and
// errors.As see every error, nil errors are dropped, and Join of no
// non-nil error is nil.
func Join(errs ...error) error {
	var l list
	for _, err := range errs {
		if err != nil {
			l = append(l, err)
		}
	}
	if len(l) == 0 {
		return nil
	}
	return l
}

type list []error

func (l list) Error() string {
	msgs := make([]string, len(l))
	for i, err := range l {
		msgs[i] = err.Error()
	}
	return strings.Join(msgs, "; ")
}

func (l list) Unwrap() []error { return l }
