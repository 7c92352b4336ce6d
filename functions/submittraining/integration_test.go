package submittraining_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"cloud.google.com/go/aiplatform/apiv1/aiplatformpb"
	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"github.com/GoogleCloudPlatform/functions-framework-go/funcframework"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"

	// The real registration of SubmitTraining (functions/submit_training.go).
	_ "github.com/orchard-mlops/orchard/functions"
	"github.com/orchard-mlops/orchard/functions/submittraining"
	"github.com/orchard-mlops/orchard/infra/vertexlocal"
	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/shared/emulators"
	"github.com/orchard-mlops/orchard/shared/events"
	"github.com/orchard-mlops/orchard/shared/model"
	"github.com/orchard-mlops/orchard/shared/model/modeltest"
	"github.com/orchard-mlops/orchard/shared/modelsource"
	"github.com/orchard-mlops/orchard/shared/onnxrt"
	"github.com/orchard-mlops/orchard/shared/onnxrt/onnxrttest"
	"github.com/orchard-mlops/orchard/shared/proc"
	"github.com/orchard-mlops/orchard/shared/registry"
	"github.com/orchard-mlops/orchard/shared/training"
	"github.com/orchard-mlops/orchard/trainer/trainertest"
)

// TestMain doubles as the stand-in trainer: vertexlocal runs this test
// binary with ORCHARD_FAKE_TRAINER=1 and the job's container args.
func TestMain(m *testing.M) {
	if os.Getenv("ORCHARD_FAKE_TRAINER") == "1" {
		os.Exit(fakeTrainer(os.Args[1:]))
	}
	os.Exit(emulators.RunTests(m))
}

// fakeTrainer implements the trainer's command-line contract that
// SubmitTraining relies on,
//
//	train -data DIR -name N [-set k=v ...] -publish REGISTRY [-allow-new-labels]
//
// without training: the "dataset" holds a ready model under seed/, which is
// written to AIP_MODEL_DIR (with the name from -name and the version
// "m<message ID>", as requests may not choose versions) and then
// published with registry.Publish, as the real trainer's -publish step
// should. With ORCHARD_REAL_TRAINER set it execs that binary instead.
func fakeTrainer(args []string) int {
	if real := os.Getenv("ORCHARD_REAL_TRAINER"); real != "" {
		err := syscall.Exec(real, append([]string{real}, args...), os.Environ())
		fmt.Fprintln(os.Stderr, "fake trainer: exec:", err)
		return 1
	}
	if len(args) == 0 || args[0] != "train" {
		fmt.Fprintf(os.Stderr, "fake trainer: want 'train ...', got %q\n", args)
		return 2
	}
	job, err := training.Parse(args, os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake trainer:", err)
		return 2
	}
	fail := func(err error) int { fmt.Fprintln(os.Stderr, "fake trainer:", err); return 1 }
	ctx := context.Background()
	m, err := model.Load(ctx, nil, filepath.Join(job.Dataset, "seed"))
	if err != nil {
		return fail(err)
	}
	m.Metadata.Name = job.Model
	for _, s := range job.Overrides {
		k, _, _ := strings.Cut(s, "=")
		switch k {
		case "train.epochs":
		default:
			return fail(fmt.Errorf("unknown config key %q", k))
		}
	}
	m.Metadata.Version = "m" + job.MessageID
	out := os.Getenv(training.EnvModelDir)
	if out == "" || job.Registry == "" {
		return fail(errors.New("AIP_MODEL_DIR and -publish are required"))
	}
	stores := blob.LazyOpener() // STORAGE_EMULATOR_HOST
	defer stores.Close()
	st, err := stores.Open(ctx, out)
	if err != nil {
		return fail(err)
	}
	if err := m.Save(ctx, st); err != nil {
		return fail(err)
	}
	reg, err := registry.Open(ctx, job.Registry, registry.Options{Storage: stores})
	if err != nil {
		return fail(err)
	}
	res, err := registry.Publish(ctx, reg, out, registry.PublishOptions{Runtime: onnxrt.Runtime{}, Name: job.Model, Promote: true, AllowNewLabels: job.AllowNewLabels,
		By: "vertex:" + os.Getenv(training.EnvJobID), Reason: "training request " + job.MessageID})
	if err != nil {
		return fail(err)
	}
	fmt.Printf("fake trainer: published %s %s promoted=%v (%s)\n", res.Name, res.Version, res.Promoted(), res.Decision.Reason)
	return 0
}

// pushLog records every push delivery passing through the proxy in front
// of the function.
type pushLog struct {
	mu  sync.Mutex
	got map[string][]int // message ID -> HTTP statuses
}

func (p *pushLog) deliveries(id string) []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]int(nil), p.got[id]...)
}

func freePort(t *testing.T) string {
	t.Helper()
	p, err := proc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return strconv.Itoa(p)
}

type pipeline struct {
	t       *testing.T
	project string
	topic   string
	pushURL string
	ps      *pubsub.Client
	vertex  *vertexlocal.Server
	reg     *registry.Registry
	pushes  *pushLog
}

// TestPipelineEndToEnd: Pub/Sub emulator -> push subscription ->
// SubmitTraining under the functions framework -> vertexlocal -> trainer
// (the stand-in above, or the real one when it has -publish) -> registry on
// fake-gcs-server -> gate -> production -> a running predictor swaps
// without restart. Redelivery and poison messages submit nothing.
func TestPipelineEndToEnd(t *testing.T) {
	onnxrttest.Init(t)
	ctx := t.Context()
	g := emulators.GCSForTest(t)
	gc := g.ClientForTest(t)
	for _, b := range []string{"orchard-runs", "orchard-models"} {
		if err := gc.Bucket(b).Create(ctx, "test", nil); err != nil {
			t.Fatal(err)
		}
	}
	project := emulators.UniqueName(t)
	psEmu := emulators.PubSubForTest(t, project)
	psc := psEmu.ClientForTest(t)

	// Vertex AI stand-in running this binary as the trainer.
	vlis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	vsrv, err := vertexlocal.NewServer(vertexlocal.Config{
		Images: map[string][]string{"europe-docker.pkg.dev/p/orchard/trainer*": {os.Args[0]}},
		LogDir: t.TempDir(), KillGrace: time.Second,
		Env: []string{"ORCHARD_FAKE_TRAINER=1", "STORAGE_EMULATOR_HOST=" + g.Host},
	})
	if err != nil {
		t.Fatal(err)
	}
	vg := grpc.NewServer()
	vsrv.Register(vg)
	go vg.Serve(vlis)
	t.Cleanup(func() { vg.Stop(); vsrv.Close() })

	// SubmitTraining, configured from the environment as deployed.
	t.Setenv("FUNCTION_TARGET", "SubmitTraining")
	t.Setenv("GOOGLE_CLOUD_PROJECT", project)
	t.Setenv("VERTEX_REGION", "europe-west1")
	t.Setenv("VERTEX_ENDPOINT", vlis.Addr().String())
	t.Setenv("TRAINER_IMAGE", "europe-docker.pkg.dev/p/orchard/trainer:test")
	t.Setenv("TRAINING_OUTPUT_URI", "gs://orchard-runs/runs")
	t.Setenv("REGISTRY_URI", "gs://orchard-models/registry")
	t.Setenv("ALLOW_LOCAL_DATA", "true")
	ffPort := freePort(t)
	go func() {
		// The framework has no shutdown; the server lives as long as the test binary.
		if err := funcframework.StartHostPort("127.0.0.1", ffPort); err != nil {
			t.Errorf("functions framework: %v", err)
		}
	}()
	waitHTTP(t, "http://127.0.0.1:"+ffPort+"/")

	// A proxy in front of the function counts deliveries per message.
	pushes := &pushLog{got: map[string][]int{}}
	proxy := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var env events.MessagePublishedData
		_ = json.Unmarshal(body, &env)
		req, _ := http.NewRequestWithContext(r.Context(), r.Method, "http://127.0.0.1:"+ffPort+r.URL.RequestURI(), bytes.NewReader(body))
		req.Header = r.Header.Clone()
		resp, err := http.DefaultClient.Do(req)
		code := http.StatusBadGateway
		if err == nil {
			code = resp.StatusCode
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		pushes.mu.Lock()
		pushes.got[env.Message.ID()] = append(pushes.got[env.Message.ID()], code)
		pushes.mu.Unlock()
		w.WriteHeader(code)
	})}
	plis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go proxy.Serve(plis)
	t.Cleanup(func() { proxy.Close() })

	topic := "training-requests"
	pushURL := "http://" + plis.Addr().String() + "/projects/" + project + "/topics/" + topic
	if _, err := psc.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: psEmu.TopicName(topic)}); err != nil {
		t.Fatal(err)
	}
	if _, err := psc.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{
		Name: psEmu.SubscriptionName("submit-training"), Topic: psEmu.TopicName(topic),
		PushConfig:         &pubsubpb.PushConfig{PushEndpoint: pushURL},
		AckDeadlineSeconds: 60,
		RetryPolicy:        &pubsubpb.RetryPolicy{MinimumBackoff: durationpb.New(time.Second), MaximumBackoff: durationpb.New(2 * time.Second)},
	}); err != nil {
		t.Fatal(err)
	}
	p := &pipeline{t: t, project: project, topic: topic, pushURL: pushURL, ps: psc, vertex: vsrv, pushes: pushes,
		reg: registry.New(blob.NewGCS(gc, "orchard-models", "registry"), registry.Options{})}

	t.Run("fake trainer", func(t *testing.T) { p.runFake(t) })
	t.Run("real trainer", func(t *testing.T) { p.runReal(t) })
}

// seedDataset writes a "dataset" holding the model the stand-in trainer
// will "train".
func seedDataset(t *testing.T, labels []string, acc float64) string {
	t.Helper()
	dir := t.TempDir()
	st, err := blob.NewDir(filepath.Join(dir, "seed"))
	if err != nil {
		t.Fatal(err)
	}
	modeltest.Save(t, modeltest.Colour(t, modeltest.Options{Labels: labels, Accuracy: acc}), st)
	return dir
}

func (p *pipeline) publish(t *testing.T, req submittraining.Request) string {
	t.Helper()
	b, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	return p.publishRaw(t, b)
}

func (p *pipeline) publishRaw(t *testing.T, data []byte) string {
	t.Helper()
	pub := p.ps.Publisher(p.topic)
	defer pub.Stop()
	id, err := pub.Publish(t.Context(), &pubsub.Message{Data: data}).Get(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// jobFor waits for the job of a message and then for its end.
func (p *pipeline) jobFor(t *testing.T, msgID string, timeout time.Duration) *aiplatformpb.CustomJob {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		for _, j := range p.vertex.Jobs() {
			if j.GetLabels()[submittraining.LabelMessageID] == submittraining.LabelValue(msgID) {
				end, err := p.vertex.Wait(t.Context(), j.GetName())
				if err != nil {
					t.Fatal(err)
				}
				if end.GetState() != aiplatformpb.JobState_JOB_STATE_SUCCEEDED {
					t.Fatalf("job %s %s: %v", j.GetName(), end.GetState(), end.GetError().GetMessage())
				}
				return end
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no job for message %s after %v (deliveries %v)", msgID, timeout, p.pushes.deliveries(msgID))
	return nil
}

func (p *pipeline) jobsForMessage(msgID string) int {
	n := 0
	for _, j := range p.vertex.Jobs() {
		if j.GetLabels()[submittraining.LabelMessageID] == submittraining.LabelValue(msgID) {
			n++
		}
	}
	return n
}

// predictor is what a running Predict function does with a Provider: it
// stands in for functions/predict until that package takes a
// modelsource.Watcher (it reloads on alias moves).
func predict(t *testing.T, w *modelsource.Watcher, img []byte) (label, version string, err error) {
	lease, err := w.Acquire(t.Context())
	if err != nil {
		return "", "", err
	}
	defer lease.Release()
	preds, err := lease.Classify(img, 1)
	if err != nil {
		return "", "", err
	}
	return preds[0].Label, lease.Metadata().Version, nil
}

func waitServing(t *testing.T, w *modelsource.Watcher, img []byte, wantVersion, wantLabel string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var label, version string
	var err error
	for time.Now().Before(deadline) {
		if label, version, err = predict(t, w, img); err == nil && version == wantVersion {
			if label != wantLabel {
				t.Fatalf("version %s answered %q, want %q", version, label, wantLabel)
			}
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("predictor never served %s: last %q %q %v", wantVersion, version, label, err)
}

func (p *pipeline) runFake(t *testing.T) {
	ctx := t.Context()
	red := modeltest.JPEG(t, modeltest.Solid(modeltest.Red, 32, 32))
	// The predictor runs from the start, before any model exists.
	w := modelsource.NewWatcher(p.reg, "colours", modelsource.WatcherOptions{Interval: 100 * time.Millisecond, Background: true})
	if err := w.Start(ctx); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("watcher start without a model: %v", err)
	}
	defer w.Close(context.Background())
	if _, _, err := predict(t, w, red); err == nil {
		t.Fatal("a prediction succeeded before any model was trained")
	}

	// 1. First training: becomes production; the predictor starts serving it.
	id1 := p.publish(t, submittraining.Request{Dataset: seedDataset(t, []string{"red", "green", "blue"}, 0.9), Model: "colours",
		Overrides: []string{"train.epochs=1"}, Requester: "alice"})
	v1 := "m" + id1
	j1 := p.jobFor(t, id1, 60*time.Second)
	if got := j1.GetJobSpec().GetBaseOutputDirectory().GetOutputUriPrefix(); got != "gs://orchard-runs/runs/orchard-train-colours-"+submittraining.LabelValue(id1) {
		t.Errorf("base output directory %s", got)
	}
	waitServing(t, w, red, v1, "red")

	// 2. Second training (labels permuted, slightly better): the running
	// predictor swaps to it without a restart.
	ds2 := seedDataset(t, []string{"green", "blue", "red"}, 0.92)
	req2 := submittraining.Request{Dataset: ds2, Model: "colours"}
	id2 := p.publish(t, req2)
	v2 := "m" + id2
	p.jobFor(t, id2, 60*time.Second)
	waitServing(t, w, red, v2, "green")

	// 3. A worse model is trained, stored, rejected by the gate and never served.
	id3 := p.publish(t, submittraining.Request{Dataset: seedDataset(t, []string{"blue", "red", "green"}, 0.5), Model: "colours"})
	p.jobFor(t, id3, 60*time.Second)
	d, err := p.reg.Decision(ctx, "colours", "m"+id3)
	if err != nil || d.Accepted || !strings.Contains(d.Reason, "below production "+v2) {
		t.Errorf("third version's decision = %+v, %v", d, err)
	}
	if a, _ := p.reg.Alias(ctx, "colours", registry.Production); a == nil || a.Version != v2 {
		t.Errorf("production = %+v, want %s", a, v2)
	}

	// 4. A second identical delivery of message 2 (same ID and body, as
	// Pub/Sub redelivers) submits nothing.
	envelope, _ := json.Marshal(events.MessagePublishedData{
		Message:      events.PubSubMessage{Data: mustJSON(t, req2), MessageID: id2},
		Subscription: "projects/" + p.project + "/subscriptions/submit-training",
	})
	resp, err := http.Post(p.pushURL, "application/json", bytes.NewReader(envelope))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Errorf("redelivery answered %d, want 2xx (acknowledged)", resp.StatusCode)
	}
	if n := p.jobsForMessage(id2); n != 1 {
		t.Errorf("%d jobs for message %s after a redelivery, want 1", n, id2)
	}

	// 5. Poison messages are acknowledged once and submit nothing.
	jobsBefore := len(p.vertex.Jobs())
	poison := []string{
		p.publishRaw(t, []byte("please train colours")),
		p.publishRaw(t, []byte(`{"dataset":"s3://elsewhere/x","model":"colours"}`)),
		p.publishRaw(t, []byte(`{"dataset":"gs://b/x","model":"colours","overrides":["-publish=evil"]}`)),
		p.publishRaw(t, []byte(`{"dataset":"gs://b/x","model":"colours","overrides":["data.validation_fraction=0.01"]}`)),
		p.publishRaw(t, []byte(`{"dataset":"gs://b/x","model":"colours","overrides":["train.epochz=3"]}`)),
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, id := range poison {
		for len(p.pushes.deliveries(id)) == 0 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
	}
	time.Sleep(3 * time.Second) // longer than the subscription's retry backoff
	for _, id := range poison {
		if got := p.pushes.deliveries(id); len(got) != 1 || got[0]/100 != 2 {
			t.Errorf("poison message %s: deliveries %v, want exactly one 2xx", id, got)
		}
	}
	if n := len(p.vertex.Jobs()); n != jobsBefore {
		t.Errorf("poison messages created %d jobs", n-jobsBefore)
	}
	// Each request was delivered once by Pub/Sub (acknowledged at once, no
	// retries); message 2 once more by the simulated redelivery above.
	for id, want := range map[string]int{id1: 1, id2: 2, id3: 1} {
		if got := p.pushes.deliveries(id); len(got) != want {
			t.Errorf("message %s: deliveries %v, want %d", id, got, want)
		}
	}
	vs, err := p.reg.Versions(ctx, "colours")
	if err != nil || len(vs) != 3 {
		t.Errorf("registry holds %d versions (%v), want 3", len(vs), err)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// runReal runs the pipeline with the real trainer binary, whose -publish
// step registers the model and runs the quality gate.
func (p *pipeline) runReal(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping real training in -short mode")
	}
	bin := trainertest.Build(t)
	data := t.TempDir()
	if out, err := exec.Command(bin, "gen-data", "-out", data, "-per-class", "24", "-size", "32").CombinedOutput(); err != nil {
		t.Fatalf("gen-data: %v\n%s", err, out)
	}
	t.Setenv("ORCHARD_REAL_TRAINER", bin)
	t.Setenv("ORT_LIB", onnxrt.Path()) // jobs run in another directory
	t.Setenv("GOMAXPROCS", "2")
	id := p.publish(t, submittraining.Request{Dataset: data, Model: "shapes", Overrides: []string{
		"train.epochs=3", "model.input_size=16", "model.widths=[8,16]", "report.enabled=false",
	}})
	p.jobFor(t, id, 8*time.Minute)
	a, err := p.reg.Alias(t.Context(), "shapes", registry.Production)
	if err != nil || a.Version == "" {
		t.Fatalf("production of shapes = %+v, %v", a, err)
	}
	w := modelsource.NewWatcher(p.reg, "shapes", modelsource.WatcherOptions{})
	if err := w.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer w.Close(context.Background())
	if _, version, err := predict(t, w, modeltest.JPEG(t, modeltest.Solid(modeltest.Red, 64, 64))); err != nil || version != a.Version {
		t.Errorf("predict with the trained model: version %q, %v", version, err)
	}
}

func waitHTTP(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s never answered", url)
}
