package stack

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/orchard-mlops/orchard/functions/monitor"
	"github.com/orchard-mlops/orchard/infra/local/eventarc"
	"github.com/orchard-mlops/orchard/shared/pubsubx"
)

// RouteMonitor is the bridge route from the monitor-tick topic to the
// Monitor function, as the Cloud Scheduler job's topic trigger is in the
// cloud.
const RouteMonitor = "monitor"

func (s *Stack) monitorRoute() eventarc.Route {
	return eventarc.Route{
		Name: RouteMonitor, Kind: eventarc.PubSub,
		Topic: s.Topic(s.Config.MonitorTopic), Subscription: s.Subscription("eventarc-" + RouteMonitor),
		Target: s.FunctionsURL + "/Monitor", DeadLetterTopic: s.Topic(s.Config.DeadLetterTopic),
	}
}

// Tick publishes a monitor tick: the Monitor function then reports on the
// window [start, end), or, with both zero, on the MONITOR_WINDOW ending at
// the tick.
func (s *Stack) Tick(ctx context.Context, start, end time.Time) error {
	var data []byte
	if !start.IsZero() || !end.IsZero() {
		var err error
		if data, err = json.Marshal(monitor.Tick{Start: start, End: end}); err != nil {
			return err
		}
	}
	p := pubsubx.New(s.PubSub, s.Topic(s.Config.MonitorTopic))
	defer p.Close()
	if err := p.Publish(ctx, data, nil); err != nil {
		return fmt.Errorf("monitor tick: %w", err)
	}
	return nil
}

// startMonitorTimer ticks every Config.MonitorEvery, the local stand-in for
// the Cloud Scheduler job.
func (s *Stack) startMonitorTimer() {
	if s.Config.MonitorEvery <= 0 {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(s.Config.MonitorEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := s.Tick(ctx, time.Time{}, time.Time{}); err != nil && ctx.Err() == nil {
					s.log.Warn("stack: monitor tick", "error", err.Error())
				}
			}
		}
	}()
	s.onClose("monitor timer", func() error {
		cancel()
		<-done
		return nil
	})
}
