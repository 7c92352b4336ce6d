package telemetry

import (
	"context"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	mon "github.com/orchard-mlops/orchard/shared/monitor"
)

func TestMonitorGauges(t *testing.T) {
	r := sdkmetric.NewManualReader()
	g, err := NewMonitor(sdkmetric.NewMeterProvider(sdkmetric.WithReader(r)))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	g.Report(ctx, &mon.Report{
		Model: "fruits", Version: "v3", Predictions: 50, OODShare: 0.4,
		Drift: []mon.Drift{
			{Feature: mon.Luminance, Measure: "js", Value: 0.6},
			{Feature: mon.Labels, Measure: "linf", Value: 0.2},
		},
		Live:   &mon.Live{Accuracy: 0.7},
		Alerts: []mon.Alert{{Feature: mon.Luminance}, {Feature: mon.OODShare}},
	})
	var rm metricdata.ResourceMetrics
	if err := r.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string][]metricdata.DataPoint[float64]{}
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != MonitorMeterName {
			t.Errorf("scope %q", sm.Scope.Name)
		}
		for _, m := range sm.Metrics {
			got[m.Name] = m.Data.(metricdata.Gauge[float64]).DataPoints
		}
	}
	want := map[string]struct {
		value   float64
		feature string
	}{
		JSDivergenceName: {0.6, mon.Luminance},
		LInfDistanceName: {0.2, mon.Labels},
		OODShareName:     {0.4, ""},
		LiveAccuracyName: {0.7, ""},
		WindowSizeName:   {50, ""},
		AlertsName:       {2, ""},
	}
	for name, w := range want {
		dps := got[name]
		if len(dps) != 1 {
			t.Errorf("%s: %d points, want 1", name, len(dps))
			continue
		}
		dp := dps[0]
		model, _ := dp.Attributes.Value(KeyModel)
		version, _ := dp.Attributes.Value(KeyVersion)
		feature, _ := dp.Attributes.Value(KeyFeature)
		if dp.Value != w.value || model.AsString() != "fruits" || version.AsString() != "v3" || feature.AsString() != w.feature {
			t.Errorf("%s = %v %v, want %v on fruits v3 feature %q", name, dp.Value, dp.Attributes.ToSlice(), w.value, w.feature)
		}
	}
	var nilGauges *Monitor
	nilGauges.Report(ctx, &mon.Report{}) // records nothing, does not panic
}
