package main

import (
	"context"
	"encoding/json"
	"fmt"
	"image/color"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/run/apiv2/runpb"
	"cloud.google.com/go/storage"
	"google.golang.org/grpc"

	"github.com/orchard-mlops/orchard/functions/batch"
	"github.com/orchard-mlops/orchard/infra/runlocal"
	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/shared/emulators"
	"github.com/orchard-mlops/orchard/shared/model/modeltest"
	"github.com/orchard-mlops/orchard/shared/onnxrt"
	"github.com/orchard-mlops/orchard/shared/onnxrt/onnxrttest"
	"github.com/orchard-mlops/orchard/shared/registry"
)

// buildBatch compiles the batch job's binary (functions/cmd/batch).
func buildBatch(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "batch")
	build := exec.Command("go", "build", "-o", bin, "github.com/orchard-mlops/orchard/functions/cmd/batch")
	build.Env = append(os.Environ(), "GOEXPERIMENT=simd")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building functions/cmd/batch: %v\n%s", err, out)
	}
	return bin
}

// TestBatchThroughRunStandIn: orchard batch resolves the production alias,
// starts the job on the Cloud Run stand-in (two task processes of the real
// binary against fake-gcs-server), task 0 is killed midway and retried, and
// the run ends with one result per object, none written twice, and the
// run summary's accuracy; orchard batch status shows the same run.
func TestBatchThroughRunStandIn(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping the batch job's build in -short mode")
	}
	onnxrttest.Init(t)
	bin := buildBatch(t)
	g := emulators.GCSForTest(t)
	g.Setenv(t) // the CLI opens the results bucket and the registry by URI
	c := g.ClientForTest(t)
	for _, b := range []string{"src", "results", "models"} {
		if err := c.Bucket(b).Create(t.Context(), "p", nil); err != nil {
			t.Fatal(err)
		}
	}
	reg := registry.New(blob.NewGCS(c, "models", ""), registry.Options{})
	src, _ := blob.NewDir(modeltest.Dir(t, modeltest.Options{Version: "v2"}))
	if pub, err := registry.PublishFrom(t.Context(), reg, src, registry.PublishOptions{Runtime: onnxrt.Runtime{}, Promote: true, By: "test"}); err != nil || !pub.Promoted() {
		t.Fatalf("publishing the colour model: %+v %v", pub, err)
	}
	names := putColours(t, c, 50)

	srv, err := runlocal.NewServer(runlocal.Config{Project: "p", Region: "local", LogDir: t.TempDir(), KillGrace: time.Second,
		Env: []string{"STORAGE_EMULATOR_HOST=" + g.Host, "ORT_LIB=" + onnxrt.Path(), "GOMAXPROCS=1"},
		Jobs: map[string]runlocal.Job{"orchard-batch": {Command: []string{bin}, TaskCount: 1, MaxRetries: 1,
			Env: []string{"RESULTS_BUCKET=results", "REGISTRY_URI=gs://models", "MODEL_NAME=colours", "WORKERS=1"}}}})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	srv.Register(gs)
	go gs.Serve(lis)
	t.Cleanup(func() { gs.Stop(); srv.Close() })
	common := []string{"-project", "p", "-region", "local", "-endpoint", lis.Addr().String()}

	// Task 0 is killed once the 10th object of its shard has its result.
	var shard0 []string
	for _, n := range names {
		if batch.Shard(n, 2) == 0 {
			shard0 = append(shard0, n)
		}
	}
	sort.Strings(shard0)
	killed := make(chan error, 1)
	go func() { killed <- killWhenWritten(t.Context(), c, srv, "results", shard0[9]+".json") }()

	out, err := runCLI(t, append([]string{"batch", "-prefix", "gs://src/photos/", "-tasks", "2", "-poll", "200ms"}, common...)...)
	t.Logf("orchard batch:\n%s", out)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-killed; err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"production is version v2", "tasks 2/2 succeeded", "1 retried", "accuracy 1.0000 over 150 images"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	// One result per object; the retry skipped what the killed attempt wrote.
	writers := map[string]int{}
	for _, n := range names {
		b, _, err := blob.NewGCS(c, "results", "").Read(t.Context(), n+".json", 1<<20)
		if err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		var r struct {
			EventID string `json:"event_id"`
			Model   struct{ Version string }
		}
		if err := json.Unmarshal(b, &r); err != nil || r.Model.Version != "v2" {
			t.Fatalf("%s: %s (%v)", n, b, err)
		}
		parts := strings.Split(r.EventID, "/") // batch/<execution>/task-N/attempt-A
		writers[parts[2]+"/"+parts[3]]++
	}
	sum := latestSummary(t, c)
	if writers["task-0/attempt-0"] < 10 || writers["task-0/attempt-1"] == 0 || sum.Done != int64(writers["task-0/attempt-0"]) ||
		sum.Written+sum.Done != int64(len(names)) || sum.Images != int64(len(names)) {
		t.Errorf("results by writer %v; run summary written %d, done before %d, images %d", writers, sum.Written, sum.Done, sum.Images)
	}
	st, err := runCLI(t, append([]string{"batch", "status"}, common...)...)
	t.Logf("orchard batch status:\n%s", st)
	if err != nil || !strings.Contains(st, sum.Execution) || !strings.Contains(st, "accuracy 1.0000") {
		t.Errorf("batch status: %v", err)
	}
}

func putColours(t *testing.T, c *storage.Client, n int) []string {
	t.Helper()
	var names []string
	for i, col := range []color.RGBA{modeltest.Red, modeltest.Green, modeltest.Blue} {
		img := modeltest.JPEG(t, modeltest.Solid(col, 24, 24))
		for k := range n {
			name := fmt.Sprintf("photos/%s/%03d.jpg", modeltest.Colours[i], k)
			w := c.Bucket("src").Object(name).NewWriter(t.Context())
			w.ContentType = "image/jpeg"
			w.Write(img)
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			names = append(names, name)
		}
	}
	return names
}

// killWhenWritten SIGKILLs task 0 of the stand-in's only execution once
// key exists in bucket.
func killWhenWritten(ctx context.Context, c *storage.Client, srv *runlocal.Server, bucket, key string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for {
		if _, err := c.Bucket(bucket).Object(key).Attrs(ctx); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s never appeared: %w", key, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	ex, err := srv.ListExecutions(ctx, &runpb.ListExecutionsRequest{Parent: "projects/p/locations/local/jobs/orchard-batch"})
	if err != nil || len(ex.GetExecutions()) != 1 {
		return fmt.Errorf("listing the executions: %v", err)
	}
	return srv.KillTask(ex.GetExecutions()[0].GetName(), 0)
}

func latestSummary(t *testing.T, c *storage.Client) *batch.Summary {
	t.Helper()
	st := blob.NewGCS(c, "results", "")
	as, err := blob.Collect(t.Context(), st, blob.ListOptions{Prefix: "_batch/"}, blob.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range as {
		if strings.HasSuffix(a.Key, "/summary.json") {
			s, err := readSummary(t.Context(), st, a.Key)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
	}
	t.Fatal("no run summary")
	return nil
}
