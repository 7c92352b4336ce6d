package eventarc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"cloud.google.com/go/pubsub/v2"

	"github.com/orchard-mlops/orchard/shared/backoff"
	"github.com/orchard-mlops/orchard/shared/errlist"
	"github.com/orchard-mlops/orchard/shared/events"
	"github.com/orchard-mlops/orchard/shared/gcp"
	"github.com/orchard-mlops/orchard/shared/pubsubx"
)

// Kind says what a route's subscription carries.
type Kind int

// Route kinds.
const (
	// Storage: Cloud Storage notifications (fake-gcs-server or GCS itself),
	// delivered as google.cloud.storage.object.v1.* events.
	Storage Kind = iota + 1
	// PubSub: any message, delivered as
	// google.cloud.pubsub.topic.v1.messagePublished.
	PubSub
)

func (k Kind) String() string {
	switch k {
	case Storage:
		return "storage"
	case PubSub:
		return "pubsub"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Route is one Eventarc trigger: a pull subscription whose messages become
// CloudEvents POSTed to Target.
type Route struct {
	// Name identifies the route in logs, results and dead-letter
	// attributes; default the subscription ID.
	Name string
	Kind Kind
	// Topic (projects/P/topics/T) is the topic the subscription reads: the
	// notification topic for Storage, the source topic for PubSub (it
	// becomes the events' ce-source). Setup creates it if missing.
	Topic string
	// Subscription (projects/P/subscriptions/S) is pulled. Setup creates it
	// if missing.
	Subscription string
	// Target is the URL events are POSTed to, e.g.
	// http://127.0.0.1:8080/PredictOnUpload.
	Target string
	// EventTypes are the CloudEvent types forwarded (Storage only; default
	// just StorageFinalized). Other events are acknowledged and dropped, as
	// an Eventarc trigger's event filter does.
	EventTypes []string
	// Bucket, if set, forwards only that bucket's events (Storage only).
	Bucket string
	// DeadLetterTopic (projects/P/topics/T) receives messages that failed
	// Options.MaxAttempts times, or can never be converted. Empty: such
	// messages are logged and dropped, as Eventarc does without one.
	DeadLetterTopic string
}

// Options tune a Bridge. Zero values take the defaults.
type Options struct {
	// MaxAttempts is how many deliveries a message gets before it is
	// dead-lettered (default 5).
	MaxAttempts int
	// MinBackoff and MaxBackoff bound the exponential wait before a failed
	// message is released for redelivery: MinBackoff * 2^(attempt-1),
	// capped at MaxBackoff (defaults 1s and 30s; Eventarc uses 10s-600s).
	MinBackoff, MaxBackoff time.Duration
	// Concurrency bounds the POSTs in flight across all routes (default 4).
	Concurrency int
	// MaxOutstanding bounds the messages each route holds, including those
	// waiting out a backoff (default 4*Concurrency).
	MaxOutstanding int
	// RequestTimeout bounds one POST (default 60s).
	RequestTimeout time.Duration
	// DrainTimeout is how long POSTs in flight when Run's context ends may
	// still finish (default 10s); after that they are cancelled and their
	// messages released for redelivery.
	DrainTimeout time.Duration
	// HTTPClient posts the events (default a plain client).
	HTTPClient *http.Client
	Logger     *slog.Logger
	// OnResult, if set, is called after each message is handled (from many
	// goroutines). For progress display and tests.
	OnResult func(Result)
}

// Outcome is what happened to one delivery of a message.
type Outcome string

// Outcomes.
const (
	Delivered    Outcome = "delivered"     // the target answered 2xx; acked
	Retrying     Outcome = "retrying"      // failed; released for redelivery after a backoff
	DeadLettered Outcome = "dead-lettered" // published to the dead-letter topic; acked
	Dropped      Outcome = "dropped"       // failed for good with no dead-letter topic; acked
	Filtered     Outcome = "filtered"      // not for this route (event type, bucket); acked
	Released     Outcome = "released"      // the bridge is stopping; nacked without counting
)

// Result describes one handled delivery.
type Result struct {
	Route     string
	MessageID string
	EventType string
	Subject   string
	Attempt   int
	Outcome   Outcome
	Status    int   // HTTP status, 0 if none
	Err       error // why it failed, for Retrying, DeadLettered, Dropped
	Latency   time.Duration
}

// Dead-letter attributes, added to the original message's attributes.
const (
	AttrReason       = "orchard-dead-letter-reason"
	AttrAttempts     = "orchard-dead-letter-attempts"
	AttrStatus       = "orchard-dead-letter-status"
	AttrRoute        = "orchard-dead-letter-route"
	AttrTarget       = "orchard-dead-letter-target"
	AttrSubscription = "orchard-dead-letter-subscription"
	AttrMessageID    = "orchard-dead-letter-message-id"
	AttrEventType    = "orchard-dead-letter-event-type"
	AttrTime         = "orchard-dead-letter-time"
)

// Stats counts outcomes per route.
type Stats struct {
	Received, Delivered, Failed, DeadLettered, Dropped, Filtered int64
}

type routeState struct {
	Route
	stats struct {
		received, delivered, failed, deadLettered, dropped, filtered atomic.Int64
	}
}

// Bridge turns messages on pull subscriptions into Eventarc-style
// CloudEvents; see the package documentation.
type Bridge struct {
	client *pubsub.Client
	opts   Options
	routes []*routeState
	log    *slog.Logger
	sem    chan struct{}

	mu       sync.Mutex
	pubs     *pubsubx.Publishers // dead-letter publishers by topic
	attempts map[string]int      // fallback attempt counts, by route + message ID
	running  bool
}

// New checks the routes and returns a bridge using c (an emulator or pstest
// client). Call Setup to create missing topics and subscriptions, then Run.
func New(c *pubsub.Client, o Options, routes ...Route) (*Bridge, error) {
	if c == nil {
		return nil, errors.New("eventarc: nil pubsub client")
	}
	if len(routes) == 0 {
		return nil, errors.New("eventarc: no routes")
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 5
	}
	if o.MaxAttempts > maxDeliveryAttempts {
		return nil, fmt.Errorf("eventarc: MaxAttempts %d is above Pub/Sub's limit %d", o.MaxAttempts, maxDeliveryAttempts)
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 30 * time.Second
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = o.MinBackoff
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 4
	}
	if o.MaxOutstanding <= 0 {
		o.MaxOutstanding = 4 * o.Concurrency
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 60 * time.Second
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = 10 * time.Second
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{}
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b := &Bridge{client: c, opts: o, log: log, sem: make(chan struct{}, o.Concurrency),
		pubs: pubsubx.NewPublishers(c), attempts: map[string]int{}}
	seen := map[string]bool{}
	for _, r := range routes {
		if r.Kind != Storage && r.Kind != PubSub {
			return nil, fmt.Errorf("eventarc: route %q: unknown kind %v", r.Name, r.Kind)
		}
		if !strings.HasPrefix(r.Subscription, "projects/") || !strings.Contains(r.Subscription, "/subscriptions/") {
			return nil, fmt.Errorf("eventarc: route %q: subscription %q: want projects/P/subscriptions/S", r.Name, r.Subscription)
		}
		if _, _, ok := gcp.ParseTopic(r.Topic); !ok {
			return nil, fmt.Errorf("eventarc: route %q: topic %q: want projects/P/topics/T", r.Name, r.Topic)
		}
		if _, _, ok := gcp.ParseTopic(r.DeadLetterTopic); r.DeadLetterTopic != "" && !ok {
			return nil, fmt.Errorf("eventarc: route %q: dead-letter topic %q: want projects/P/topics/T", r.Name, r.DeadLetterTopic)
		}
		if !strings.HasPrefix(r.Target, "http://") && !strings.HasPrefix(r.Target, "https://") {
			return nil, fmt.Errorf("eventarc: route %q: target %q is not an http(s) URL", r.Name, r.Target)
		}
		if r.Name == "" {
			r.Name = r.Subscription[strings.LastIndex(r.Subscription, "/")+1:]
		}
		if seen[r.Subscription] {
			return nil, fmt.Errorf("eventarc: subscription %s is used by two routes: each route needs its own", r.Subscription)
		}
		seen[r.Subscription] = true
		if r.Kind == Storage && len(r.EventTypes) == 0 {
			r.EventTypes = []string{events.StorageFinalized}
		}
		b.routes = append(b.routes, &routeState{Route: r})
	}
	return b, nil
}

// Routes returns the routes, defaults applied.
func (b *Bridge) Routes() []Route {
	out := make([]Route, len(b.routes))
	for i, r := range b.routes {
		out[i] = r.Route
	}
	return out
}

// Stats returns the counters of each route, by route name.
func (b *Bridge) Stats() map[string]Stats {
	m := map[string]Stats{}
	for _, r := range b.routes {
		m[r.Name] = Stats{
			Received: r.stats.received.Load(), Delivered: r.stats.delivered.Load(), Failed: r.stats.failed.Load(),
			DeadLettered: r.stats.deadLettered.Load(), Dropped: r.stats.dropped.Load(), Filtered: r.stats.filtered.Load(),
		}
	}
	return m
}

// Run pulls every route's subscription until ctx ends, then waits for the
// messages in hand (POSTs get DrainTimeout to finish) and returns nil. It
// returns early with an error if a subscription fails for good (e.g. it
// does not exist). Run may be called once at a time.
func (b *Bridge) Run(ctx context.Context) error {
	b.mu.Lock()
	if b.running {
		b.mu.Unlock()
		return errors.New("eventarc: Run is already running")
	}
	b.running = true
	b.mu.Unlock()
	defer func() {
		b.pubs.Close()
		b.mu.Lock()
		b.running = false
		b.mu.Unlock()
	}()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make([]error, len(b.routes))
	var wg sync.WaitGroup
	for i, r := range b.routes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sub := b.client.Subscriber(r.Subscription)
			sub.ReceiveSettings.MaxOutstandingMessages = b.opts.MaxOutstanding
			sub.ReceiveSettings.NumGoroutines = 1
			b.log.Info("eventarc: route started", "route", r.Name, "kind", r.Kind.String(),
				"subscription", r.Subscription, "target", r.Target)
			err := sub.Receive(ctx, func(mctx context.Context, m *pubsub.Message) { b.handle(mctx, r, m) })
			if err != nil {
				errs[i] = fmt.Errorf("eventarc: route %s (%s): %w", r.Name, r.Subscription, err)
				cancel() // one broken route stops the bridge: better loud than half working
			}
		}()
	}
	wg.Wait()
	return errlist.Join(errs...)
}

// convert builds the event for m, or reports that the route filters it out.
func (r *routeState) convert(m *pubsub.Message) (ev *Event, filtered string, err error) {
	switch r.Kind {
	case Storage:
		ev, err = FromStorageNotification(m)
		if err != nil {
			return nil, "", err
		}
		if !slices.Contains(r.EventTypes, ev.Type) {
			return ev, "event type " + ev.Type + " is not routed", nil
		}
		if r.Bucket != "" && m.Attributes["bucketId"] != r.Bucket {
			return ev, "bucket " + m.Attributes["bucketId"] + " is not " + r.Bucket, nil
		}
		return ev, "", nil
	default:
		ev, err = FromPubSubMessage(m, r.Topic, r.Subscription)
		return ev, "", err
	}
}

func (b *Bridge) result(r *routeState, res Result) {
	if b.opts.OnResult != nil {
		b.opts.OnResult(res)
	}
}

// handle delivers one message. mctx ends when Run's context does.
func (b *Bridge) handle(mctx context.Context, r *routeState, m *pubsub.Message) {
	start := time.Now()
	r.stats.received.Add(1)
	res := Result{Route: r.Name, MessageID: m.ID}
	log := b.log.With("route", r.Name, "message_id", m.ID)

	ev, filtered, err := r.convert(m)
	if ev != nil {
		res.EventType, res.Subject = ev.Type, ev.Subject
		log = log.With("event_type", ev.Type, "subject", ev.Subject)
	}
	if err != nil {
		// Retrying cannot help a message that does not convert.
		res.Attempt = b.attempt(r, m)
		res.Err = err
		b.giveUp(mctx, r, m, &res, "malformed: "+err.Error(), log)
		res.Latency = time.Since(start)
		b.result(r, res)
		return
	}
	if filtered != "" {
		m.Ack()
		r.stats.filtered.Add(1)
		log.Debug("eventarc: filtered", "why", filtered)
		res.Outcome = Filtered
		res.Latency = time.Since(start)
		b.result(r, res)
		return
	}

	res.Attempt = b.attempt(r, m)
	status, err := b.post(mctx, r, ev)
	res.Status, res.Latency = status, time.Since(start)
	switch {
	case err == nil:
		m.Ack()
		b.forget(r, m)
		r.stats.delivered.Add(1)
		res.Outcome = Delivered
		log.Info("eventarc: delivered", "attempt", res.Attempt, "status", status, "latency_ms", res.Latency.Milliseconds())
	case mctx.Err() != nil && status == 0:
		// Stopping: the POST was cut short. Redeliver to the next bridge;
		// the attempt does not count against the message here.
		m.Nack()
		res.Outcome, res.Err = Released, err
		log.Info("eventarc: released on shutdown", "attempt", res.Attempt, "error", err.Error())
	case res.Attempt >= b.opts.MaxAttempts:
		r.stats.failed.Add(1)
		res.Err = err
		b.giveUp(mctx, r, m, &res, err.Error(), log)
	default:
		r.stats.failed.Add(1)
		res.Err, res.Outcome = err, Retrying
		wait := b.backoff(res.Attempt)
		log.Warn("eventarc: delivery failed, will retry", "attempt", res.Attempt, "max_attempts", b.opts.MaxAttempts,
			"status", status, "error", err.Error(), "backoff_ms", wait.Milliseconds())
		b.result(r, res)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-mctx.Done():
			t.Stop()
		}
		m.Nack()
		return
	}
	b.result(r, res)
}

// giveUp dead-letters m (or drops it without a dead-letter topic) and acks
// it. If publishing fails the message is nacked instead: the
// subscription's own dead-letter policy (see Setup) is the backstop.
func (b *Bridge) giveUp(ctx context.Context, r *routeState, m *pubsub.Message, res *Result, reason string, log *slog.Logger) {
	if r.DeadLetterTopic == "" {
		m.Ack()
		b.forget(r, m)
		r.stats.dropped.Add(1)
		res.Outcome = Dropped
		log.Error("eventarc: giving up on message (no dead-letter topic): dropped", "attempt", res.Attempt, "reason", reason)
		return
	}
	attrs := make(map[string]string, len(m.Attributes)+9)
	for k, v := range m.Attributes {
		attrs[k] = v
	}
	attrs[AttrReason] = truncate(reason, 1024)
	attrs[AttrAttempts] = strconv.Itoa(res.Attempt)
	if res.Status != 0 {
		attrs[AttrStatus] = strconv.Itoa(res.Status)
	}
	attrs[AttrRoute] = truncate(r.Name, 1024)
	attrs[AttrTarget] = truncate(r.Target, 1024)
	attrs[AttrSubscription] = r.Subscription
	attrs[AttrMessageID] = m.ID
	if res.EventType != "" {
		attrs[AttrEventType] = res.EventType
	}
	attrs[AttrTime] = time.Now().UTC().Format(time.RFC3339Nano)
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	_, err := b.pubs.For(r.DeadLetterTopic).Send(pctx, &pubsub.Message{Data: m.Data, Attributes: attrs, OrderingKey: ""})
	if err != nil {
		m.Nack()
		res.Outcome, res.Err = Retrying, fmt.Errorf("dead-lettering to %s failed (%v) after: %w", r.DeadLetterTopic, err, res.Err)
		log.Error("eventarc: dead-letter publish failed; message released", "attempt", res.Attempt, "error", err.Error())
		return
	}
	m.Ack()
	b.forget(r, m)
	r.stats.deadLettered.Add(1)
	res.Outcome = DeadLettered
	log.Error("eventarc: dead-lettered", "attempt", res.Attempt, "reason", reason, "dead_letter_topic", r.DeadLetterTopic)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}

// attempt is the delivery attempt of m: the server's count when the
// subscription has a dead-letter policy (it survives bridge restarts),
// else the bridge's own count.
func (b *Bridge) attempt(r *routeState, m *pubsub.Message) int {
	if m.DeliveryAttempt != nil && *m.DeliveryAttempt > 0 {
		return *m.DeliveryAttempt
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	k := r.Subscription + "\x00" + m.ID
	b.attempts[k]++
	return b.attempts[k]
}

func (b *Bridge) forget(r *routeState, m *pubsub.Message) {
	b.mu.Lock()
	delete(b.attempts, r.Subscription+"\x00"+m.ID)
	b.mu.Unlock()
}

// backoff is the wait after the attempt-th failure.
func (b *Bridge) backoff(attempt int) time.Duration {
	return backoff.Doubling(b.opts.MinBackoff, b.opts.MaxBackoff, attempt)
}

// post sends ev to the route's target. A non-2xx answer is an error with
// the status; a transport failure has status 0.
func (b *Bridge) post(mctx context.Context, r *routeState, ev *Event) (int, error) {
	select {
	case b.sem <- struct{}{}:
	case <-mctx.Done():
		return 0, mctx.Err()
	}
	defer func() { <-b.sem }()

	// A POST in flight when the bridge stops gets DrainTimeout to finish.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(mctx), b.opts.RequestTimeout)
	defer cancel()
	stop := context.AfterFunc(mctx, func() {
		t := time.NewTimer(b.opts.DrainTimeout)
		defer t.Stop()
		select {
		case <-t.C:
			cancel()
		case <-ctx.Done():
		}
	})
	defer stop()

	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.Target, bytes.NewReader(ev.Data))
	if err != nil {
		return 0, err
	}
	for k, v := range ev.Header() {
		req.Header.Set(k, v)
	}
	resp, err := b.opts.HTTPClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("POST %s: %w", r.Target, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		msg := strings.Join(strings.Fields(string(body)), " ")
		if msg != "" {
			msg = ": " + msg
		}
		return resp.StatusCode, fmt.Errorf("POST %s: target answered %s%s", r.Target, resp.Status, msg)
	}
	return resp.StatusCode, nil
}
