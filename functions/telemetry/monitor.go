package telemetry

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"

	mon "github.com/orchard-mlops/orchard/shared/monitor"
)

// MonitorMeterName is the drift monitor's gauges' instrumentation scope
// (docs/monitoring.md; kept from when the gauges lived in functions/monitor).
const MonitorMeterName = "github.com/orchard-mlops/orchard/functions/monitor"

// The drift monitor's gauge names (docs/monitoring.md). Cloud Monitoring
// sees them only through an OTLP collector; the deployed dashboard charts
// the monitor's figure log lines instead (infra/terraform/monitoring.tf).
const (
	JSDivergenceName = "orchard.monitor.js_divergence"
	LInfDistanceName = "orchard.monitor.linf_distance"
	OODShareName     = "orchard.monitor.ood_share"
	LiveAccuracyName = "orchard.monitor.live_accuracy"
	WindowSizeName   = "orchard.monitor.predictions"
	AlertsName       = "orchard.monitor.alerts"
)

// Attribute keys of the monitor's gauges.
const (
	KeyModel   = attribute.Key("model")
	KeyVersion = attribute.Key("version")
	KeyFeature = attribute.Key("feature")
)

// Monitor is the drift monitor's OTel gauges, recorded once per report. A
// nil *Monitor records nothing.
type Monitor struct {
	js, linf, ood, acc, n, alerts metric.Float64Gauge
}

// NewMonitor creates the monitor's gauges on mp (nil: a no-op provider).
func NewMonitor(mp metric.MeterProvider) (*Monitor, error) {
	if mp == nil {
		mp = noop.NewMeterProvider()
	}
	m := mp.Meter(MonitorMeterName)
	var errs [6]error
	g := &Monitor{}
	g.js, errs[0] = m.Float64Gauge(JSDivergenceName, metric.WithDescription("Jensen-Shannon divergence of a feature's window histogram from the baseline's (0..1)."))
	g.linf, errs[1] = m.Float64Gauge(LInfDistanceName, metric.WithDescription("L-infinity distance of a categorical feature's window distribution from the baseline's (0..1)."))
	g.ood, errs[2] = m.Float64Gauge(OODShareName, metric.WithDescription("Share of the window's predictions flagged out of distribution."))
	g.acc, errs[3] = m.Float64Gauge(LiveAccuracyName, metric.WithDescription("Accuracy over uploads under folders named after a label."))
	g.n, errs[4] = m.Float64Gauge(WindowSizeName, metric.WithDescription("Predictions aggregated in the window."), metric.WithUnit("{prediction}"))
	g.alerts, errs[5] = m.Float64Gauge(AlertsName, metric.WithDescription("Thresholds crossed in the window."), metric.WithUnit("{alert}"))
	for _, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("telemetry: creating the monitor's gauges: %w", err)
		}
	}
	return g, nil
}

// Report records one model version's window.
func (g *Monitor) Report(ctx context.Context, r *mon.Report) {
	if g == nil {
		return
	}
	ver := metric.WithAttributes(KeyModel.String(r.Model), KeyVersion.String(r.Version))
	for _, d := range r.Drift {
		at := metric.WithAttributes(KeyModel.String(r.Model), KeyVersion.String(r.Version), KeyFeature.String(d.Feature))
		if d.Measure == "linf" {
			g.linf.Record(ctx, d.Value, at)
		} else {
			g.js.Record(ctx, d.Value, at)
		}
	}
	g.ood.Record(ctx, r.OODShare, ver)
	if r.Live != nil {
		g.acc.Record(ctx, r.Live.Accuracy, ver)
	}
	g.n.Record(ctx, float64(r.Predictions), ver)
	g.alerts.Record(ctx, float64(len(r.Alerts)), ver)
}
