package logging

import (
	"bytes"
	"context"
	"encoding/json"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// decode parses the JSON lines in buf, checks and removes the time field
// (whose value varies), and returns the entries.
func decode(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var entries []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not JSON: %v: %s", err, line)
		}
		ts, ok := m["time"].(string)
		if !ok {
			t.Errorf("entry has no string time: %s", line)
		} else if _, err := time.Parse(time.RFC3339Nano, ts); err != nil {
			t.Errorf("time %q is not RFC 3339: %v", ts, err)
		}
		delete(m, "time")
		entries = append(entries, m)
	}
	return entries
}

func TestEntries(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		opts []Option
		log  func(l *slog.Logger)
		want []map[string]any
	}{
		{
			name: "severities",
			opts: []Option{WithLevel(slog.LevelDebug)},
			log: func(l *slog.Logger) {
				l.Debug("d")
				l.Info("i")
				l.Log(ctx, LevelNotice, "n")
				l.Warn("w")
				l.Error("e")
				l.Log(ctx, LevelCritical, "c")
				l.Log(ctx, slog.LevelDebug-4, "very verbose")
			},
			want: []map[string]any{
				{"severity": "DEBUG", "message": "d"},
				{"severity": "INFO", "message": "i"},
				{"severity": "NOTICE", "message": "n"},
				{"severity": "WARNING", "message": "w"},
				{"severity": "ERROR", "message": "e"},
				{"severity": "CRITICAL", "message": "c"},
			},
		},
		{
			name: "default level is info",
			log: func(l *slog.Logger) {
				l.Debug("hidden")
				l.Info("shown")
			},
			want: []map[string]any{{"severity": "INFO", "message": "shown"}},
		},
		{
			name: "level option",
			opts: []Option{WithLevel(slog.LevelWarn)},
			log: func(l *slog.Logger) {
				l.Info("hidden")
				l.Warn("shown")
			},
			want: []map[string]any{{"severity": "WARNING", "message": "shown"}},
		},
		{
			name: "attributes and groups",
			log: func(l *slog.Logger) {
				l.With("bucket", "b").WithGroup("object").Info("stored",
					"name", "apple.jpg", "size", 12, "message", "kept inside the group")
			},
			want: []map[string]any{{
				"severity": "INFO",
				"message":  "stored",
				"bucket":   "b",
				"object": map[string]any{
					"name": "apple.jpg", "size": 12.0, "message": "kept inside the group",
				},
			}},
		},
		{
			name: "no trace without context",
			opts: []Option{WithProjectID("p")},
			log:  func(l *slog.Logger) { l.InfoContext(ctx, "plain") },
			want: []map[string]any{{"severity": "INFO", "message": "plain"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			tc.log(New(&buf, tc.opts...))
			if diff := cmp.Diff(tc.want, decode(t, &buf)); diff != "" {
				t.Errorf("entries mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestTraceFields(t *testing.T) {
	const (
		traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
		cloud   = traceID + "/12345;o=1" // span 12345 = 0x3039
		w3c     = "00-" + traceID + "-00f067aa0ba902b7-01"
	)
	for _, tc := range []struct {
		name    string
		project string
		header  string
		log     func(ctx context.Context, l *slog.Logger)
		want    map[string]any
	}{
		{
			name:    "X-Cloud-Trace-Context",
			project: "orchard",
			header:  cloud,
			want: map[string]any{
				"severity": "INFO", "message": "m",
				TraceKey:        "projects/orchard/traces/" + traceID,
				SpanIDKey:       "0000000000003039",
				TraceSampledKey: true,
			},
		},
		{
			name:    "traceparent",
			project: "orchard",
			header:  w3c,
			want: map[string]any{
				"severity": "INFO", "message": "m",
				TraceKey:        "projects/orchard/traces/" + traceID,
				SpanIDKey:       "00f067aa0ba902b7",
				TraceSampledKey: true,
			},
		},
		{
			name:    "trace only, not sampled",
			project: "orchard",
			header:  traceID + ";o=0",
			want: map[string]any{
				"severity": "INFO", "message": "m",
				TraceKey: "projects/orchard/traces/" + traceID,
			},
		},
		{
			name:   "no project: bare trace ID",
			header: w3c,
			want: map[string]any{
				"severity": "INFO", "message": "m",
				TraceKey:        traceID,
				SpanIDKey:       "00f067aa0ba902b7",
				TraceSampledKey: true,
			},
		},
		{
			name:    "malformed header: no trace",
			project: "orchard",
			header:  "not-a-trace",
			want:    map[string]any{"severity": "INFO", "message": "m"},
		},
		{
			name:    "trace stays top-level under groups",
			project: "orchard",
			header:  cloud,
			log: func(ctx context.Context, l *slog.Logger) {
				l.With("a", 1).WithGroup("g").With("b", 2).WithGroup("h").InfoContext(ctx, "m", "c", 3)
			},
			want: map[string]any{
				"severity": "INFO", "message": "m",
				TraceKey:        "projects/orchard/traces/" + traceID,
				SpanIDKey:       "0000000000003039",
				TraceSampledKey: true,
				"a":             1.0,
				"g":             map[string]any{"b": 2.0, "h": map[string]any{"c": 3.0}},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			l := New(&buf, WithProjectID(tc.project))
			ctx := WithTrace(context.Background(), tc.header)
			if tc.log != nil {
				tc.log(ctx, l)
			} else {
				l.InfoContext(ctx, "m")
			}
			if diff := cmp.Diff([]map[string]any{tc.want}, decode(t, &buf)); diff != "" {
				t.Errorf("entry mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseTrace(t *testing.T) {
	const id = "4bf92f3577b34da6a3ce929d0e0e4736"
	for _, tc := range []struct {
		header string
		want   Trace
		ok     bool
	}{
		{id + "/1;o=1", Trace{TraceID: id, SpanID: "0000000000000001", Sampled: true}, true},
		{id + "/18446744073709551615;o=1", Trace{TraceID: id, SpanID: "ffffffffffffffff", Sampled: true}, true},
		{id + "/0;o=0", Trace{TraceID: id}, true},
		{id, Trace{TraceID: id}, true},
		{strings.ToUpper(id) + "/7", Trace{TraceID: id, SpanID: "0000000000000007"}, true},
		{" " + id + "/7 ", Trace{TraceID: id, SpanID: "0000000000000007"}, true},
		{"00-" + id + "-00f067aa0ba902b7-01", Trace{TraceID: id, SpanID: "00f067aa0ba902b7", Sampled: true}, true},
		{"00-" + id + "-00f067aa0ba902b7-00", Trace{TraceID: id, SpanID: "00f067aa0ba902b7"}, true},
		{"01-" + id + "-00f067aa0ba902b7-03-future", Trace{TraceID: id, SpanID: "00f067aa0ba902b7", Sampled: true}, true},
		// Rejected.
		{"", Trace{}, false},
		{"abc/1", Trace{}, false},
		{id + "/notanumber", Trace{}, false},
		{strings.Repeat("0", 32) + "/1", Trace{}, false},
		{id[:31] + "g/1", Trace{}, false},
		{"00-" + id + "-0000000000000000-01", Trace{}, false},
		{"00-" + strings.Repeat("0", 32) + "-00f067aa0ba902b7-01", Trace{}, false},
		{"00-" + strings.ToUpper(id) + "-00f067aa0ba902b7-01", Trace{}, false},
		{"ff-" + id + "-00f067aa0ba902b7-01", Trace{}, false},
		{"00-" + id + "-00f067aa0ba902b7-01-extra", Trace{}, false},
	} {
		got, ok := ParseTrace(tc.header)
		if ok != tc.ok || got != tc.want {
			t.Errorf("ParseTrace(%q) = %+v, %v; want %+v, %v", tc.header, got, ok, tc.want, tc.ok)
		}
	}
}

func TestHTTPMiddleware(t *testing.T) {
	const id = "4bf92f3577b34da6a3ce929d0e0e4736"
	for _, tc := range []struct {
		name    string
		headers map[string]string
		want    any // trace field, nil when absent
	}{
		{"traceparent", map[string]string{"traceparent": "00-" + id + "-00f067aa0ba902b7-01"}, "projects/p/traces/" + id},
		{"X-Cloud-Trace-Context", map[string]string{"X-Cloud-Trace-Context": id + "/1;o=1"}, "projects/p/traces/" + id},
		{"traceparent preferred", map[string]string{
			"traceparent":           "00-" + id + "-00f067aa0ba902b7-01",
			"X-Cloud-Trace-Context": strings.Repeat("a", 32) + "/1",
		}, "projects/p/traces/" + id},
		{"bad traceparent falls back", map[string]string{
			"traceparent":           "garbage",
			"X-Cloud-Trace-Context": id + "/1",
		}, "projects/p/traces/" + id},
		{"none", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			l := New(&buf, WithProjectID("p"))
			h := HTTPMiddleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				l.InfoContext(r.Context(), "handled")
			}))
			req := httptest.NewRequest(http.MethodPost, "/", nil)
			for k, v := range tc.headers {
				req.Header.Set(k, v)
			}
			h.ServeHTTP(httptest.NewRecorder(), req)
			entries := decode(t, &buf)
			if len(entries) != 1 {
				t.Fatalf("got %d entries, want 1", len(entries))
			}
			if diff := cmp.Diff(tc.want, entries[0][TraceKey]); diff != "" {
				t.Errorf("trace field mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSourceLocation(t *testing.T) {
	var buf bytes.Buffer
	New(&buf, WithSource(true)).Info("here")
	entries := decode(t, &buf)
	loc, ok := entries[0][SourceLocationKey].(map[string]any)
	if !ok {
		t.Fatalf("no %s object in %v", SourceLocationKey, entries[0])
	}
	if f, _ := loc["file"].(string); !strings.HasSuffix(f, "/logging_test.go") {
		t.Errorf("file = %q", loc["file"])
	}
	if l, _ := loc["line"].(string); l == "" || strings.Trim(l, "0123456789") != "" {
		t.Errorf("line = %#v, want a decimal string", loc["line"])
	}
	if fn, _ := loc["function"].(string); !strings.HasSuffix(fn, ".TestSourceLocation") {
		t.Errorf("function = %q", loc["function"])
	}
	if _, ok := entries[0]["source"]; ok {
		t.Errorf("slog's own source key is still present")
	}
}

func TestParseLevel(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    slog.Level
		wantErr bool
	}{
		{"", slog.LevelInfo, false},
		{"debug", slog.LevelDebug, false},
		{"INFO", slog.LevelInfo, false},
		{"Notice", LevelNotice, false},
		{"warn", slog.LevelWarn, false},
		{"WARNING", slog.LevelWarn, false},
		{"error", slog.LevelError, false},
		{"critical", LevelCritical, false},
		{"DEBUG-4", slog.LevelDebug - 4, false},
		{"verbose", slog.LevelInfo, true},
	} {
		got, err := ParseLevel(tc.in)
		if got != tc.want || (err != nil) != tc.wantErr {
			t.Errorf("ParseLevel(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestSetup(t *testing.T) {
	prev := slog.Default()
	t.Cleanup(func() { slog.SetDefault(prev) })
	for _, tc := range []struct {
		name string
		env  map[string]string
		opts []Option
		want []map[string]any
	}{
		{
			name: "environment",
			env:  map[string]string{"LOG_LEVEL": "debug", "GOOGLE_CLOUD_PROJECT": "from-env", "GCP_PROJECT": "ignored"},
			want: []map[string]any{
				{"severity": "DEBUG", "message": "debug line", TraceKey: "projects/from-env/traces/4bf92f3577b34da6a3ce929d0e0e4736"},
				{"severity": "INFO", "message": "via log package"},
			},
		},
		{
			name: "GCP_PROJECT, options override",
			env:  map[string]string{"LOG_LEVEL": "debug", "GCP_PROJECT": "legacy"},
			opts: []Option{WithLevel(slog.LevelInfo)},
			want: []map[string]any{
				{"severity": "INFO", "message": "via log package"},
			},
		},
		{
			name: "invalid level warns",
			env:  map[string]string{"LOG_LEVEL": "loud", "GCP_PROJECT": "legacy"},
			want: []map[string]any{
				{"severity": "WARNING", "message": "invalid LOG_LEVEL, using INFO", "LOG_LEVEL": "loud",
					"error": `parse log level "loud": slog: level string "loud": unknown name`},
				{"severity": "INFO", "message": "via log package"},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, k := range []string{"LOG_LEVEL", "GOOGLE_CLOUD_PROJECT", "GCP_PROJECT", "K_SERVICE", "CLOUD_RUN_JOB", "GCE_METADATA_HOST"} {
				t.Setenv(k, tc.env[k])
			}
			var buf bytes.Buffer
			setup(&buf, tc.opts...)
			ctx := WithTrace(context.Background(), "4bf92f3577b34da6a3ce929d0e0e4736")
			slog.DebugContext(ctx, "debug line")
			log.Print("via log package")
			if diff := cmp.Diff(tc.want, decode(t, &buf)); diff != "" {
				t.Errorf("entries mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
