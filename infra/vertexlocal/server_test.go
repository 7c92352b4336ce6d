package vertexlocal_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	aiplatform "cloud.google.com/go/aiplatform/apiv1"
	"cloud.google.com/go/aiplatform/apiv1/aiplatformpb"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/orchard-mlops/orchard/infra/vertexlocal"
	"github.com/orchard-mlops/orchard/shared/proc/proctest"
)

const parent = "projects/p/locations/europe-west1"

// sh returns a command running script with the job's args as $1...
func sh(script string) []string { return []string{"/bin/sh", "-c", script, "sh"} }

// startServer serves the stand-in on a loopback port and returns a real
// aiplatform client for it.
func startServer(t *testing.T, cfg vertexlocal.Config) (*vertexlocal.Server, *aiplatform.JobClient) {
	t.Helper()
	if cfg.LogDir == "" {
		cfg.LogDir = t.TempDir()
	}
	srv, err := vertexlocal.NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	srv.Register(g)
	go g.Serve(lis)
	t.Cleanup(func() { g.Stop(); srv.Close() })
	c, err := aiplatform.NewJobClient(t.Context(),
		option.WithEndpoint(lis.Addr().String()),
		option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return srv, c
}

func jobSpec(image string, args []string, base string) *aiplatformpb.CustomJobSpec {
	spec := &aiplatformpb.CustomJobSpec{
		WorkerPoolSpecs: []*aiplatformpb.WorkerPoolSpec{{
			MachineSpec:  &aiplatformpb.MachineSpec{MachineType: "n1-standard-4"},
			ReplicaCount: 1,
			Task: &aiplatformpb.WorkerPoolSpec_ContainerSpec{ContainerSpec: &aiplatformpb.ContainerSpec{
				ImageUri: image, Args: args,
				Env: []*aiplatformpb.EnvVar{{Name: "FROM_SPEC", Value: "yes"}},
			}},
		}},
	}
	if base != "" {
		spec.BaseOutputDirectory = &aiplatformpb.GcsDestination{OutputUriPrefix: base}
	}
	return spec
}

func create(t *testing.T, c *aiplatform.JobClient, name string, labels map[string]string, spec *aiplatformpb.CustomJobSpec) *aiplatformpb.CustomJob {
	t.Helper()
	j, err := c.CreateCustomJob(t.Context(), &aiplatformpb.CreateCustomJobRequest{Parent: parent,
		CustomJob: &aiplatformpb.CustomJob{DisplayName: name, Labels: labels, JobSpec: spec}})
	if err != nil {
		t.Fatalf("CreateCustomJob: %v", err)
	}
	return j
}

// waitEnd polls GetCustomJob through the client until the job ends.
func waitEnd(t *testing.T, c *aiplatform.JobClient, name string) *aiplatformpb.CustomJob {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		j, err := c.GetCustomJob(t.Context(), &aiplatformpb.GetCustomJobRequest{Name: name})
		if err != nil {
			t.Fatal(err)
		}
		switch j.GetState() {
		case aiplatformpb.JobState_JOB_STATE_SUCCEEDED, aiplatformpb.JobState_JOB_STATE_FAILED, aiplatformpb.JobState_JOB_STATE_CANCELLED:
			return j
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("job %s did not end", name)
	return nil
}

func waitState(t *testing.T, c *aiplatform.JobClient, name string, want aiplatformpb.JobState) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		j, err := c.GetCustomJob(t.Context(), &aiplatformpb.GetCustomJobRequest{Name: name})
		if err != nil {
			t.Fatal(err)
		}
		if j.GetState() == want {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("job %s never reached %s", name, want)
}

func TestJobLifecycle(t *testing.T) {
	srv, c := startServer(t, vertexlocal.Config{
		Images: map[string][]string{
			"fake/succeed": sh(`echo "args:$*"; echo "model=$AIP_MODEL_DIR ckpt=$AIP_CHECKPOINT_DIR logs=$AIP_TENSORBOARD_LOG_DIR job=$CLOUD_ML_JOB_ID spec=$FROM_SPEC extra=$EXTRA"`),
			"fake/fail":    sh(`echo "loading data"; echo "boom: no such dataset" >&2; exit 3`),
			"fake/crash":   sh(`echo "about to crash"; kill -SEGV $$`),
			"europe-docker.pkg.dev/p/orchard/trainer*": sh(`echo "prefix-mapped $1"`),
			"fake/missing": {"/nonexistent/trainer"},
		},
		Env: []string{"EXTRA=from-config"},
	})
	tests := []struct {
		name      string
		image     string
		args      []string
		base      string
		state     aiplatformpb.JobState
		errSubstr string
		logSubstr []string
	}{
		{"succeeds with Vertex env", "fake/succeed", []string{"train", "-data", "gs://b/d"}, "gs://bucket/runs/job-1",
			aiplatformpb.JobState_JOB_STATE_SUCCEEDED, "",
			[]string{"args:train -data gs://b/d", "model=gs://bucket/runs/job-1/model/ ckpt=gs://bucket/runs/job-1/checkpoints/ logs=gs://bucket/runs/job-1/logs/ job=", "spec=yes extra=from-config"}},
		{"non-zero exit", "fake/fail", nil, "", aiplatformpb.JobState_JOB_STATE_FAILED, "non-zero status of 3", []string{"boom: no such dataset"}},
		{"crash", "fake/crash", nil, "", aiplatformpb.JobState_JOB_STATE_FAILED, "terminated by signal segmentation fault", []string{"about to crash"}},
		{"image prefix mapping", "europe-docker.pkg.dev/p/orchard/trainer:v3", []string{"x"}, "", aiplatformpb.JobState_JOB_STATE_SUCCEEDED, "", []string{"prefix-mapped x"}},
		{"command cannot start", "fake/missing", nil, "", aiplatformpb.JobState_JOB_STATE_FAILED, "could not start", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			created := create(t, c, "job-"+strings.ReplaceAll(tt.name, " ", "-"), map[string]string{"test": "lifecycle"}, jobSpec(tt.image, tt.args, tt.base))
			if created.GetState() != aiplatformpb.JobState_JOB_STATE_PENDING || !strings.HasPrefix(created.GetName(), parent+"/customJobs/") {
				t.Errorf("created job: state %s name %s", created.GetState(), created.GetName())
			}
			j := waitEnd(t, c, created.GetName())
			if j.GetState() != tt.state {
				t.Fatalf("state %s, want %s (error %v)", j.GetState(), tt.state, j.GetError())
			}
			if !strings.Contains(j.GetError().GetMessage(), tt.errSubstr) {
				t.Errorf("error %q, want it to mention %q", j.GetError().GetMessage(), tt.errSubstr)
			}
			if j.GetStartTime() == nil && tt.name != "command cannot start" || j.GetEndTime() == nil || j.GetCreateTime() == nil {
				t.Errorf("times: create %v start %v end %v", j.GetCreateTime(), j.GetStartTime(), j.GetEndTime())
			}
			log, err := os.ReadFile(srv.LogPath(j.GetName()))
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range tt.logSubstr {
				if !strings.Contains(string(log), s) {
					t.Errorf("log lacks %q:\n%s", s, log)
				}
			}
		})
	}
	// The server survived every failure and still takes jobs.
	j := waitEnd(t, c, create(t, c, "after-crash", nil, jobSpec("fake/succeed", nil, "")).GetName())
	if j.GetState() != aiplatformpb.JobState_JOB_STATE_SUCCEEDED {
		t.Errorf("job after the crash: %s", j.GetState())
	}
}

func TestCreateValidation(t *testing.T) {
	_, c := startServer(t, vertexlocal.Config{Images: map[string][]string{"fake/ok": sh("true")}})
	ok := jobSpec("fake/ok", nil, "")
	tests := []struct {
		name   string
		parent string
		job    *aiplatformpb.CustomJob
		want   string
	}{
		{"bad parent", "projects/p", &aiplatformpb.CustomJob{DisplayName: "x", JobSpec: ok}, "parent"},
		{"no display name", parent, &aiplatformpb.CustomJob{JobSpec: ok}, "display_name"},
		{"bad label key", parent, &aiplatformpb.CustomJob{DisplayName: "x", JobSpec: ok, Labels: map[string]string{"Msg": "1"}}, "label"},
		{"bad label value", parent, &aiplatformpb.CustomJob{DisplayName: "x", JobSpec: ok, Labels: map[string]string{"msg": strings.Repeat("a", 64)}}, "label"},
		{"no pools", parent, &aiplatformpb.CustomJob{DisplayName: "x", JobSpec: &aiplatformpb.CustomJobSpec{}}, "worker_pool_specs"},
		{"unmapped image", parent, &aiplatformpb.CustomJob{DisplayName: "x", JobSpec: jobSpec("gcr.io/unknown", nil, "")}, "not mapped"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.CreateCustomJob(t.Context(), &aiplatformpb.CreateCustomJobRequest{Parent: tt.parent, CustomJob: tt.job})
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want InvalidArgument mentioning %q", err, tt.want)
			}
		})
	}
	if _, err := c.GetCustomJob(t.Context(), &aiplatformpb.GetCustomJobRequest{Name: parent + "/customJobs/1"}); status.Code(err) != codes.NotFound {
		t.Errorf("Get of a missing job: %v", err)
	}
}

func TestCancelKillsProcessGroup(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "child.pid")
	readyFile := filepath.Join(dir, "stubborn.ready")
	srv, c := startServer(t, vertexlocal.Config{
		KillGrace:     300 * time.Millisecond,
		MaxConcurrent: 1,
		Images: map[string][]string{
			// A child in the job's process group that would outlive a kill of the shell alone.
			"fake/sleep": sh(`sleep 60 & echo $! > ` + pidFile + `; wait`),
			// Ignores SIGTERM: needs the SIGKILL after the grace period.
			"fake/stubborn": sh(`trap "" TERM; echo started > ` + readyFile + `; while :; do sleep 0.05; done`),
		},
	})
	j := create(t, c, "sleeper", nil, jobSpec("fake/sleep", nil, ""))
	// With one slot, a second job waits PENDING, and cancelling it never runs it.
	queued := create(t, c, "queued", nil, jobSpec("fake/sleep", nil, ""))
	waitState(t, c, j.GetName(), aiplatformpb.JobState_JOB_STATE_RUNNING)
	var pid int
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if b, err := os.ReadFile(pidFile); err == nil && len(strings.TrimSpace(string(b))) > 0 {
			pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
			break
		}
	}
	if pid == 0 {
		t.Fatal("the job's child never started")
	}
	if g, _ := c.GetCustomJob(t.Context(), &aiplatformpb.GetCustomJobRequest{Name: queued.GetName()}); g.GetState() != aiplatformpb.JobState_JOB_STATE_PENDING {
		t.Errorf("second job is %s, want PENDING", g.GetState())
	}
	if err := c.CancelCustomJob(t.Context(), &aiplatformpb.CancelCustomJobRequest{Name: queued.GetName()}); err != nil {
		t.Fatal(err)
	}
	if err := c.CancelCustomJob(t.Context(), &aiplatformpb.CancelCustomJobRequest{Name: j.GetName()}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{j.GetName(), queued.GetName()} {
		end := waitEnd(t, c, name)
		if end.GetState() != aiplatformpb.JobState_JOB_STATE_CANCELLED || end.GetError().GetCode() != int32(codes.Canceled) {
			t.Errorf("%s: state %s error %v", name, end.GetState(), end.GetError())
		}
	}
	if _, err := os.Stat(srv.LogPath(queued.GetName())); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the cancelled pending job ran (log %v)", err)
	}
	// The grandchild is gone too (it may linger briefly as a zombie until reaped by init).
	gone := false
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if !proctest.Alive(pid) {
			gone = true
			break
		}
	}
	if !gone {
		syscall.Kill(pid, syscall.SIGKILL)
		t.Errorf("child %d survived the cancel", pid)
	}
	if err := c.CancelCustomJob(t.Context(), &aiplatformpb.CancelCustomJobRequest{Name: j.GetName()}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("cancelling an ended job: %v", err)
	}

	// SIGTERM ignored: SIGKILL after the grace period.
	s := create(t, c, "stubborn", nil, jobSpec("fake/stubborn", nil, ""))
	waitState(t, c, s.GetName(), aiplatformpb.JobState_JOB_STATE_RUNNING)
	// RUNNING means the shell started, not that it has set its trap yet:
	// a SIGTERM before the trap ends it at once.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(readyFile); err == nil {
			break
		}
	}
	if _, err := os.Stat(readyFile); err != nil {
		t.Fatal("the stubborn job never set its trap")
	}
	start := time.Now()
	if err := c.CancelCustomJob(t.Context(), &aiplatformpb.CancelCustomJobRequest{Name: s.GetName()}); err != nil {
		t.Fatal(err)
	}
	if end := waitEnd(t, c, s.GetName()); end.GetState() != aiplatformpb.JobState_JOB_STATE_CANCELLED {
		t.Errorf("stubborn job: %s", end.GetState())
	}
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Errorf("stubborn job ended after %v, before the grace period", d)
	}
}

func TestSchedulingTimeout(t *testing.T) {
	_, c := startServer(t, vertexlocal.Config{KillGrace: 100 * time.Millisecond, Images: map[string][]string{"fake/sleep": sh("sleep 30")}})
	spec := jobSpec("fake/sleep", nil, "")
	spec.Scheduling = &aiplatformpb.Scheduling{Timeout: durationpb.New(200 * time.Millisecond)}
	j := waitEnd(t, c, create(t, c, "slow", nil, spec).GetName())
	if j.GetState() != aiplatformpb.JobState_JOB_STATE_FAILED || !strings.Contains(j.GetError().GetMessage(), "timeout") {
		t.Errorf("state %s error %v", j.GetState(), j.GetError())
	}
}

func TestListFilterAndPages(t *testing.T) {
	_, c := startServer(t, vertexlocal.Config{MaxConcurrent: 4, Images: map[string][]string{"fake/ok": sh("true"), "fake/fail": sh("exit 1")}})
	var names []string
	for i := range 5 {
		img := "fake/ok"
		if i == 4 {
			img = "fake/fail"
		}
		labels := map[string]string{"orchard-msg-id": fmt.Sprintf("m%d", i%3), "orchard-model": "fruit"}
		if i == 0 {
			labels["special"] = "yes"
		}
		j := create(t, c, fmt.Sprintf("train-%d", i), labels, jobSpec(img, nil, ""))
		names = append(names, j.GetName())
	}
	for _, n := range names {
		waitEnd(t, c, n)
	}
	list := func(filter string, pageSize int32) ([]string, error) {
		it := c.ListCustomJobs(t.Context(), &aiplatformpb.ListCustomJobsRequest{Parent: parent, Filter: filter, PageSize: pageSize})
		var out []string
		for {
			j, err := it.Next()
			if errors.Is(err, iterator.Done) {
				return out, nil
			}
			if err != nil {
				return nil, err
			}
			out = append(out, j.GetDisplayName())
		}
	}
	tests := []struct {
		filter string
		want   string
	}{
		{"", "train-4 train-3 train-2 train-1 train-0"},
		{`labels.orchard-msg-id="m1"`, "train-4 train-1"},
		{`labels.orchard-msg-id=m0`, "train-3 train-0"},
		{`labels.special:*`, "train-0"},
		{`labels.orchard-msg-id="m1" AND state="JOB_STATE_SUCCEEDED"`, "train-1"},
		{`labels.orchard-model="fruit" AND NOT display_name="train-2"`, "train-4 train-3 train-1 train-0"},
		{`state!="JOB_STATE_SUCCEEDED"`, "train-4"},
		{`display_name:"train-*" AND labels.orchard-msg-id!=m0`, "train-4 train-2 train-1"},
		{`labels.orchard-msg-id="nope"`, ""},
	}
	for _, tt := range tests {
		got, err := list(tt.filter, 2)
		if err != nil {
			t.Errorf("filter %q: %v", tt.filter, err)
			continue
		}
		if strings.Join(got, " ") != tt.want {
			t.Errorf("filter %q: got %q, want %q", tt.filter, strings.Join(got, " "), tt.want)
		}
	}
	for _, bad := range []string{`labels.a=1 OR labels.b=2`, `create_time>"2021-01-01T00:00:00Z"`, `state="RUNNING"`, `labels.a="x`, `foo=bar`} {
		if _, err := list(bad, 0); status.Code(err) != codes.InvalidArgument {
			t.Errorf("filter %q: %v, want InvalidArgument", bad, err)
		}
	}
}

// TestServe runs the packaged Serve entry point until its context ends.
func TestServe(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- vertexlocal.Serve(ctx, lis, vertexlocal.Config{LogDir: t.TempDir(), Images: map[string][]string{"fake/ok": sh("true")}})
	}()
	c, err := aiplatform.NewJobClient(t.Context(), option.WithEndpoint(lis.Addr().String()), option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	j := create(t, c, "served", nil, jobSpec("fake/ok", nil, ""))
	if end := waitEnd(t, c, j.GetName()); end.GetState() != aiplatformpb.JobState_JOB_STATE_SUCCEEDED {
		t.Errorf("state %s", end.GetState())
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Error(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return")
	}
}
