package pubsubx

import (
	"context"
	"encoding/json"
	"fmt"

	"google.golang.org/api/option"

	"github.com/orchard-mlops/orchard/shared/registry"
)

// ModelNotifier publishes registry events to a topic (conventionally
// "model-published"), with attributes type, model, version and alias so
// subscriptions can filter. It is the Pub/Sub registry.Notifier.
type ModelNotifier struct{ p *Publisher }

// NewModelNotifier publishes with p; Close closes p.
func NewModelNotifier(p *Publisher) *ModelNotifier { return &ModelNotifier{p: p} }

// DialModelNotifier connects to topic (an ID in project or a full
// projects/P/topics/T name) with its own client (see Dial).
func DialModelNotifier(ctx context.Context, project, topic string, opts ...option.ClientOption) (*ModelNotifier, error) {
	p, err := Dial(ctx, project, topic, opts...)
	if err != nil {
		return nil, fmt.Errorf("model-published topic: %w", err)
	}
	return NewModelNotifier(p), nil
}

// Notify implements registry.Notifier; it waits for the publish to be
// acknowledged.
func (n *ModelNotifier) Notify(ctx context.Context, e registry.Event) error {
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encoding %s event: %w", e.Type, err)
	}
	attrs := map[string]string{"type": e.Type, "model": e.Model, "version": e.Version}
	if e.Alias != "" {
		attrs["alias"] = e.Alias
	}
	if err := n.p.Publish(ctx, b, attrs); err != nil {
		return fmt.Errorf("publishing %s event: %w", e.Type, err)
	}
	return nil
}

// Close flushes and closes the publisher.
func (n *ModelNotifier) Close() error { return n.p.Close() }
