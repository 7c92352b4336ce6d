package eventarc

import (
	"context"
	"fmt"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Pub/Sub's bounds on a dead-letter policy's max_delivery_attempts (the
// emulator enforces them too).
const (
	minDeliveryAttempts = 5
	maxDeliveryAttempts = 100
)

// ackDeadlineSeconds is the subscriptions' ack deadline; the client extends
// it while a message is in hand (POST, backoff).
const ackDeadlineSeconds = 60

// EnsureTopic creates topic (projects/P/topics/T) unless it exists.
func EnsureTopic(ctx context.Context, c *pubsub.Client, topic string) error {
	_, err := c.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: topic})
	if err != nil && status.Code(err) != codes.AlreadyExists {
		return fmt.Errorf("create topic %s: %w", topic, err)
	}
	return nil
}

// SubscriptionOptions configure EnsureSubscription.
type SubscriptionOptions struct {
	// DeadLetterTopic, if set, gets a dead-letter policy with
	// MaxDeliveryAttempts (clamped to Pub/Sub's 5..100).
	DeadLetterTopic     string
	MaxDeliveryAttempts int
}

// EnsureSubscription creates a pull subscription on topic unless it exists.
// An existing subscription is left as it is.
func EnsureSubscription(ctx context.Context, c *pubsub.Client, sub, topic string, o SubscriptionOptions) error {
	s := &pubsubpb.Subscription{Name: sub, Topic: topic, AckDeadlineSeconds: ackDeadlineSeconds}
	if o.DeadLetterTopic != "" {
		n := min(max(o.MaxDeliveryAttempts, minDeliveryAttempts), maxDeliveryAttempts)
		s.DeadLetterPolicy = &pubsubpb.DeadLetterPolicy{DeadLetterTopic: o.DeadLetterTopic, MaxDeliveryAttempts: int32(n)}
	}
	_, err := c.SubscriptionAdminClient.CreateSubscription(ctx, s)
	if err != nil && status.Code(err) != codes.AlreadyExists {
		return fmt.Errorf("create subscription %s on %s: %w", sub, topic, err)
	}
	return nil
}

// Setup creates what the routes need and is missing: each route's topic,
// dead-letter topic, and subscription. A subscription with a dead-letter
// topic gets a dead-letter policy too, with max_delivery_attempts =
// max(MaxAttempts, 5): it makes the server count delivery attempts (so the
// count survives a bridge restart) and it is the backstop should the
// bridge's own dead-lettering fail. The bridge itself dead-letters at
// MaxAttempts, with attributes saying why.
func (b *Bridge) Setup(ctx context.Context) error {
	for _, r := range b.routes {
		if err := EnsureTopic(ctx, b.client, r.Topic); err != nil {
			return err
		}
		if r.DeadLetterTopic != "" {
			if err := EnsureTopic(ctx, b.client, r.DeadLetterTopic); err != nil {
				return err
			}
		}
		err := EnsureSubscription(ctx, b.client, r.Subscription, r.Topic, SubscriptionOptions{
			DeadLetterTopic: r.DeadLetterTopic, MaxDeliveryAttempts: b.opts.MaxAttempts,
		})
		if err != nil {
			return err
		}
	}
	return nil
}
