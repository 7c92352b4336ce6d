package events

import (
	"encoding/json"
	"fmt"
)

// MessagePublishedData is the body of a
// google.cloud.pubsub.topic.v1.messagePublished event (the Functions
// Framework builds the same shape from a raw push body).
type MessagePublishedData struct {
	Message      PubSubMessage `json:"message"`
	Subscription string        `json:"subscription"`
}

// PubSubMessage is a Pub/Sub message as delivered in a push or CloudEvent:
// data is base64 in JSON, which encoding/json decodes into []byte.
type PubSubMessage struct {
	Data        []byte            `json:"data,omitempty"`
	Attributes  map[string]string `json:"attributes"`
	MessageID   string            `json:"messageId"`
	PublishTime string            `json:"publishTime"` // RFC 3339; text, so an odd format cannot make the event unreadable
	OrderingKey string            `json:"orderingKey,omitempty"`
	// Eventarc and the push envelope repeat the ID and time in snake_case
	// for older clients.
	MessageIDSnake   string `json:"message_id"`
	PublishTimeSnake string `json:"publish_time"`
}

// ID returns the message ID in either spelling.
func (m *PubSubMessage) ID() string {
	if m.MessageID != "" {
		return m.MessageID
	}
	return m.MessageIDSnake
}

// DecodeMessagePublished decodes a messagePublished event body.
func DecodeMessagePublished(body []byte) (*MessagePublishedData, error) {
	var d MessagePublishedData
	if err := json.Unmarshal(body, &d); err != nil {
		return nil, fmt.Errorf("decoding a messagePublished body: %w", err)
	}
	return &d, nil
}
