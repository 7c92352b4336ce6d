package functions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	ff "github.com/GoogleCloudPlatform/functions-framework-go/functions"
	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/orchard-mlops/orchard/functions/monitor"
	"github.com/orchard-mlops/orchard/functions/telemetry"
	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/shared/events"
	"github.com/orchard-mlops/orchard/shared/logging"
	"github.com/orchard-mlops/orchard/shared/registry"
)

// Monitor (google.cloud.pubsub.topic.v1.messagePublished, topic
// monitor-tick, published by Cloud Scheduler or the local stack's timer)
// runs the drift monitor over the window ending at the tick (see package
// monitor; MONITOR_* configure it, RESULTS_BUCKET and REGISTRY_URI say
// where predictions and baselines are). A tick's data may name the window
// explicitly, {"start": RFC 3339, "end": RFC 3339}, for a backfill.
func init() {
	ff.CloudEvent("Monitor", monitorFromEnv())
}

type monitorEnv struct {
	run     *monitor.Runner
	metrics *telemetry.Provider
}

func monitorFromEnv() func(context.Context, event.Event) error {
	setup := sync.OnceValues(func() (*monitorEnv, error) {
		e, err := newMonitorEnv(context.Background(), os.Getenv)
		if err != nil {
			slog.Default().Log(context.Background(), logging.LevelCritical, "Monitor is misconfigured; ticks are retried until fixed", "err", err.Error())
		}
		return e, err
	})
	return func(ctx context.Context, ev event.Event) error {
		active.Add(1)
		defer active.Add(-1)
		e, err := setup()
		if err != nil {
			return err
		}
		return e.handle(ctx, ev)
	}
}

func newMonitorEnv(ctx context.Context, getenv func(string) string) (*monitorEnv, error) {
	cfg, err := monitor.ConfigFromEnv(getenv)
	if err != nil {
		return nil, err
	}
	bucket, reg := strings.TrimSpace(getenv("RESULTS_BUCKET")), strings.TrimSpace(getenv("REGISTRY_URI"))
	if bucket == "" || reg == "" {
		return nil, errors.New("monitor: RESULTS_BUCKET (the predictions) and REGISTRY_URI (the baselines) are required")
	}
	stores := blob.LazyOpener() // the Monitor's one storage client
	results, err := stores.Open(ctx, "gs://"+bucket)
	if err != nil {
		return nil, fmt.Errorf("monitor: %w", err)
	}
	r, err := registry.Open(ctx, reg, registry.Options{Storage: stores})
	if err != nil {
		return nil, fmt.Errorf("monitor: %w", err)
	}
	e := &monitorEnv{run: &monitor.Runner{Config: cfg, Results: results, Registry: r, Log: slog.Default()}}
	if e.metrics, err = telemetry.FromEnv(ctx, getenv); err != nil {
		slog.Error("Monitor: gauges disabled", "error", err.Error())
	} else if g, err := telemetry.NewMonitor(e.metrics); err != nil {
		slog.Error("Monitor: gauges disabled", "error", err.Error())
	} else {
		e.run.Gauges = g
	}
	return e, nil
}

// handle runs one tick. A malformed tick is logged and acknowledged (a
// retry would not fix it); a failed run returns its error, so Pub/Sub
// redelivers the tick.
func (e *monitorEnv) handle(ctx context.Context, ev event.Event) error {
	end, start := ev.Time(), time.Time{}
	if d, err := events.DecodeMessagePublished(ev.Data()); err == nil {
		if t, err := time.Parse(time.RFC3339Nano, d.Message.PublishTime); err == nil {
			end = t
		}
		if len(d.Message.Data) > 0 {
			var t monitor.Tick
			if err := json.Unmarshal(d.Message.Data, &t); err != nil || t.End.Before(t.Start) {
				slog.ErrorContext(ctx, "Monitor: ignoring a malformed tick", "event_id", ev.ID(), "data", string(d.Message.Data))
				return nil
			}
			start, end = t.Start, t.End
		}
	}
	if end.IsZero() {
		end = time.Now()
	}
	if start.IsZero() {
		start = end.Add(-e.run.Config.Window)
	}
	if _, err := e.run.RunWindow(ctx, start, end); err != nil {
		return err
	}
	// Scaled to zero between ticks: export the gauges now.
	if e.metrics == nil {
		return nil
	}
	if f, ok := e.metrics.MeterProvider.(interface{ ForceFlush(context.Context) error }); ok {
		if err := f.ForceFlush(ctx); err != nil {
			slog.WarnContext(ctx, "Monitor: flushing gauges", "error", err.Error())
		}
	}
	return nil
}
