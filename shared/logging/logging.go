// Package logging configures log/slog to write the JSON that Cloud Logging
// parses into structured log entries, so that every Orchard binary (Cloud Run
// functions, the trainer on Vertex AI, local tools) logs the same way.
//
// Cloud Run and Vertex AI collect each JSON line written to stdout or stderr
// and lift some fields out of it: "severity" becomes the entry's severity
// (slog's "level" would be ignored, leaving every entry at DEFAULT),
// "message" becomes the text shown in the console, "time" the timestamp, and
// "logging.googleapis.com/trace" and ".../spanId" link the entry to a request
// trace, which groups all lines of one request under the request log. See
// https://cloud.google.com/logging/docs/structured-logging.
//
// A binary calls Setup once in main. Request handlers pass the request's
// context to the logger (logger.InfoContext(ctx, ...)) after HTTPMiddleware or
// WithTrace has put the trace into it.
package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"cloud.google.com/go/compute/metadata"
)

// Cloud Logging severities beyond slog's four levels.
const (
	// LevelNotice logs with severity NOTICE: normal but significant events.
	LevelNotice = slog.LevelInfo + 2
	// LevelCritical logs with severity CRITICAL.
	LevelCritical = slog.LevelError + 4
)

// Keys that Cloud Logging lifts out of a JSON payload.
const (
	TraceKey          = "logging.googleapis.com/trace"
	SpanIDKey         = "logging.googleapis.com/spanId"
	TraceSampledKey   = "logging.googleapis.com/trace_sampled"
	SourceLocationKey = "logging.googleapis.com/sourceLocation"
)

type config struct {
	level     slog.Leveler
	projectID string
	addSource bool
}

// Option configures New, NewHandler and Setup.
type Option func(*config)

// WithLevel sets the minimum level logged (default slog.LevelInfo). A
// *slog.LevelVar allows changing it at run time.
func WithLevel(l slog.Leveler) Option { return func(c *config) { c.level = l } }

// WithProjectID sets the Google Cloud project that trace IDs belong to.
// Without it, the trace field holds the bare trace ID, which Cloud Logging
// stores but cannot link to the trace.
func WithProjectID(id string) Option { return func(c *config) { c.projectID = id } }

// WithSource adds the calling file, line and function to each entry as
// logging.googleapis.com/sourceLocation, shown by the Logs Explorer.
func WithSource(on bool) Option { return func(c *config) { c.addSource = on } }

// New returns a logger writing Cloud Logging JSON lines to w. Unlike Setup,
// it reads no environment variables.
func New(w io.Writer, opts ...Option) *slog.Logger {
	return slog.New(NewHandler(w, opts...))
}

// NewHandler returns a slog.Handler writing Cloud Logging JSON lines to w.
// It adds the trace fields when the context passed to the logger carries a
// trace (see WithTrace).
func NewHandler(w io.Writer, opts ...Option) slog.Handler {
	c := config{level: slog.LevelInfo}
	for _, o := range opts {
		o(&c)
	}
	base := slog.NewJSONHandler(w, &slog.HandlerOptions{
		AddSource:   c.addSource,
		Level:       c.level,
		ReplaceAttr: replaceAttr,
	})
	return &handler{base: base, inner: base, projectID: c.projectID}
}

// replaceAttr renames and reformats slog's built-in fields. Attributes inside
// groups are left alone: only top-level keys mean anything to Cloud Logging,
// and a user's "message" inside a group is just data.
func replaceAttr(groups []string, a slog.Attr) slog.Attr {
	if len(groups) > 0 {
		return a
	}
	switch a.Key {
	case slog.TimeKey:
		if t, ok := a.Value.Any().(time.Time); ok {
			return slog.String("time", t.Format(time.RFC3339Nano))
		}
	case slog.LevelKey:
		if l, ok := a.Value.Any().(slog.Level); ok {
			return slog.String("severity", Severity(l))
		}
	case slog.MessageKey:
		return slog.Attr{Key: "message", Value: a.Value}
	case slog.SourceKey:
		if s, ok := a.Value.Any().(*slog.Source); ok && s != nil {
			// LogEntrySourceLocation.line is an int64, which proto3 JSON
			// writes as a string.
			return slog.Group(SourceLocationKey,
				slog.String("file", s.File),
				slog.String("line", strconv.Itoa(s.Line)),
				slog.String("function", s.Function),
			)
		}
	}
	return a
}

// Severity maps a slog level to a Cloud Logging severity name.
func Severity(l slog.Level) string {
	switch {
	case l >= LevelCritical:
		return "CRITICAL"
	case l >= slog.LevelError:
		return "ERROR"
	case l >= slog.LevelWarn:
		return "WARNING"
	case l >= LevelNotice:
		return "NOTICE"
	case l >= slog.LevelInfo:
		return "INFO"
	default:
		return "DEBUG"
	}
}

// ParseLevel parses a LOG_LEVEL value: debug, info, notice, warn or warning,
// error, critical (any case), or slog's own syntax such as "INFO+2". The
// empty string means info.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "info":
		return slog.LevelInfo, nil
	case "debug":
		return slog.LevelDebug, nil
	case "notice":
		return LevelNotice, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	case "critical":
		return LevelCritical, nil
	}
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.TrimSpace(s))); err != nil {
		return slog.LevelInfo, fmt.Errorf("parse log level %q: %w", s, err)
	}
	return l, nil
}

// Setup makes a Cloud Logging JSON logger on stderr the default slog logger
// (which the standard log package then also writes through) and returns it.
// It reads LOG_LEVEL (see ParseLevel; invalid values log a warning and fall
// back to info) and the project ID for trace links from GOOGLE_CLOUD_PROJECT
// or GCP_PROJECT, or on Cloud Run from the metadata server. opts apply after
// these and so override them.
func Setup(opts ...Option) *slog.Logger {
	return setup(os.Stderr, opts...)
}

func setup(w io.Writer, opts ...Option) *slog.Logger {
	raw := os.Getenv("LOG_LEVEL")
	level, levelErr := ParseLevel(raw)
	defaults := []Option{WithLevel(level), WithProjectID(projectIDFromEnvironment())}
	logger := New(w, append(defaults, opts...)...)
	slog.SetDefault(logger)
	if levelErr != nil {
		logger.Warn("invalid LOG_LEVEL, using INFO", "LOG_LEVEL", raw, "error", levelErr)
	}
	return logger
}

// projectIDFromEnvironment finds the project to qualify trace IDs with.
func projectIDFromEnvironment() string {
	for _, k := range []string{"GOOGLE_CLOUD_PROJECT", "GCP_PROJECT"} {
		if v := os.Getenv(k); v != "" {
			return v
		}
	}
	// Cloud Run does not set a project variable, but always has a metadata
	// server. Elsewhere, probing for one could stall startup for seconds, so
	// only ask where one is known to exist.
	if os.Getenv("K_SERVICE") == "" && os.Getenv("CLOUD_RUN_JOB") == "" && os.Getenv("GCE_METADATA_HOST") == "" {
		return ""
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	id, err := metadata.ProjectIDWithContext(ctx)
	if err != nil {
		return ""
	}
	return id
}

// handler wraps the JSON handler to add the trace fields from the context.
type handler struct {
	base      slog.Handler // the JSON handler, before any WithAttrs/WithGroup
	inner     slog.Handler // base with ops applied
	ops       []func(slog.Handler) slog.Handler
	grouped   bool // whether ops open a group
	projectID string
}

func (h *handler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

func (h *handler) Handle(ctx context.Context, r slog.Record) error {
	tr, ok := TraceFromContext(ctx)
	if !ok {
		return h.inner.Handle(ctx, r)
	}
	attrs := h.traceAttrs(tr)
	if !h.grouped {
		// Clone: adding to a Record shared with another handler is unsafe.
		r = r.Clone()
		r.AddAttrs(attrs...)
		return h.inner.Handle(ctx, r)
	}
	// Record attributes land in the innermost open group, where Cloud Logging
	// would not see them. Rebuild the chain with the trace attributes added
	// before the first group. Costly, but only for grouped loggers.
	hh := h.base.WithAttrs(attrs)
	for _, op := range h.ops {
		hh = op(hh)
	}
	return hh.Handle(ctx, r)
}

func (h *handler) traceAttrs(tr Trace) []slog.Attr {
	trace := tr.TraceID
	if h.projectID != "" {
		trace = "projects/" + h.projectID + "/traces/" + tr.TraceID
	}
	attrs := []slog.Attr{slog.String(TraceKey, trace)}
	if tr.SpanID != "" {
		attrs = append(attrs, slog.String(SpanIDKey, tr.SpanID))
	}
	if tr.Sampled {
		attrs = append(attrs, slog.Bool(TraceSampledKey, true))
	}
	return attrs
}

func (h *handler) with(op func(slog.Handler) slog.Handler, group bool) *handler {
	return &handler{
		base:      h.base,
		inner:     op(h.inner),
		ops:       append(slices.Clip(h.ops), op),
		grouped:   h.grouped || group,
		projectID: h.projectID,
	}
}

func (h *handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	return h.with(func(x slog.Handler) slog.Handler { return x.WithAttrs(attrs) }, false)
}

func (h *handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return h.with(func(x slog.Handler) slog.Handler { return x.WithGroup(name) }, true)
}

var _ slog.Handler = (*handler)(nil)
