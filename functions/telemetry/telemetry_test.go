package telemetry

import (
	"context"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

func TestFromEnv(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"nothing set", nil, "none"},
		{"console", map[string]string{"OTEL_METRICS_EXPORTER": "console"}, "console"},
		{"explicit none wins over an endpoint", map[string]string{"OTEL_METRICS_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, "none"},
		{"endpoint implies otlp", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, "otlp"},
		{"metrics endpoint implies otlp", map[string]string{"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://127.0.0.1:4318/v1/metrics"}, "otlp"},
		{"otlp", map[string]string{"OTEL_METRICS_EXPORTER": "otlp"}, "otlp"},
		{"unknown exporter", map[string]string{"OTEL_METRICS_EXPORTER": "prometheus"}, "none"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := FromEnv(context.Background(), func(k string) string { return tt.env[k] })
			if err != nil {
				t.Fatal(err)
			}
			if p.Exporter != tt.want {
				t.Errorf("exporter %q, want %q", p.Exporter, tt.want)
			}
			m, err := New(p)
			if err != nil {
				t.Fatal(err)
			}
			m.Prediction(context.Background(), "http", "red", "v1", time.Millisecond)
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			_ = p.Shutdown(ctx) // OTLP has no collector here: a failed flush is fine
		})
	}
}

func TestNilMetricsRecordNothing(t *testing.T) {
	var m *Metrics
	m.Prediction(context.Background(), "http", "red", "v1", time.Millisecond)
	m.Error(context.Background(), "http", "corrupt")
}

func TestInstruments(t *testing.T) {
	r := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(r))
	m, err := New(mp)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	m.Prediction(ctx, "upload", "red", "v1", 3*time.Millisecond)
	m.Prediction(ctx, "upload", "red", "v1", 5*time.Millisecond)
	m.Error(ctx, "upload", "corrupt")
	var rm metricdata.ResourceMetrics
	if err := r.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]metricdata.Aggregation{}
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != MeterName {
			t.Errorf("scope %q", sm.Scope.Name)
		}
		for _, x := range sm.Metrics {
			got[x.Name] = x.Data
		}
	}
	if s := got[PredictionsName].(metricdata.Sum[int64]); len(s.DataPoints) != 1 || s.DataPoints[0].Value != 2 || !s.IsMonotonic {
		t.Errorf("predictions = %+v", s)
	}
	if s := got[ErrorsName].(metricdata.Sum[int64]); len(s.DataPoints) != 1 || s.DataPoints[0].Value != 1 {
		t.Errorf("errors = %+v", s)
	}
	h := got[LatencyName].(metricdata.Histogram[float64])
	if dp := h.DataPoints[0]; dp.Count != 2 || dp.Sum < 0.0079 || dp.Sum > 0.0081 {
		t.Errorf("latency = %+v, want 2 samples summing to 0.008 s", dp)
	}
}

func TestResourceServiceName(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"default", nil, DefaultServiceName},
		{"Cloud Run service", map[string]string{"K_SERVICE": "predict"}, "predict"},
		{"OTEL_SERVICE_NAME wins", map[string]string{"K_SERVICE": "predict", "OTEL_SERVICE_NAME": "mine"}, "mine"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, k := range []string{"K_SERVICE", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES"} {
				t.Setenv(k, tc.env[k])
			}
			v, ok := Resource().Set().Value("service.name")
			if !ok || v.AsString() != tc.want {
				t.Errorf("service.name = %q (set %v), want %q", v.AsString(), ok, tc.want)
			}
		})
	}
}
