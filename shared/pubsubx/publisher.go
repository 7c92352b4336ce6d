// Package pubsubx is Orchard's one Pub/Sub publisher: every producer (the
// result messages of PredictOnUpload, model-published events, training
// requests, dead letters, the local Eventarc bridge) publishes through it,
// one message at a time, waiting for the server's acknowledgement. Topic
// names follow shared/gcp's rule.
package pubsubx

import (
	"context"
	"fmt"
	"sync"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"google.golang.org/api/option"

	"github.com/orchard-mlops/orchard/shared/gcp"
)

// Publisher publishes to one topic.
type Publisher struct {
	topic string // full name
	pub   *pubsub.Publisher
	owned *pubsub.Client // closed by Close when Dial made it
}

// Dial connects to topic, an ID in project or a full projects/P/topics/T
// name, with a client of its own (which honours PUBSUB_EMULATOR_HOST).
// Close closes it.
func Dial(ctx context.Context, project, topic string, opts ...option.ClientOption) (*Publisher, error) {
	name, err := gcp.TopicName(project, topic)
	if err != nil {
		return nil, err
	}
	c, err := pubsub.NewClient(ctx, gcp.TopicProject(project, topic), opts...)
	if err != nil {
		return nil, fmt.Errorf("Pub/Sub client for %s: %w", name, err)
	}
	p := New(c, name)
	p.owned = c
	return p, nil
}

// New publishes to topic (an ID in the client's project or a full
// projects/P/topics/T name) with c, which stays the caller's.
func New(c *pubsub.Client, topic string) *Publisher {
	name, err := gcp.TopicName(c.Project(), topic)
	if err != nil {
		name = topic // the publish reports the bad name
	}
	p := c.Publisher(topic)
	// One message per call, each waited for: do not wait to fill a batch.
	p.PublishSettings.DelayThreshold = time.Millisecond
	return &Publisher{topic: name, pub: p}
}

// Topic is the full topic name.
func (p *Publisher) Topic() string { return p.topic }

// Send publishes m and waits for the server's acknowledgement; it returns
// the message ID.
func (p *Publisher) Send(ctx context.Context, m *pubsub.Message) (string, error) {
	id, err := p.pub.Publish(ctx, m).Get(ctx)
	if err != nil {
		return "", fmt.Errorf("publishing to %s: %w", p.topic, err)
	}
	return id, nil
}

// Publish sends data with attrs and waits for the acknowledgement.
func (p *Publisher) Publish(ctx context.Context, data []byte, attrs map[string]string) error {
	_, err := p.Send(ctx, &pubsub.Message{Data: data, Attributes: attrs})
	return err
}

// Close flushes and stops the publisher, and closes the client Dial made.
func (p *Publisher) Close() error {
	p.pub.Stop()
	if p.owned != nil {
		return p.owned.Close()
	}
	return nil
}

// Publishers are publishers to many topics over one client, made on first
// use (dead letters go back to whichever topic they came from). Safe for
// concurrent use.
type Publishers struct {
	c  *pubsub.Client
	mu sync.Mutex
	m  map[string]*Publisher
}

// NewPublishers publishes with c, which stays the caller's.
func NewPublishers(c *pubsub.Client) *Publishers {
	return &Publishers{c: c, m: map[string]*Publisher{}}
}

// For is the publisher to topic.
func (s *Publishers) For(topic string) *Publisher {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.m[topic]
	if p == nil {
		p = New(s.c, topic)
		s.m[topic] = p
	}
	return p
}

// Close flushes and stops every publisher.
func (s *Publishers) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.m {
		_ = p.Close()
	}
	s.m = map[string]*Publisher{}
}
