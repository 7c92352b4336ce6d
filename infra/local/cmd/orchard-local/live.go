package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"

	"cloud.google.com/go/aiplatform/apiv1/aiplatformpb"
	"cloud.google.com/go/pubsub/v2"

	"github.com/orchard-mlops/orchard/infra/local/eventarc"
	"github.com/orchard-mlops/orchard/infra/local/stack"
	"github.com/orchard-mlops/orchard/shared/registry"
)

// liveLog writes timestamped lines from several goroutines.
type liveLog struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *liveLog) printf(format string, a ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.w, "  %s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, a...))
}

// follow prints what the stack does until ctx ends: Vertex jobs (start,
// log path, end state), registry events (gate decisions, promotions,
// rollbacks), PredictOnUpload results and dead letters. It reads its own
// subscriptions, so the ones the banner tells people to pull keep their
// messages. The returned channel closes when it has stopped.
func follow(ctx context.Context, w io.Writer, s *stack.Stack, v *stack.Vertex) <-chan struct{} {
	l := &liveLog{w: w}
	var wg sync.WaitGroup
	c := s.Config
	subs := []struct {
		topic string
		print func(*pubsub.Message)
	}{
		{c.ModelsTopic, func(m *pubsub.Message) { printRegistryEvent(l, m.Data) }},
		{c.PredictionsTopic, func(m *pubsub.Message) { printResult(l, m.Data) }},
		{c.DeadLetterTopic, func(m *pubsub.Message) {
			l.printf("dead letter: %.200s (attributes %v)", m.Data, m.Attributes)
		}},
	}
	for _, sub := range subs {
		name := s.Subscription("orchard-local-up-log-" + sub.topic)
		if err := eventarc.EnsureSubscription(ctx, s.PubSub, name, s.Topic(sub.topic), eventarc.SubscriptionOptions{}); err != nil {
			l.printf("live log: cannot follow %s: %v", sub.topic, err)
			continue
		}
		wg.Go(func() {
			err := s.PubSub.Subscriber(name).Receive(ctx, func(_ context.Context, m *pubsub.Message) {
				m.Ack()
				sub.print(m)
			})
			if err != nil && ctx.Err() == nil {
				l.printf("live log: %s stopped: %v", sub.topic, err)
			}
		})
	}
	if v != nil {
		wg.Go(func() { followJobs(ctx, l, v) })
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	return done
}

// followJobs polls the Vertex stand-in's jobs and prints each change.
func followJobs(ctx context.Context, l *liveLog, v *stack.Vertex) {
	seen := map[string]aiplatformpb.JobState{}
	for {
		for _, j := range v.Server.Jobs() {
			name, state := j.GetName(), j.GetState()
			old, known := seen[name]
			switch {
			case !known:
				l.printf("training job %s (%s) %s; log: %s", name, j.GetDisplayName(), stateWord(state), v.Server.LogPath(name))
			case old != state:
				msg := ""
				if e := j.GetError().GetMessage(); e != "" {
					msg = ": " + e
				}
				l.printf("training job %s %s%s", name, stateWord(state), msg)
			}
			seen[name] = state
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

func stateWord(s aiplatformpb.JobState) string {
	switch s {
	case aiplatformpb.JobState_JOB_STATE_QUEUED, aiplatformpb.JobState_JOB_STATE_PENDING:
		return "queued"
	case aiplatformpb.JobState_JOB_STATE_RUNNING:
		return "running"
	case aiplatformpb.JobState_JOB_STATE_SUCCEEDED:
		return "succeeded"
	case aiplatformpb.JobState_JOB_STATE_FAILED:
		return "FAILED"
	case aiplatformpb.JobState_JOB_STATE_CANCELLED:
		return "cancelled"
	}
	return s.String()
}

func printRegistryEvent(l *liveLog, data []byte) {
	var e registry.Event
	if err := json.Unmarshal(data, &e); err != nil {
		l.printf("registry event (unreadable: %v): %.200s", err, data)
		return
	}
	what := "not promoted"
	if e.Promoted {
		what = "promoted to " + cmp.Or(e.Alias, registry.Production)
	}
	reason := ""
	if e.Reason != "" {
		reason = " (" + e.Reason + ")"
	}
	l.printf("registry: %s %s %s: %s%s", e.Type, e.Model, e.Version, what, reason)
}

func printResult(l *liveLog, data []byte) {
	var r stack.Result
	if err := json.Unmarshal(data, &r); err != nil {
		l.printf("upload result (unreadable: %v): %.200s", err, data)
		return
	}
	version := ""
	if r.Model != nil {
		version = " with " + r.Model.Name + " " + r.Model.Version
	}
	if r.Error != "" {
		l.printf("upload gs://%s/%s: ERROR %s (%s)%s", r.Bucket, r.Name, r.Error, r.Kind, version)
		return
	}
	l.printf("upload gs://%s/%s → %s %.3f%s, %.0f ms", r.Bucket, r.Name, r.Label, r.Score, version, r.LatencyMS)
}
