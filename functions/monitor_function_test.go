package functions

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/orchard-mlops/orchard/functions/monitor"
	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/shared/events"
	"github.com/orchard-mlops/orchard/shared/registry"
)

// TestMonitorTick: a tick naming its window writes that window's report;
// a tick without data ends the window at its publish time; a malformed
// tick is acknowledged without a run.
func TestMonitorTick(t *testing.T) {
	root := t.TempDir()
	results, _ := blob.NewDir(filepath.Join(root, "results"))
	models, _ := blob.NewDir(filepath.Join(root, "models"))
	cfg, _ := monitor.ConfigFromEnv(func(string) string { return "" })
	e := &monitorEnv{run: &monitor.Runner{Config: cfg, Results: results, Registry: registry.New(models, registry.Options{})}}
	now := time.Now().UTC()
	rec := fmt.Sprintf(`{"name":"a.jpg","model":{"name":"colours","version":"v1"},"label":"red","score":0.9,"time":%q}`, now.Format(time.RFC3339Nano))
	if _, err := results.Write(t.Context(), "a.jpg.json", []byte(rec), blob.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	tick := func(data []byte, published time.Time) event.Event {
		ev := event.New()
		ev.SetID("1")
		ev.SetType("google.cloud.pubsub.topic.v1.messagePublished")
		ev.SetSource("//pubsub.googleapis.com/projects/p/topics/monitor-tick")
		body, _ := json.Marshal(events.MessagePublishedData{Message: events.PubSubMessage{Data: data, PublishTime: published.Format(time.RFC3339Nano)}})
		if err := ev.SetData("application/json", body); err != nil {
			t.Fatal(err)
		}
		return ev
	}
	end := now.Add(time.Minute).Truncate(time.Second)
	explicit, _ := json.Marshal(monitor.Tick{Start: now.Add(-time.Minute), End: end})
	if err := e.handle(t.Context(), tick(explicit, now.Add(time.Hour))); err != nil {
		t.Fatal(err)
	}
	if _, err := results.Attributes(t.Context(), monitor.ReportKey("colours", "v1", end, "report.json")); err != nil {
		t.Errorf("no report for the tick's window: %v", err)
	}
	published := now.Add(2 * time.Minute).Truncate(time.Second)
	if err := e.handle(t.Context(), tick(nil, published)); err != nil {
		t.Fatal(err)
	}
	if _, err := results.Attributes(t.Context(), monitor.ReportKey("colours", "v1", published, "report.html")); err != nil {
		t.Errorf("no report for the window ending at the publish time: %v", err)
	}
	if err := e.handle(t.Context(), tick([]byte("not json"), now)); err != nil {
		t.Errorf("a malformed tick is retried: %v", err)
	}
}
