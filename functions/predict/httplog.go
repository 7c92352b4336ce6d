package predict

import (
	"log/slog"
	"net/http"
	"time"
)

// requestLog collects the fields of a request's one log line.
type requestLog struct {
	mode         string
	images       int
	failed       int
	label        string
	score        float64
	modelVersion string
	errKind      string
	err          error
}

func (s *Server) logRequest(r *http.Request, status int, rl *requestLog, d time.Duration) {
	if status == 0 {
		status = http.StatusOK
	}
	attrs := []slog.Attr{
		slog.String("function", "Predict"),
		slog.String("method", r.Method),
		slog.String("mode", rl.mode),
		slog.Int("status", status),
		slog.Float64("latency_ms", float64(d.Microseconds())/1000),
	}
	if rl.modelVersion != "" {
		attrs = append(attrs, slog.String("model_version", rl.modelVersion))
	}
	if rl.images > 0 {
		attrs = append(attrs, slog.Int("images", rl.images))
	}
	if rl.failed > 0 {
		attrs = append(attrs, slog.Int("failed", rl.failed))
	}
	if rl.label != "" {
		attrs = append(attrs, slog.String("label", rl.label), slog.Float64("score", rl.score))
	}
	if rl.errKind != "" {
		attrs = append(attrs, slog.String("error_kind", rl.errKind))
	}
	level := slog.LevelInfo
	if rl.err != nil {
		attrs = append(attrs, slog.String("error", rl.err.Error()))
	}
	if status >= 500 {
		level = slog.LevelError
	} else if status >= 400 {
		level = slog.LevelWarn
	}
	s.log().LogAttrs(r.Context(), level, "predict", attrs...)
}

// statusWriter remembers the status for the request log.
type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (s *statusWriter) WriteHeader(code int) {
	if !s.wrote {
		s.status, s.wrote = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if !s.wrote {
		s.status, s.wrote = http.StatusOK, true
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }
