package functions

import (
	"fmt"
	"log/slog"
	"net/http"
	"time"
	_ "unsafe" // go:linkname

	"github.com/GoogleCloudPlatform/functions-framework-go/funcframework"
	"github.com/cloudevents/sdk-go/v2/types"

	"github.com/orchard-mlops/orchard/functions/predict"
	"github.com/orchard-mlops/orchard/shared/env"
)

// frameworkHandler is the Functions Framework's own router (FUNCTION_TARGET
// at /, or every registered function at /<Name>, with its CloudEvent and
// Pub/Sub push conversions). funcframework only serves it through a bare
// http.ListenAndServe, which cannot bound slow clients; it is reached here
// so that an http.Server with timeouts serves exactly the framework's
// routing. The framework version is pinned in go.mod, and
// TestServerTimeouts breaks if the symbol goes away.
//
//go:linkname frameworkHandler github.com/GoogleCloudPlatform/functions-framework-go/funcframework.initServer
func frameworkHandler() (*http.ServeMux, error)

var _ = funcframework.Start // the linked symbol lives in this package

// Timeouts bound a client's time on the server.
type Timeouts struct {
	ReadHeader time.Duration // HTTP_READ_HEADER_TIMEOUT: request line and headers
	Read       time.Duration // HTTP_READ_TIMEOUT: headers and body
	Write      time.Duration // HTTP_WRITE_TIMEOUT: from the end of the headers to the end of the response
	Idle       time.Duration // HTTP_IDLE_TIMEOUT: between requests on a kept-alive connection
}

// MinUploadRate is the slowest honest client ReadTimeout is sized for by
// default: the largest body (predict.DefaultMaxBodyBytes) at this rate.
const MinUploadRate = 256 << 10 // bytes per second

// DefaultTimeouts: 10 s for headers; the largest allowed body at
// MinUploadRate (128 s for 32 MiB); Cloud Run's default 300 s request
// timeout on top of that for the response; 120 s idle.
func DefaultTimeouts() Timeouts {
	rh := 10 * time.Second
	read := rh + time.Duration(predict.DefaultMaxBodyBytes/MinUploadRate)*time.Second
	return Timeouts{ReadHeader: rh, Read: read, Write: read + 300*time.Second, Idle: 120 * time.Second}
}

// TimeoutsFromEnv reads the HTTP_*_TIMEOUT variables (Go durations such as
// "30s", or whole seconds) over DefaultTimeouts.
func TimeoutsFromEnv(getenv func(string) string) (Timeouts, error) {
	d, e := DefaultTimeouts(), env.New(getenv)
	t := Timeouts{
		ReadHeader: e.Duration("HTTP_READ_HEADER_TIMEOUT", d.ReadHeader, time.Second, time.Nanosecond),
		Read:       e.Duration("HTTP_READ_TIMEOUT", d.Read, time.Second, time.Nanosecond),
		Write:      e.Duration("HTTP_WRITE_TIMEOUT", d.Write, time.Second, time.Nanosecond),
		Idle:       e.Duration("HTTP_IDLE_TIMEOUT", d.Idle, time.Second, time.Nanosecond),
	}
	return t, e.Err()
}

// NewServer returns the server for addr: the framework's routing behind
// AcknowledgeMalformed, with the given timeouts.
func NewServer(addr string, t Timeouts) (*http.Server, error) {
	mux, err := frameworkHandler()
	if err != nil {
		return nil, fmt.Errorf("functions framework: %w", err)
	}
	return &http.Server{
		Addr:              addr,
		Handler:           AcknowledgeMalformed(mux),
		ReadHeaderTimeout: t.ReadHeader,
		ReadTimeout:       t.Read,
		WriteTimeout:      t.Write,
		IdleTimeout:       t.Idle,
	}, nil
}

// AcknowledgeMalformed answers 204 to a binary-mode CloudEvent whose
// required attributes are missing or unparsable, with a log line naming the
// defect. The CloudEvents SDK would answer 500 before any handler runs, and
// Pub/Sub (behind Eventarc) would redeliver it until it is dead-lettered;
// no delivery of it can ever succeed.
func AcknowledgeMalformed(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if defect := ceDefect(r.Header); defect != "" {
			slog.ErrorContext(r.Context(), "functions: acknowledging a malformed CloudEvent; it will not be retried",
				"defect", defect, "path", r.URL.Path, "ce_id", r.Header.Get("ce-id"), "ce_type", r.Header.Get("ce-type"))
			w.WriteHeader(http.StatusNoContent)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// ceDefect checks the attributes the SDK parses (with its own parsers) of
// a request carrying ce-specversion; "" means fine or not a binary event.
func ceDefect(h http.Header) string {
	spec := h.Get("ce-specversion")
	if spec == "" {
		return ""
	}
	if spec != "1.0" && spec != "0.3" {
		return fmt.Sprintf("ce-specversion %q is not 1.0 or 0.3", spec)
	}
	for _, k := range []string{"ce-id", "ce-type", "ce-source"} {
		if h.Get(k) == "" {
			return k + " is missing"
		}
	}
	if src := h.Get("ce-source"); types.ParseURIRef(src) == nil {
		return fmt.Sprintf("ce-source %q is not a URI reference", src)
	}
	if ts := h.Get("ce-time"); ts != "" {
		if _, err := types.ParseTimestamp(ts); err != nil {
			return fmt.Sprintf("ce-time %q is not an RFC 3339 time", ts)
		}
	}
	return ""
}
