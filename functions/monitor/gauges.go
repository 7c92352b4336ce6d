package monitor

import (
	"context"
	"errors"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	mon "github.com/orchard-mlops/orchard/shared/monitor"
)

// MeterName is the gauges' instrumentation scope.
const MeterName = "github.com/orchard-mlops/orchard/functions/monitor"

// Gauge names (docs/monitoring.md; the dashboard reads them).
const (
	JSDivergenceName = "orchard.monitor.js_divergence"
	LInfDistanceName = "orchard.monitor.linf_distance"
	OODShareName     = "orchard.monitor.ood_share"
	LiveAccuracyName = "orchard.monitor.live_accuracy"
	PredictionsName  = "orchard.monitor.predictions"
	AlertsName       = "orchard.monitor.alerts"
)

// Attribute keys of the gauges.
const (
	KeyModel   = attribute.Key("model")
	KeyVersion = attribute.Key("version")
	KeyFeature = attribute.Key("feature")
)

// Gauges are the monitor's OTel gauges, recorded once per report.
type Gauges struct {
	js, linf, ood, acc, n, alerts metric.Float64Gauge
}

// NewGauges creates the gauges on mp.
func NewGauges(mp metric.MeterProvider) (*Gauges, error) {
	m := mp.Meter(MeterName)
	var errs [6]error
	g := &Gauges{}
	g.js, errs[0] = m.Float64Gauge(JSDivergenceName, metric.WithDescription("Jensen-Shannon divergence of a feature's window histogram from the baseline's (0..1)."))
	g.linf, errs[1] = m.Float64Gauge(LInfDistanceName, metric.WithDescription("L-infinity distance of a categorical feature's window distribution from the baseline's (0..1)."))
	g.ood, errs[2] = m.Float64Gauge(OODShareName, metric.WithDescription("Share of the window's predictions flagged out of distribution."))
	g.acc, errs[3] = m.Float64Gauge(LiveAccuracyName, metric.WithDescription("Accuracy over uploads under folders named after a label."))
	g.n, errs[4] = m.Float64Gauge(PredictionsName, metric.WithDescription("Predictions aggregated in the window."), metric.WithUnit("{prediction}"))
	g.alerts, errs[5] = m.Float64Gauge(AlertsName, metric.WithDescription("Thresholds crossed in the window."), metric.WithUnit("{alert}"))
	if err := errors.Join(errs[:]...); err != nil {
		return nil, fmt.Errorf("monitor: creating gauges: %w", err)
	}
	return g, nil
}

func (g *Gauges) record(ctx context.Context, r *mon.Report) {
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
