package submittraining_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	aiplatform "cloud.google.com/go/aiplatform/apiv1"
	"cloud.google.com/go/aiplatform/apiv1/aiplatformpb"
	"github.com/cloudevents/sdk-go/v2/event"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/orchard-mlops/orchard/functions/submittraining"
	"github.com/orchard-mlops/orchard/infra/vertexlocal"
	"github.com/orchard-mlops/orchard/shared/events"
)

func TestParseRequest(t *testing.T) {
	tests := []struct {
		name       string
		body       string
		allowLocal bool
		want       string // error substring; "" = valid
	}{
		{"minimal", `{"dataset":"gs://orchard-data/fruits","model":"fruits"}`, false, ""},
		{"full", `{"dataset":"gs://orchard-data/fruits/v2","model":"fruits-2","overrides":["train.epochs=3","model.widths=[8,16]"],"requester":"alice@example.com","notes":"more apples","allow_new_labels":true}`, false, ""},
		{"local path allowed", `{"dataset":"/data/fruits","model":"fruits"}`, true, ""},
		{"file uri allowed", `{"dataset":"file:///data/fruits","model":"fruits"}`, true, ""},
		{"local path refused", `{"dataset":"/data/fruits","model":"fruits"}`, false, "gs://bucket/path"},
		{"relative path", `{"dataset":"data/fruits","model":"fruits"}`, true, "must be gs://"},
		{"other scheme", `{"dataset":"s3://b/fruits","model":"fruits"}`, true, "must be gs://"},
		{"bad bucket", `{"dataset":"gs://B/x","model":"fruits"}`, false, "bucket"},
		{"dot dot", `{"dataset":"gs://bucket/a/../b","model":"fruits"}`, false, ".."},
		{"no dataset", `{"model":"fruits"}`, false, "dataset is required"},
		{"unknown field", `{"dataset":"gs://bucket/x","model":"fruits","epochs":3}`, false, `unknown field "epochs"`},
		{"trailing data", `{"dataset":"gs://bucket/x","model":"fruits"} {}`, false, "trailing"},
		{"not json", `train fruits please`, false, "decoding JSON"},
		{"empty", ``, false, "decoding JSON"},
		{"uppercase model", `{"dataset":"gs://bucket/x","model":"Fruits"}`, false, "model"},
		{"long model", `{"dataset":"gs://bucket/x","model":"` + strings.Repeat("a", 64) + `"}`, false, "model"},
		{"override syntax", `{"dataset":"gs://bucket/x","model":"fruits","overrides":["Train.Epochs=3"]}`, false, "override"},
		{"override no value", `{"dataset":"gs://bucket/x","model":"fruits","overrides":["train.epochs="]}`, false, "override"},
		{"override newline", `{"dataset":"gs://bucket/x","model":"fruits","overrides":["train.epochs=3\n-publish"]}`, false, "override"},
		{"override flag injection", `{"dataset":"gs://bucket/x","model":"fruits","overrides":["-publish=x"]}`, false, "override"},
		{"reserved name", `{"dataset":"gs://bucket/x","model":"fruits","overrides":["name=other"]}`, false, "model name comes from"},
		{"reserved data", `{"dataset":"gs://bucket/x","model":"fruits","overrides":["data.uri=gs://x/y"]}`, false, "dataset comes from"},
		{"tiny validation split", `{"dataset":"gs://bucket/x","model":"fruits","overrides":["data.validation_fraction=0.01"]}`, false, "validation split is the operator's"},
		{"test dir", `{"dataset":"gs://bucket/x","model":"fruits","overrides":["data.test_dir=Easy"]}`, false, "validation split is the operator's"},
		{"version", `{"dataset":"gs://bucket/x","model":"fruits","overrides":["version=v9"]}`, false, "assigned by the trainer"},
		{"pixel cap", `{"dataset":"gs://bucket/x","model":"fruits","overrides":["data.max_image_pixels=999999999999"]}`, false, "decoding limits"},
		{"misspelt key", `{"dataset":"gs://bucket/x","model":"fruits","overrides":["train.epochz=3"]}`, false, "unknown key"},
		{"epochs over bound", `{"dataset":"gs://bucket/x","model":"fruits","overrides":["train.epochs=100000"]}`, false, "above the operator's bound 50"},
		{"width over bound", `{"dataset":"gs://bucket/x","model":"fruits","overrides":["model.widths=[8,4096]"]}`, false, "above the operator's bound"},
		{"input over bound", `{"dataset":"gs://bucket/x","model":"fruits","overrides":["model.input_size=1024"]}`, false, "model.input_size=1024"},
		{"epochs below range", `{"dataset":"gs://bucket/x","model":"fruits","overrides":["train.epochs=0"]}`, false, "train.epochs must be >= 1"},
		{"wrong type", `{"dataset":"gs://bucket/x","model":"fruits","overrides":"train.epochs=3"}`, false, "decoding JSON"},
		{"all problems at once", `{"dataset":"x","model":"X","overrides":["bad"]}`, false, "model \"X\""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := submittraining.ParseRequest([]byte(tt.body), submittraining.Policy{AllowLocalData: tt.allowLocal})
			if tt.want == "" {
				if err != nil {
					t.Fatalf("valid request refused: %v", err)
				}
				if r.Model == "" {
					t.Error("model not decoded")
				}
				return
			}
			if err == nil || !errors.Is(err, submittraining.ErrInvalidRequest) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want ErrInvalidRequest mentioning %q", err, tt.want)
			}
		})
	}
}

// TestParseRequestOneLine: a request with several problems, some of them
// the trainer config's own list, is refused with all of them on one line,
// since the message is a single log field (and the user's only answer).
func TestParseRequestOneLine(t *testing.T) {
	body := `{"dataset":"x","model":"X","overrides":["train.epochs=100000","model.widths=[8,4096]"]}`
	_, err := submittraining.ParseRequest([]byte(body), submittraining.Policy{})
	if err == nil || !errors.Is(err, submittraining.ErrInvalidRequest) {
		t.Fatalf("err = %v, want ErrInvalidRequest", err)
	}
	msg := err.Error()
	for _, want := range []string{"dataset", `model "X"`, "train.epochs", "model.widths"} {
		if !strings.Contains(msg, want) {
			t.Errorf("%q does not mention %s", msg, want)
		}
	}
	if strings.ContainsAny(msg, "\r\n") {
		t.Errorf("message spans lines: %q", msg)
	}
}

func TestLabelValueAndJobNames(t *testing.T) {
	tests := []struct{ in, want string }{
		{"1234567890", "1234567890"},
		{"abc_DEF", "abc_def-"},
		{strings.Repeat("9", 80), strings.Repeat("9", 52) + "-"},
	}
	for _, tt := range tests {
		got := submittraining.LabelValue(tt.in)
		if !strings.HasPrefix(got, tt.want) || len(got) > 63 {
			t.Errorf("LabelValue(%q) = %q, want prefix %q, at most 63", tt.in, got, tt.want)
		}
	}
	if submittraining.LabelValue("A") == submittraining.LabelValue("a-") {
		t.Error("distinct inputs collide")
	}
	d, l := submittraining.JobNames("fruits", "17592186044416")
	if d != "orchard-train-fruits-17592186044416" || l != "17592186044416" {
		t.Errorf("JobNames = %q, %q", d, l)
	}
	got := (&submittraining.Request{Dataset: "gs://b/d", Model: "fruits", Overrides: []string{"train.epochs=1"}, AllowNewLabels: true}).Job("gs://reg/r").Args()
	want := []string{"train", "-data", "gs://b/d", "-name", "fruits", "-set", "train.epochs=1", "-publish", "gs://reg/r", "-allow-new-labels"}
	if !slices.Equal(got, want) {
		t.Errorf("Args = %q, want %q", got, want)
	}
}

func TestConfigFromEnv(t *testing.T) {
	full := map[string]string{
		"GOOGLE_CLOUD_PROJECT": "p", "VERTEX_REGION": "europe-west1", "TRAINER_IMAGE": "img",
		"TRAINING_OUTPUT_URI": "gs://b/runs/", "REGISTRY_URI": "gs://b/registry",
	}
	with := func(kv ...string) func(string) string {
		m := map[string]string{}
		for k, v := range full {
			m[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return func(k string) string { return m[k] }
	}
	c, err := submittraining.ConfigFromEnv(with())
	if err != nil {
		t.Fatal(err)
	}
	if c.Insecure || c.MachineType != "n1-standard-4" || c.OutputURI != "gs://b/runs" || c.Timeout != 2*time.Hour {
		t.Errorf("defaults: %+v", c)
	}
	if c, _ := submittraining.ConfigFromEnv(with("VERTEX_ENDPOINT", "127.0.0.1:8089")); !c.Insecure {
		t.Error("a loopback endpoint should default to insecure")
	}
	if c, _ := submittraining.ConfigFromEnv(with("VERTEX_ENDPOINT", "vertex.example.com:443")); c.Insecure {
		t.Error("a remote endpoint must not default to insecure")
	}
	for _, bad := range [][]string{
		{"TRAINER_IMAGE", ""}, {"GOOGLE_CLOUD_PROJECT", ""}, {"TRAINING_OUTPUT_URI", "/tmp/runs"},
		{"VERTEX_INSECURE", "maybe"}, {"TRAINING_TIMEOUT", "soon"},
	} {
		if _, err := submittraining.ConfigFromEnv(with(bad...)); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

// vertex starts the stand-in behind an interceptor that can inject errors.
type vertex struct {
	srv    *vertexlocal.Server
	addr   string
	fail   atomic.Value // func(method string) error
	client *aiplatform.JobClient
}

func startVertex(t *testing.T, images map[string][]string) *vertex {
	t.Helper()
	srv, err := vertexlocal.NewServer(vertexlocal.Config{Images: images, LogDir: t.TempDir(), MaxConcurrent: 4, KillGrace: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	v := &vertex{srv: srv}
	v.fail.Store(func(string) error { return nil })
	g := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if err := v.fail.Load().(func(string) error)(info.FullMethod); err != nil {
			return nil, err
		}
		return h(ctx, req)
	}))
	srv.Register(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go g.Serve(lis)
	t.Cleanup(func() { g.Stop(); srv.Close() })
	v.addr = lis.Addr().String()
	v.client, err = aiplatform.NewJobClient(t.Context(), option.WithEndpoint(v.addr), option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.client.Close() })
	return v
}

func testConfig(endpoint, image string) submittraining.Config {
	return submittraining.Config{Project: "p", Region: "europe-west1", Endpoint: endpoint, Insecure: true,
		TrainerImage: image, MachineType: "e2-standard-4", ServiceAccount: "trainer@p.iam.gserviceaccount.com",
		OutputURI: "gs://orchard-runs/runs", RegistryURI: "gs://orchard-models/registry", Timeout: time.Hour,
		ModelPublishedTopic: "projects/p/topics/model-published"}
}

// cloudEvent builds what the functions framework hands the function for a
// Pub/Sub push.
func cloudEvent(t testing.TB, msgID string, data []byte) event.Event {
	t.Helper()
	e := event.New()
	e.SetID(msgID)
	e.SetType("google.cloud.pubsub.topic.v1.messagePublished")
	e.SetSource("//pubsub.googleapis.com/projects/p/topics/training-requests")
	body := events.MessagePublishedData{
		Message:      events.PubSubMessage{Data: data, MessageID: msgID, Attributes: map[string]string{"k": "v"}},
		Subscription: "projects/p/subscriptions/submit-training",
	}
	if err := e.SetData("application/json", body); err != nil {
		t.Fatal(err)
	}
	return e
}

// jobEnv renders a container's environment as sorted KEY=VALUE words.
func jobEnv(cs *aiplatformpb.ContainerSpec) string {
	var kv []string
	for _, e := range cs.GetEnv() {
		kv = append(kv, e.GetName()+"="+e.GetValue())
	}
	sort.Strings(kv)
	return strings.Join(kv, " ")
}

func jobs(t *testing.T, v *vertex) []*aiplatformpb.CustomJob { t.Helper(); return v.srv.Jobs() }

func TestHandleEvent(t *testing.T) {
	v := startVertex(t, map[string][]string{"trainer:test": {"/bin/sh", "-c", "sleep 0.2", "sh"}})
	sub, err := submittraining.NewSubmitter(t.Context(), testConfig(v.addr, "trainer:test"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	ctx := t.Context()
	good := []byte(`{"dataset":"gs://orchard-data/fruits","model":"fruits","overrides":["train.epochs=1"],"requester":"Alice@Example.com","notes":"new photos"}`)

	if err := sub.HandleEvent(ctx, cloudEvent(t, "1001", good)); err != nil {
		t.Fatalf("valid request: %v", err)
	}
	js := jobs(t, v)
	if len(js) != 1 {
		t.Fatalf("%d jobs, want 1", len(js))
	}
	j := js[0]
	cs := j.GetJobSpec().GetWorkerPoolSpecs()[0].GetContainerSpec()
	wantArgs := []string{"train", "-data", "gs://orchard-data/fruits", "-name", "fruits", "-set", "train.epochs=1",
		"-publish", "gs://orchard-models/registry"}
	checks := []struct {
		what      string
		got, want any
	}{
		{"display name", j.GetDisplayName(), "orchard-train-fruits-1001"},
		{"msg label", j.GetLabels()[submittraining.LabelMessageID], "1001"},
		{"model label", j.GetLabels()[submittraining.LabelModel], "fruits"},
		{"image", cs.GetImageUri(), "trainer:test"},
		{"args", strings.Join(cs.GetArgs(), " "), strings.Join(wantArgs, " ")},
		{"output", j.GetJobSpec().GetBaseOutputDirectory().GetOutputUriPrefix(), "gs://orchard-runs/runs/orchard-train-fruits-1001"},
		{"service account", j.GetJobSpec().GetServiceAccount(), "trainer@p.iam.gserviceaccount.com"},
		{"machine", j.GetJobSpec().GetWorkerPoolSpecs()[0].GetMachineSpec().GetMachineType(), "e2-standard-4"},
		{"timeout", j.GetJobSpec().GetScheduling().GetTimeout().AsDuration(), time.Hour},
		{"env", jobEnv(cs), "GOOGLE_CLOUD_PROJECT=p MODEL_PUBLISHED_TOPIC=projects/p/topics/model-published ORCHARD_MESSAGE_ID=1001 ORCHARD_NOTES=new photos ORCHARD_REQUESTER=Alice@Example.com"},
	}
	for _, c := range checks {
		if fmt.Sprint(c.got) != fmt.Sprint(c.want) {
			t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
		}
	}
	if r := j.GetLabels()[submittraining.LabelRequester]; !strings.HasPrefix(r, "alice-example-com-") {
		t.Errorf("requester label %q", r)
	}

	t.Run("redelivery submits nothing", func(t *testing.T) {
		for range 3 {
			if err := sub.HandleEvent(ctx, cloudEvent(t, "1001", good)); err != nil {
				t.Fatal(err)
			}
		}
		if n := len(jobs(t, v)); n != 1 {
			t.Errorf("%d jobs after redeliveries, want 1", n)
		}
	})

	t.Run("poison messages are acknowledged", func(t *testing.T) {
		for i, data := range [][]byte{[]byte("not json"), []byte(`{"dataset":"s3://x/y","model":"fruits"}`), []byte(`{"model":"fruits","dataset":"gs://b/x","extra":1}`)} {
			if err := sub.HandleEvent(ctx, cloudEvent(t, fmt.Sprint(2000+i), data)); err != nil {
				t.Errorf("poison %q returned %v; it would be redelivered forever", data, err)
			}
		}
		bad := event.New()
		bad.SetID("x")
		bad.SetType("google.cloud.pubsub.topic.v1.messagePublished")
		bad.SetSource("//x")
		_ = bad.SetData("application/json", []byte(`"not an envelope"`))
		if err := sub.HandleEvent(ctx, bad); err != nil {
			t.Errorf("bad envelope: %v", err)
		}
		if n := len(jobs(t, v)); n != 1 {
			t.Errorf("%d jobs after poison messages, want 1", n)
		}
	})

	t.Run("transient errors are retried", func(t *testing.T) {
		var calls atomic.Int32
		v.fail.Store(func(m string) error {
			if strings.HasSuffix(m, "/CreateCustomJob") && calls.Add(1) == 1 {
				return status.Error(codes.Unavailable, "try again")
			}
			return nil
		})
		defer v.fail.Store(func(string) error { return nil })
		err := sub.HandleEvent(ctx, cloudEvent(t, "3000", good))
		if err == nil || !submittraining.Transient(err) {
			t.Fatalf("Unavailable gave %v, want an error (redelivery)", err)
		}
		// gax retries Unavailable for some RPCs; either way, the redelivery creates exactly one job.
		if err := sub.HandleEvent(ctx, cloudEvent(t, "3000", good)); err != nil {
			t.Fatalf("redelivery: %v", err)
		}
		n := 0
		for _, j := range jobs(t, v) {
			if j.GetLabels()[submittraining.LabelMessageID] == "3000" {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%d jobs for message 3000, want 1", n)
		}
	})

	t.Run("permanent errors are acknowledged", func(t *testing.T) {
		v.fail.Store(func(m string) error {
			if strings.HasSuffix(m, "/CreateCustomJob") {
				return status.Error(codes.InvalidArgument, "machine type not available")
			}
			return nil
		})
		defer v.fail.Store(func(string) error { return nil })
		if err := sub.HandleEvent(ctx, cloudEvent(t, "4000", good)); err != nil {
			t.Errorf("InvalidArgument returned %v; want nil (acknowledged)", err)
		}
	})

	t.Run("unmapped image is permanent", func(t *testing.T) {
		other, err := submittraining.NewSubmitter(ctx, testConfig(v.addr, "trainer:unknown"), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer other.Close()
		if err := other.HandleEvent(ctx, cloudEvent(t, "5000", good)); err != nil {
			t.Errorf("got %v, want nil", err)
		}
	})
}

// TestConcurrentDeliveries races deliveries of one message: exactly one job
// survives, the others are cancelled.
func TestConcurrentDeliveries(t *testing.T) {
	v := startVertex(t, map[string][]string{"trainer:test": {"/bin/sh", "-c", "sleep 5", "sh"}})
	good := []byte(`{"dataset":"gs://orchard-data/fruits","model":"fruits"}`)
	var wg sync.WaitGroup
	for range 4 {
		sub, err := submittraining.NewSubmitter(t.Context(), testConfig(v.addr, "trainer:test"), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
		wg.Go(func() {
			if err := sub.HandleEvent(t.Context(), cloudEvent(t, "42", good)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	live := 0
	for _, j := range jobs(t, v) {
		switch j.GetState() {
		case aiplatformpb.JobState_JOB_STATE_CANCELLING, aiplatformpb.JobState_JOB_STATE_CANCELLED:
		default:
			live++
		}
	}
	if live != 1 {
		t.Errorf("%d live jobs for one message (of %d created), want 1", live, len(jobs(t, v)))
	}
}
