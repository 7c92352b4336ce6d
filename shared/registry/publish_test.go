package registry_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"

	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/shared/emulators"
	"github.com/orchard-mlops/orchard/shared/model/modeltest"
	"github.com/orchard-mlops/orchard/shared/onnxrt"
	"github.com/orchard-mlops/orchard/shared/registry"
)

// TestPublishNotifiesPubSub checks the model-published and alias-moved
// messages on the Pub/Sub emulator.
func TestPublishNotifiesPubSub(t *testing.T) {
	ps := emulators.PubSubForTest(t, emulators.UniqueName(t))
	c := ps.ClientForTest(t)
	ctx := t.Context()
	topic, subID := "model-published", "watch"
	if _, err := c.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: ps.TopicName(topic)}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{
		Name: ps.SubscriptionName(subID), Topic: ps.TopicName(topic), AckDeadlineSeconds: 10,
	}); err != nil {
		t.Fatal(err)
	}
	n := registry.NewPubSubNotifier(c, topic)
	defer n.Stop()
	reg := registry.New(must(blob.NewDir(t.TempDir())), registry.Options{Notifier: n})
	publish(t, reg, modeltest.Options{Version: "v1"}, registry.PublishOptions{Runtime: onnxrt.Runtime{}, Promote: true})

	rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var mu sync.Mutex
	var got []registry.Event
	err := c.Subscriber(subID).Receive(rctx, func(_ context.Context, m *pubsub.Message) {
		var e registry.Event
		if err := json.Unmarshal(m.Data, &e); err != nil {
			t.Errorf("bad event %q: %v", m.Data, err)
		}
		if m.Attributes["model"] != "colours" || m.Attributes["type"] != e.Type {
			t.Errorf("attributes %v for %+v", m.Attributes, e)
		}
		m.Ack()
		mu.Lock()
		got = append(got, e)
		if len(got) == 2 {
			cancel()
		}
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	types := map[string]registry.Event{}
	for _, e := range got {
		types[e.Type] = e
	}
	if e, ok := types[registry.EventPublished]; !ok || !e.Promoted || e.Version != "v1" {
		t.Errorf("model-published event missing or wrong: %+v", got)
	}
	if e, ok := types[registry.EventAliasMoved]; !ok || e.Alias != registry.Production {
		t.Errorf("alias-moved event missing or wrong: %+v", got)
	}
}

// TestPromoteWithoutRuntime: a binary without onnxruntime (no Runtime, as
// in a CGO_ENABLED=0 build of the orchard CLI) cannot move an alias, forced
// or not: Publish with Promote and Promote fail with ErrNoRuntime, which
// names the cgo build, before anything is stored or moved.
func TestPromoteWithoutRuntime(t *testing.T) {
	ctx := t.Context()
	reg := registry.New(must(blob.NewDir(t.TempDir())), registry.Options{})
	_, err := registry.PublishFrom(ctx, reg, modelDir(t, modeltest.Options{Version: "v1"}), registry.PublishOptions{Promote: true})
	if !errors.Is(err, registry.ErrNoRuntime) || !strings.Contains(err.Error(), "CGO_ENABLED=1") {
		t.Fatalf("Publish with Promote and no Runtime = %v, want ErrNoRuntime naming the cgo build", err)
	}
	if vs, _ := reg.Versions(ctx, "colours"); len(vs) != 0 {
		t.Fatalf("a refused publish stored %v", vs)
	}
	publish(t, reg, modeltest.Options{Version: "v1"}, registry.PublishOptions{}) // storing needs no runtime
	for _, force := range []bool{false, true} {
		if _, err := reg.Promote(ctx, "colours", "v1", registry.PromoteOptions{Force: force}); !errors.Is(err, registry.ErrNoRuntime) {
			t.Errorf("Promote (force %v) without a Runtime = %v, want ErrNoRuntime", force, err)
		}
	}
	if a, err := reg.Alias(ctx, "colours", registry.Production); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("production is %+v, %v; want no alias", a, err)
	}
}
