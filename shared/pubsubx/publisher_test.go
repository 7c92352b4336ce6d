package pubsubx_test

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"

	"github.com/orchard-mlops/orchard/shared/emulators"
	"github.com/orchard-mlops/orchard/shared/pubsubx"
)

func TestMain(m *testing.M) { os.Exit(emulators.RunTests(m)) }

// topicWithSub creates topic id and a subscription to it.
func topicWithSub(t *testing.T, ps *emulators.PubSub, c *pubsub.Client, id string) {
	t.Helper()
	if _, err := c.TopicAdminClient.CreateTopic(t.Context(), &pubsubpb.Topic{Name: ps.TopicName(id)}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SubscriptionAdminClient.CreateSubscription(t.Context(), &pubsubpb.Subscription{
		Name: ps.SubscriptionName(id), Topic: ps.TopicName(id), AckDeadlineSeconds: 10,
	}); err != nil {
		t.Fatal(err)
	}
}

func receive(t *testing.T, c *pubsub.Client, sub string, n int) []*pubsub.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	var mu sync.Mutex
	var got []*pubsub.Message
	_ = c.Subscriber(sub).Receive(ctx, func(_ context.Context, m *pubsub.Message) {
		m.Ack()
		mu.Lock()
		defer mu.Unlock()
		if got = append(got, m); len(got) == n {
			cancel()
		}
	})
	if len(got) != n {
		t.Fatalf("received %d messages on %s, want %d", len(got), sub, n)
	}
	return got
}

// TestPublisher: Dial (own client, project from the full name), New (a
// caller's client, a topic ID) and Publishers all reach the topic, with
// data, attributes and the ordering key kept.
func TestPublisher(t *testing.T) {
	ps := emulators.PubSubForTest(t, emulators.UniqueName(t))
	ps.Setenv(t)
	c := ps.ClientForTest(t)
	topicWithSub(t, ps, c, "topic-a")
	topicWithSub(t, ps, c, "topic-b")
	ctx := t.Context()

	d, err := pubsubx.Dial(ctx, "", ps.TopicName("topic-a"))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Publish(ctx, []byte("one"), map[string]string{"k": "v"}); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	n := pubsubx.New(c, "topic-a")
	if n.Topic() != ps.TopicName("topic-a") {
		t.Errorf("Topic() = %q, want %q", n.Topic(), ps.TopicName("topic-a"))
	}
	id, err := n.Send(ctx, &pubsub.Message{Data: []byte("two")})
	if err != nil || id == "" {
		t.Fatalf("Send = %q, %v", id, err)
	}
	n.Close()
	got := receive(t, c, ps.SubscriptionName("topic-a"), 2)
	seen := map[string]map[string]string{}
	for _, m := range got {
		seen[string(m.Data)] = m.Attributes
	}
	if _, ok := seen["two"]; !ok || seen["one"]["k"] != "v" {
		t.Errorf("received %v", seen)
	}

	set := pubsubx.NewPublishers(c)
	if first, again := set.For(ps.TopicName("topic-b")), set.For(ps.TopicName("topic-b")); first != again {
		t.Error("For made two publishers for one topic")
	}
	if _, err := set.For(ps.TopicName("topic-b")).Send(ctx, &pubsub.Message{Data: []byte("three")}); err != nil {
		t.Fatal(err)
	}
	set.Close()
	if m := receive(t, c, ps.SubscriptionName("topic-b"), 1); string(m[0].Data) != "three" {
		t.Errorf("received %q on b", m[0].Data)
	}
}

func TestDialRefusesAnIDWithoutProject(t *testing.T) {
	if _, err := pubsubx.Dial(t.Context(), "", "model-published"); err == nil {
		t.Fatal("Dial accepted a topic ID without a project")
	}
}
