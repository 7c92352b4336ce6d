package logging

import (
	"context"
	"net/http"
	"strconv"
	"strings"
)

// Trace identifies the request trace a log entry belongs to.
type Trace struct {
	// TraceID is 32 lowercase hex digits.
	TraceID string
	// SpanID is 16 lowercase hex digits, or empty. Cloud Logging wants hex
	// here even though X-Cloud-Trace-Context carries the span ID in decimal.
	SpanID string
	// Sampled reports whether the caller asked for the trace to be recorded.
	Sampled bool
}

type traceKey struct{}

// ContextWithTrace returns a context carrying tr, which the handler adds to
// entries logged with that context.
func ContextWithTrace(ctx context.Context, tr Trace) context.Context {
	return context.WithValue(ctx, traceKey{}, tr)
}

// TraceFromContext returns the trace stored by ContextWithTrace or WithTrace.
func TraceFromContext(ctx context.Context) (Trace, bool) {
	if ctx == nil {
		return Trace{}, false
	}
	tr, ok := ctx.Value(traceKey{}).(Trace)
	return tr, ok
}

// WithTrace returns ctx carrying the trace in header, which may be the value
// of a W3C traceparent header ("00-TRACEID-SPANID-01") or of Google's
// X-Cloud-Trace-Context ("TRACEID/SPANID;o=1"). An empty or malformed header
// returns ctx unchanged: a bad header from a client must not break logging.
func WithTrace(ctx context.Context, header string) context.Context {
	tr, ok := ParseTrace(header)
	if !ok {
		return ctx
	}
	return ContextWithTrace(ctx, tr)
}

// ParseTrace parses a traceparent or X-Cloud-Trace-Context header value.
func ParseTrace(header string) (Trace, bool) {
	header = strings.TrimSpace(header)
	if tr, ok := parseTraceparent(header); ok {
		return tr, true
	}
	return parseCloudTraceContext(header)
}

// parseTraceparent parses https://www.w3.org/TR/trace-context/#traceparent-header.
func parseTraceparent(h string) (Trace, bool) {
	// version "-" trace-id "-" parent-id "-" flags: 2+1+32+1+16+1+2 = 55.
	if len(h) < 55 || h[2] != '-' || h[35] != '-' || h[52] != '-' {
		return Trace{}, false
	}
	version, traceID, spanID, flags := h[0:2], h[3:35], h[36:52], h[53:55]
	if !isHex(version) || version == "ff" {
		return Trace{}, false
	}
	// Version 00 is exactly 55 characters; later versions may append fields,
	// which a version-00 parser must ignore.
	if len(h) > 55 && (version == "00" || h[55] != '-') {
		return Trace{}, false
	}
	if !isHex(traceID) || isZero(traceID) || !isHex(spanID) || isZero(spanID) || !isHex(flags) {
		return Trace{}, false
	}
	f, _ := strconv.ParseUint(flags, 16, 8)
	return Trace{TraceID: traceID, SpanID: spanID, Sampled: f&1 == 1}, true
}

// parseCloudTraceContext parses "TRACE_ID[/SPAN_ID][;o=OPTIONS]", where
// SPAN_ID is a decimal uint64 and o=1 means sampled.
func parseCloudTraceContext(h string) (Trace, bool) {
	rest, opts, _ := strings.Cut(h, ";")
	traceID, span, hasSpan := strings.Cut(rest, "/")
	traceID = strings.ToLower(traceID)
	if len(traceID) != 32 || !isHex(traceID) || isZero(traceID) {
		return Trace{}, false
	}
	tr := Trace{TraceID: traceID}
	if hasSpan && span != "" {
		n, err := strconv.ParseUint(span, 10, 64)
		if err != nil {
			return Trace{}, false
		}
		if n != 0 {
			s := strconv.FormatUint(n, 16)
			tr.SpanID = strings.Repeat("0", 16-len(s)) + s
		}
	}
	tr.Sampled = strings.TrimSpace(opts) == "o=1"
	return tr, true
}

// isHex reports whether s is non-empty lowercase hex.
func isHex(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func isZero(s string) bool { return strings.Trim(s, "0") == "" }

// HTTPMiddleware puts the request's trace into its context, so handlers that
// log with r.Context() produce entries grouped under the request in Cloud
// Logging. It prefers traceparent and falls back to X-Cloud-Trace-Context;
// Google's front end sends the same trace ID in both.
func HTTPMiddleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, name := range []string{"traceparent", "X-Cloud-Trace-Context"} {
			if tr, ok := ParseTrace(r.Header.Get(name)); ok {
				r = r.WithContext(ContextWithTrace(r.Context(), tr))
				break
			}
		}
		next.ServeHTTP(w, r)
	})
}
