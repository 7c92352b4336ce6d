package eventarc

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"

	"github.com/orchard-mlops/orchard/shared/emulators"
)

func TestMain(m *testing.M) { os.Exit(emulators.RunTests(m)) }

// fast are test options: small backoffs, quick drain.
func fast() Options {
	return Options{MinBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond, DrainTimeout: time.Second}
}

// request is what the target received.
type request struct {
	Header http.Header
	Body   []byte
	At     time.Time
}

// target is an httptest server recording requests; answer picks the
// status of the n-th request (1-based).
type target struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []request
	got  chan request
}

func newTarget(t *testing.T, answer func(n int, r *http.Request) int) *target {
	t.Helper()
	tg := &target{got: make(chan request, 1000)}
	tg.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rq := request{Header: r.Header.Clone(), Body: body, At: time.Now()}
		tg.mu.Lock()
		tg.reqs = append(tg.reqs, rq)
		n := len(tg.reqs)
		tg.mu.Unlock()
		code := http.StatusOK
		if answer != nil {
			code = answer(n, r)
		}
		w.WriteHeader(code)
		if code >= 300 {
			io.WriteString(w, "target says no")
		}
		tg.got <- rq
	}))
	t.Cleanup(tg.Close)
	return tg
}

func (tg *target) count() int {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	return len(tg.reqs)
}

// wait returns the next request or fails t after d.
func (tg *target) wait(t *testing.T, d time.Duration) request {
	t.Helper()
	select {
	case r := <-tg.got:
		return r
	case <-time.After(d):
		t.Fatalf("target got no request within %v (%d so far)", d, tg.count())
		return request{}
	}
}

// parse reads a recorded request as a CloudEvent with the SDK the
// Functions Framework uses.
func (r request) parse(t *testing.T) *event.Event {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "/", bytes.NewReader(r.Body))
	req.Header = r.Header.Clone()
	ev, err := cehttp.NewEventFromHTTPRequest(req)
	if err != nil {
		t.Fatalf("not a CloudEvent: %v (headers %v)", err, r.Header)
	}
	if err := ev.Validate(); err != nil {
		t.Fatalf("invalid CloudEvent: %v", err)
	}
	return ev
}

// results collects OnResult calls.
type results struct {
	mu  sync.Mutex
	all []Result
	ch  chan Result
}

func newResults() *results { return &results{ch: make(chan Result, 1000)} }

func (rs *results) add(r Result) {
	rs.mu.Lock()
	rs.all = append(rs.all, r)
	rs.mu.Unlock()
	rs.ch <- r
}

// waitFor returns the first result with outcome o, failing after d.
func (rs *results) waitFor(t *testing.T, o Outcome, d time.Duration) Result {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case r := <-rs.ch:
			if r.Outcome == o {
				return r
			}
		case <-deadline:
			rs.mu.Lock()
			defer rs.mu.Unlock()
			t.Fatalf("no %s result within %v; results: %+v", o, d, rs.all)
			return Result{}
		}
	}
}

func (rs *results) count(o Outcome) int {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	n := 0
	for _, r := range rs.all {
		if r.Outcome == o {
			n++
		}
	}
	return n
}

// env is a Pub/Sub emulator project for one test.
type env struct {
	ps      *emulators.PubSub
	client  *pubsub.Client
	project string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	p := emulators.UniqueName(t)
	ps := emulators.PubSubForTest(t, p)
	return &env{ps: ps, client: ps.ClientForTest(t), project: p}
}

func (e *env) topic(id string) string { return "projects/" + e.project + "/topics/" + id }
func (e *env) sub(id string) string   { return "projects/" + e.project + "/subscriptions/" + id }

// start sets up and runs b until the test ends; it checks Run returned nil.
func start(t *testing.T, b *Bridge) (stop func()) {
	t.Helper()
	if err := b.Setup(t.Context()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(20 * time.Second):
				t.Errorf("Run did not return within 20s of cancel")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// publish publishes and waits for the ID.
func (e *env) publish(t *testing.T, topic string, m *pubsub.Message) string {
	t.Helper()
	p := e.client.Publisher(topic)
	defer p.Stop()
	id, err := p.Publish(t.Context(), m).Get(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// drain pulls what a subscription holds for d and returns it (acked).
func (e *env) drain(t *testing.T, sub string, want int, d time.Duration) []*pubsub.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	var mu sync.Mutex
	var out []*pubsub.Message
	err := e.client.Subscriber(sub).Receive(ctx, func(_ context.Context, m *pubsub.Message) {
		m.Ack()
		mu.Lock()
		out = append(out, m)
		if want > 0 && len(out) >= want {
			cancel()
		}
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	return out
}
