package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"google.golang.org/api/option"
)

// Event types sent to a Notifier.
const (
	// EventPublished: a version was stored (and maybe promoted: see Promoted).
	EventPublished = "model-published"
	// EventAliasMoved: an alias now names another version.
	EventAliasMoved = "alias-moved"
)

// Event is the JSON body of a model-published message.
type Event struct {
	Type     string    `json:"type"`
	Model    string    `json:"model"`
	Version  string    `json:"version"`
	Alias    string    `json:"alias,omitempty"`
	URI      string    `json:"uri"`
	Promoted bool      `json:"promoted"`
	Reason   string    `json:"reason,omitempty"`
	At       time.Time `json:"at"`
}

// Notifier is told about registry changes.
type Notifier interface {
	Notify(ctx context.Context, e Event) error
}

// NotifierFunc adapts a function.
type NotifierFunc func(ctx context.Context, e Event) error

// Notify implements Notifier.
func (f NotifierFunc) Notify(ctx context.Context, e Event) error { return f(ctx, e) }

func (r *Registry) notify(ctx context.Context, e Event) {
	if r.notifier == nil {
		return
	}
	if e.At.IsZero() {
		e.At = r.now().UTC()
	}
	if err := r.notifier.Notify(ctx, e); err != nil {
		r.log.WarnContext(ctx, "registry notification failed; watchers still see the change by polling",
			"type", e.Type, "model", e.Model, "version", e.Version, "err", err)
	}
}

// PubSubNotifier publishes events to a Pub/Sub topic (conventionally
// "model-published"), with attributes type, model, version and alias so
// subscriptions can filter.
type PubSubNotifier struct {
	pub   *pubsub.Publisher
	owned *pubsub.Client // closed by Stop when DialPubSubNotifier made it
}

// DialPubSubNotifier connects to topic, a full projects/P/topics/T name or
// an ID in project, with its own client (which honours
// PUBSUB_EMULATOR_HOST). Stop closes it.
func DialPubSubNotifier(ctx context.Context, project, topic string, opts ...option.ClientOption) (*PubSubNotifier, error) {
	if parts := strings.Split(topic, "/"); len(parts) == 4 && parts[0] == "projects" && parts[2] == "topics" {
		project = parts[1]
	}
	if project == "" {
		return nil, fmt.Errorf("registry: model-published topic %q: no project (use projects/P/topics/T or set GOOGLE_CLOUD_PROJECT)", topic)
	}
	c, err := pubsub.NewClient(ctx, project, opts...)
	if err != nil {
		return nil, fmt.Errorf("registry: Pub/Sub client for %s: %w", topic, err)
	}
	n := NewPubSubNotifier(c, topic)
	n.owned = c
	return n, nil
}

// NewPubSubNotifier publishes to topic (an ID in the client's project or a
// full projects/P/topics/T name). Call Stop when done.
func NewPubSubNotifier(c *pubsub.Client, topic string) *PubSubNotifier {
	return &PubSubNotifier{pub: c.Publisher(topic)}
}

// Notify implements Notifier; it waits for the publish to be acknowledged.
func (n *PubSubNotifier) Notify(ctx context.Context, e Event) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	attrs := map[string]string{"type": e.Type, "model": e.Model, "version": e.Version}
	if e.Alias != "" {
		attrs["alias"] = e.Alias
	}
	if _, err := n.pub.Publish(ctx, &pubsub.Message{Data: b, Attributes: attrs}).Get(ctx); err != nil {
		return fmt.Errorf("publishing %s event: %w", e.Type, err)
	}
	return nil
}

// Stop flushes and stops the publisher (and closes a client
// DialPubSubNotifier made).
func (n *PubSubNotifier) Stop() {
	n.pub.Stop()
	if n.owned != nil {
		n.owned.Close()
	}
}
