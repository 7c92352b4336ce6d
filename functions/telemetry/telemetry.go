// Package telemetry holds the functions' OpenTelemetry metrics: the
// prediction functions' instruments, the drift monitor's gauges (Monitor),
// and the meter provider chosen from the environment.
//
// Exporters follow the OpenTelemetry environment conventions, narrowed to
// what is built in: OTEL_METRICS_EXPORTER=console writes to stdout,
// OTEL_METRICS_EXPORTER=otlp or a set OTEL_EXPORTER_OTLP_ENDPOINT (or
// OTEL_EXPORTER_OTLP_METRICS_ENDPOINT) exports OTLP over HTTP/protobuf, and
// anything else (including OTEL_METRICS_EXPORTER=none or nothing set) records
// nothing.
package telemetry

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdoutmetric"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"

	"github.com/orchard-mlops/orchard/shared/errlist"
)

// MeterName is the instrumentation scope of the instruments.
const MeterName = "github.com/orchard-mlops/orchard/functions"

// Instrument names.
const (
	PredictionsName = "orchard.predictions"
	ErrorsName      = "orchard.prediction.errors"
	LatencyName     = "orchard.prediction.duration"
)

// Attribute keys.
const (
	KeyLabel        = attribute.Key("label")
	KeyKind         = attribute.Key("kind")
	KeySource       = attribute.Key("source") // "http" or "upload"
	KeyModelVersion = attribute.Key("model.version")
)

// Metrics are the prediction instruments. The zero value is not usable; a
// nil *Metrics records nothing.
type Metrics struct {
	predictions metric.Int64Counter
	errors      metric.Int64Counter
	latency     metric.Float64Histogram
}

// New creates the instruments on mp (nil: a no-op provider).
func New(mp metric.MeterProvider) (*Metrics, error) {
	if mp == nil {
		mp = noop.NewMeterProvider()
	}
	m := mp.Meter(MeterName)
	p, err1 := m.Int64Counter(PredictionsName,
		metric.WithDescription("Images classified, by top label."),
		metric.WithUnit("{prediction}"))
	e, err2 := m.Int64Counter(ErrorsName,
		metric.WithDescription("Failed predictions, by kind of failure."),
		metric.WithUnit("{error}"))
	l, err3 := m.Float64Histogram(LatencyName,
		metric.WithDescription("Time to read, decode and classify one image."),
		metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
	if err := errlist.Join(err1, err2, err3); err != nil {
		return nil, fmt.Errorf("telemetry: creating instruments: %w", err)
	}
	return &Metrics{predictions: p, errors: e, latency: l}, nil
}

// Prediction records one classified image.
func (m *Metrics) Prediction(ctx context.Context, source, label, modelVersion string, d time.Duration) {
	if m == nil {
		return
	}
	m.predictions.Add(ctx, 1, metric.WithAttributes(KeySource.String(source), KeyLabel.String(label), KeyModelVersion.String(modelVersion)))
	m.latency.Record(ctx, d.Seconds(), metric.WithAttributes(KeySource.String(source)))
}

// Error records one failure of the given kind (e.g. "corrupt",
// "too_large", "storage", "model_unavailable").
func (m *Metrics) Error(ctx context.Context, source, kind string) {
	if m == nil {
		return
	}
	m.errors.Add(ctx, 1, metric.WithAttributes(KeySource.String(source), KeyKind.String(kind)))
}

// Provider is a meter provider with its shutdown.
type Provider struct {
	metric.MeterProvider
	// Exporter names what was chosen: "console", "otlp" or "none".
	Exporter string
	shutdown func(context.Context) error
}

// Shutdown flushes and stops the exporter.
func (p *Provider) Shutdown(ctx context.Context) error {
	if p == nil || p.shutdown == nil {
		return nil
	}
	return p.shutdown(ctx)
}

// FromEnv picks the exporter from the environment (see the package doc).
// getenv is os.Getenv in production.
func FromEnv(ctx context.Context, getenv func(string) string) (*Provider, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	choice := strings.ToLower(strings.TrimSpace(getenv("OTEL_METRICS_EXPORTER")))
	if choice == "" && (getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT") != "") {
		choice = "otlp"
	}
	var exp sdkmetric.Exporter
	var err error
	switch choice {
	case "console":
		exp, err = stdoutmetric.New(stdoutmetric.WithWriter(os.Stdout))
	case "otlp":
		// The exporter reads OTEL_EXPORTER_OTLP_* itself (endpoint, headers,
		// timeout, compression).
		exp, err = otlpmetrichttp.New(ctx)
	default:
		return &Provider{MeterProvider: noop.NewMeterProvider(), Exporter: "none"}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("telemetry: %s metrics exporter: %w", choice, err)
	}
	interval := 60 * time.Second
	if choice == "console" {
		interval = 10 * time.Second
	}
	mp := sdkmetric.NewMeterProvider(
		sdkmetric.WithResource(Resource()),
		sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp, sdkmetric.WithInterval(interval))),
	)
	return &Provider{MeterProvider: mp, Exporter: choice, shutdown: mp.Shutdown}, nil
}

// DefaultServiceName is service.name when neither OTEL_SERVICE_NAME nor
// Cloud Run's K_SERVICE says otherwise (the SDK's own default would be
// "unknown_service:functions", the binary's name).
const DefaultServiceName = "orchard-functions"

// Resource describes the process: the SDK's defaults, service.name from
// K_SERVICE (the Cloud Run service) or DefaultServiceName, then
// OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME, which win.
func Resource() *resource.Resource {
	name := DefaultServiceName
	if k := os.Getenv("K_SERVICE"); k != "" {
		name = k
	}
	// Schemaless, so merging never fails on differing semconv schema URLs.
	svc := resource.NewSchemaless(attribute.String("service.name", name))
	res, err := resource.Merge(resource.Default(), svc)
	if err != nil {
		return svc
	}
	if env, err := resource.Merge(res, resource.Environment()); err == nil {
		res = env
	}
	return res
}
