package registry

import (
	"context"
	"time"
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

// Notifier is told about registry changes (shared/pubsubx.ModelNotifier
// publishes them to Pub/Sub).
type Notifier interface {
	Notify(ctx context.Context, e Event) error
}

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
