package pubsubx_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"

	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/shared/emulators"
	"github.com/orchard-mlops/orchard/shared/model/modeltest"
	"github.com/orchard-mlops/orchard/shared/pubsubx"
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
	n := pubsubx.NewModelNotifier(pubsubx.New(c, topic))
	defer n.Close()
	regStore, err := blob.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	dir, err := blob.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	modeltest.Save(t, modeltest.Colour(t, modeltest.Options{Version: "v1"}), dir)
	reg := registry.New(regStore, registry.Options{Notifier: n})
	if _, err := registry.PublishFrom(ctx, reg, dir, registry.PublishOptions{Promote: true}); err != nil {
		t.Fatal(err)
	}

	rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var mu sync.Mutex
	var got []registry.Event
	err = c.Subscriber(subID).Receive(rctx, func(_ context.Context, m *pubsub.Message) {
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
