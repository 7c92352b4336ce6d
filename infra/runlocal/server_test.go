package runlocal

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	run "cloud.google.com/go/run/apiv2"
	"cloud.google.com/go/run/apiv2/runpb"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"
)

// serve starts the stand-in on a loopback port and returns clients of it
// made by the official library.
func serve(t *testing.T, cfg Config) (*Server, *run.JobsClient, *run.ExecutionsClient) {
	t.Helper()
	cfg.Project, cfg.Region = "p", "local"
	s, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	s.Register(g)
	go g.Serve(lis)
	t.Cleanup(func() { g.Stop(); s.Close() })
	opts := []option.ClientOption{option.WithEndpoint(lis.Addr().String()), option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials()))}
	jc, err := run.NewJobsClient(t.Context(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	ec, err := run.NewExecutionsClient(t.Context(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { jc.Close(); ec.Close() })
	return s, jc, ec
}

func runJob(t *testing.T, s *Server, jc *run.JobsClient, o *runpb.RunJobRequest_Overrides) *runpb.Execution {
	t.Helper()
	op, err := jc.RunJob(t.Context(), &runpb.RunJobRequest{Name: s.JobName("job"), Overrides: o})
	if err != nil {
		t.Fatal(err)
	}
	md, err := op.Metadata()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	ex, err := s.Wait(ctx, md.GetName())
	if err != nil {
		t.Fatal(err)
	}
	return ex
}

// TestTasksGetCloudRunEnvironment: every task runs once with the variables
// Cloud Run sets, the job's env and the overrides' env and task count.
func TestTasksGetCloudRunEnvironment(t *testing.T) {
	out := t.TempDir()
	script := `echo "$CLOUD_RUN_JOB $CLOUD_RUN_EXECUTION $CLOUD_RUN_TASK_INDEX $CLOUD_RUN_TASK_ATTEMPT $CLOUD_RUN_TASK_COUNT $FROM_JOB $FROM_RUN" > ` + out + `/$CLOUD_RUN_TASK_INDEX`
	s, jc, ec := serve(t, Config{Jobs: map[string]Job{"job": {Command: []string{"sh", "-c", script}, Env: []string{"FROM_JOB=j"}, TaskCount: 1, Parallelism: 2}}})
	job, err := jc.GetJob(t.Context(), &runpb.GetJobRequest{Name: s.JobName("job")})
	if err != nil || job.GetTemplate().GetTemplate().GetContainers()[0].GetEnv()[0].GetValue() != "j" {
		t.Fatalf("GetJob: %v %v", job, err)
	}
	ex := runJob(t, s, jc, &runpb.RunJobRequest_Overrides{TaskCount: 3, ContainerOverrides: []*runpb.RunJobRequest_Overrides_ContainerOverride{{
		Env: []*runpb.EnvVar{{Name: "FROM_RUN", Values: &runpb.EnvVar_Value{Value: "r"}}}}}})
	if ex.GetSucceededCount() != 3 || ex.GetTaskCount() != 3 || ex.GetParallelism() != 2 || ex.GetConditions()[0].GetState() != runpb.Condition_CONDITION_SUCCEEDED {
		t.Fatalf("execution %v", ex)
	}
	for i, idx := range []string{"0", "1", "2"} {
		b, err := os.ReadFile(filepath.Join(out, idx))
		if err != nil {
			t.Fatal(err)
		}
		want := "job " + ex.GetUid() + " " + idx + " 0 3 j r"
		if got := strings.TrimSpace(string(b)); got != want {
			t.Errorf("task %d saw %q, want %q", i, got, want)
		}
	}
	it := ec.ListExecutions(t.Context(), &runpb.ListExecutionsRequest{Parent: s.JobName("job")})
	if got, err := it.Next(); err != nil || got.GetName() != ex.GetName() {
		t.Errorf("ListExecutions: %v %v", got, err)
	}
}

// TestRetriesAndFailure: a failing attempt is retried with the next
// attempt number; a task out of retries fails the execution.
func TestRetriesAndFailure(t *testing.T) {
	// Task 1 fails its first attempt; task 2 fails every attempt.
	script := `[ "$CLOUD_RUN_TASK_INDEX" = 1 ] && [ "$CLOUD_RUN_TASK_ATTEMPT" = 0 ] && exit 3; [ "$CLOUD_RUN_TASK_INDEX" = 2 ] && exit 4; exit 0`
	s, jc, _ := serve(t, Config{Jobs: map[string]Job{"job": {Command: []string{"sh", "-c", script}, TaskCount: 3, MaxRetries: 1}}})
	ex := runJob(t, s, jc, nil)
	if ex.GetSucceededCount() != 2 || ex.GetFailedCount() != 1 || ex.GetRetriedCount() != 2 {
		t.Errorf("counts: succeeded %d failed %d retried %d", ex.GetSucceededCount(), ex.GetFailedCount(), ex.GetRetriedCount())
	}
	if c := ex.GetConditions()[0]; c.GetState() != runpb.Condition_CONDITION_FAILED || !strings.Contains(c.GetMessage(), "1 of 3") {
		t.Errorf("condition %v", c)
	}
	b, _ := os.ReadFile(s.TaskLog(ex.GetName(), 1))
	if !strings.Contains(string(b), "attempt 0 exit: exit status 3") || !strings.Contains(string(b), "attempt 1 exit: succeeded") {
		t.Errorf("task 1 log:\n%s", b)
	}
}

// TestKillAndTimeout: a killed task is retried; one past its timeout fails.
func TestKillAndTimeout(t *testing.T) {
	s, jc, _ := serve(t, Config{KillGrace: 100 * time.Millisecond, Jobs: map[string]Job{"job": {
		Command: []string{"sh", "-c", `[ "$CLOUD_RUN_TASK_ATTEMPT" = 0 ] && sleep 30; exit 0`}, MaxRetries: 1}, "slow": {
		Command: []string{"sleep", "30"}}}})
	op, err := jc.RunJob(t.Context(), &runpb.RunJobRequest{Name: s.JobName("job")})
	if err != nil {
		t.Fatal(err)
	}
	md, _ := op.Metadata()
	deadline := time.Now().Add(10 * time.Second)
	for s.KillTask(md.GetName(), 0) != nil {
		if time.Now().After(deadline) {
			t.Fatal("task 0 never ran")
		}
		time.Sleep(10 * time.Millisecond)
	}
	ex, err := s.Wait(t.Context(), md.GetName())
	if err != nil || ex.GetSucceededCount() != 1 || ex.GetRetriedCount() != 1 {
		t.Errorf("after a kill: %v %v", ex, err)
	}
	op, err = jc.RunJob(t.Context(), &runpb.RunJobRequest{Name: s.JobName("slow"), Overrides: &runpb.RunJobRequest_Overrides{Timeout: durationpb.New(200 * time.Millisecond)}})
	if err != nil {
		t.Fatal(err)
	}
	md, _ = op.Metadata()
	ex, err = s.Wait(t.Context(), md.GetName())
	if err != nil || ex.GetFailedCount() != 1 || !strings.Contains(readFile(s.TaskLog(md.GetName(), 0)), "exceeded its timeout of 200ms") {
		t.Errorf("past its timeout: %v", ex)
	}
}

func readFile(p string) string { b, _ := os.ReadFile(p); return string(b) }
