package blob

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"cloud.google.com/go/storage"
	"google.golang.org/api/googleapi"
)

// Messages reach HTTP JSON and .error.json files: one line, yet errors.Is
// matches both the sentinel and the driver's own error.
func TestWrapOneLine(t *testing.T) {
	g := NewGCS(nil, "b", "p")
	multi := &googleapi.Error{Code: http.StatusForbidden, Message: "denied",
		Errors: []googleapi.ErrorItem{{Reason: "forbidden", Message: "a"}, {Reason: "x", Message: "b"}}}
	for _, tc := range []struct {
		err, kind error
	}{
		{storage.ErrObjectNotExist, ErrNotFound},
		{storage.ErrBucketNotExist, ErrNotFound},
		{&googleapi.Error{Code: http.StatusPreconditionFailed, Message: "conditionNotMet"}, ErrPrecondition},
		{multi, ErrForbidden},
		{&googleapi.Error{Code: http.StatusUnauthorized}, ErrForbidden},
		{&googleapi.Error{Code: http.StatusServiceUnavailable, Message: "busy\nMore details:\nx"}, nil},
	} {
		err := g.wrap("reading", "k", tc.err)
		if msg := err.Error(); strings.ContainsAny(msg, "\r\n") || !strings.HasPrefix(msg, "reading gs://b/p/k: ") {
			t.Errorf("wrap(%v) = %q: want one line naming the step and object", tc.err, msg)
		}
		if !errors.Is(err, tc.err) || (tc.kind != nil && !errors.Is(err, tc.kind)) {
			t.Errorf("wrap(%v) = %v: does not match %v and %v", tc.err, err, tc.err, tc.kind)
		}
	}
	if IsTransient(g.wrap("reading", "k", multi)) {
		t.Error("a forbidden read counted as transient")
	}
	if !IsTransient(g.wrap("reading", "k", &googleapi.Error{Code: 503})) {
		t.Error("a 503 counted as permanent")
	}
}
