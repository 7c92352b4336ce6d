// Package runlocal is a local stand-in for the Cloud Run Admin API's job
// calls, so that batch prediction runs end to end without Google Cloud: a
// real gRPC server implementing what `orchard batch` calls of
// google.cloud.run.v2.Jobs (GetJob, ListJobs, RunJob with overrides) and
// google.cloud.run.v2.Executions (GetExecution, ListExecutions,
// CancelExecution), which the official cloud.google.com/go/run client
// talks to (there is no official emulator; see infra/vertexlocal for the
// Vertex AI one).
//
// Jobs are configured, not created: Config.Jobs maps a job ID to the local
// command that plays its container, with the template's environment, task
// count, parallelism, retries and per-task timeout. RunJob starts an
// execution that runs TaskCount processes, Parallelism at a time (0: all),
// each in its own process group (shared/proc) with the environment Cloud
// Run gives a task:
//
//	CLOUD_RUN_JOB, CLOUD_RUN_EXECUTION, CLOUD_RUN_TASK_INDEX,
//	CLOUD_RUN_TASK_ATTEMPT, CLOUD_RUN_TASK_COUNT
//
// after the server's own environment, Config.Env, the job's env and the
// overrides' env. A task that exits non-zero (or is killed, or passes its
// timeout) is retried up to MaxRetries times with the next attempt number;
// the execution completes when every task has succeeded or used its
// retries, with a "Completed" condition that says which. Each task's
// output (all attempts) goes to LogDir/<execution>/task-<index>.log.
//
// Executions live in memory only.
package runlocal

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"cloud.google.com/go/longrunning/autogen/longrunningpb"
	"cloud.google.com/go/run/apiv2/runpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/orchard-mlops/orchard/shared/proc"
)

// Job is the template of a configured job.
type Job struct {
	Command []string // the container's entrypoint, as a local command
	Args    []string // the container's args (RunJob overrides may replace them)
	Env     []string // KEY=VALUE, the container's environment
	// TaskCount defaults to 1; Parallelism 0 runs every task at once.
	TaskCount, Parallelism int
	// MaxRetries per task (Cloud Run's default is 3; here 0 unless set).
	MaxRetries int
	// Timeout per task attempt (default 10 minutes, as Cloud Run's).
	Timeout time.Duration
}

// Config configures the stand-in.
type Config struct {
	Project, Region string         // the jobs' parent: projects/P/locations/R
	Jobs            map[string]Job // by job ID
	// LogDir receives LogDir/<execution>/task-<index>.log (default a new
	// temporary directory, removed by Close).
	LogDir  string
	WorkDir string   // the tasks' working directory (default LogDir)
	Env     []string // added to every task's environment
	// KillGrace is the time between SIGTERM and SIGKILL when a task is
	// cancelled or times out (default 5s; Cloud Run gives 10s).
	KillGrace time.Duration
	Logger    *slog.Logger
}

// Server implements runpb.JobsServer and runpb.ExecutionsServer.
type Server struct {
	runpb.UnimplementedJobsServer
	runpb.UnimplementedExecutionsServer

	cfg     Config
	ownLogs bool
	log     *slog.Logger
	created time.Time

	mu     sync.Mutex
	execs  map[string]*execution // by full name
	order  []string              // creation order
	closed bool
	wg     sync.WaitGroup
}

type execution struct {
	pb        *runpb.Execution // guarded by Server.mu
	id        string
	argv      []string
	env       []string
	timeout   time.Duration
	retries   int
	logDir    string
	cancelReq chan struct{}
	cancelled bool                  // guarded by Server.mu
	running   map[int]*proc.Process // guarded by Server.mu
	done      chan struct{}
}

// NewServer checks the configuration and returns a server (see Register).
func NewServer(cfg Config) (*Server, error) {
	if cfg.Project == "" || cfg.Region == "" {
		return nil, fmt.Errorf("runlocal: Project and Region are required")
	}
	for id, j := range cfg.Jobs {
		if len(j.Command) == 0 || j.Command[0] == "" {
			return nil, fmt.Errorf("runlocal: job %q has no command", id)
		}
		if !jobIDRE.MatchString(id) {
			return nil, fmt.Errorf("runlocal: job ID %q: lowercase letters, digits and hyphens, starting with a letter", id)
		}
	}
	ownLogs := cfg.LogDir == ""
	if ownLogs {
		d, err := os.MkdirTemp("", "runlocal-logs-")
		if err != nil {
			return nil, err
		}
		cfg.LogDir = d
	}
	if cfg.WorkDir == "" {
		cfg.WorkDir = cfg.LogDir
	}
	if cfg.KillGrace <= 0 {
		cfg.KillGrace = 5 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{cfg: cfg, ownLogs: ownLogs, log: log, created: time.Now(), execs: map[string]*execution{}}, nil
}

// Register adds both services to a gRPC server.
func (s *Server) Register(g *grpc.Server) {
	runpb.RegisterJobsServer(g, s)
	runpb.RegisterExecutionsServer(g, s)
}

// Close cancels every running execution, waits for its tasks, and removes
// the log directory if it made it.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	var es []*execution
	for _, e := range s.execs {
		es = append(es, e)
	}
	s.mu.Unlock()
	for _, e := range es {
		s.cancel(e)
	}
	s.wg.Wait()
	if s.ownLogs {
		os.RemoveAll(s.cfg.LogDir)
	}
}

var jobIDRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)

func (s *Server) parent() string {
	return "projects/" + s.cfg.Project + "/locations/" + s.cfg.Region
}

// JobName is the full resource name of a configured job.
func (s *Server) JobName(id string) string { return s.parent() + "/jobs/" + id }

func (s *Server) job(name string) (string, Job, error) {
	id, ok := strings.CutPrefix(name, s.parent()+"/jobs/")
	j, found := s.cfg.Jobs[id]
	if !ok || !found {
		return "", Job{}, status.Errorf(codes.NotFound, "Job %s not found (the stand-in runs %s)", name, strings.Join(s.jobIDs(), ", "))
	}
	return id, j, nil
}

func (s *Server) jobIDs() []string {
	var ids []string
	for id := range s.cfg.Jobs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// GetJob implements the RPC.
func (s *Server) GetJob(_ context.Context, req *runpb.GetJobRequest) (*runpb.Job, error) {
	id, j, err := s.job(req.GetName())
	if err != nil {
		return nil, err
	}
	return s.jobPB(id, j), nil
}

// ListJobs implements the RPC (one page: the configured jobs are few).
func (s *Server) ListJobs(_ context.Context, req *runpb.ListJobsRequest) (*runpb.ListJobsResponse, error) {
	if req.GetParent() != s.parent() {
		return &runpb.ListJobsResponse{}, nil
	}
	out := &runpb.ListJobsResponse{}
	for _, id := range s.jobIDs() {
		out.Jobs = append(out.Jobs, s.jobPB(id, s.cfg.Jobs[id]))
	}
	return out, nil
}

func (s *Server) jobPB(id string, j Job) *runpb.Job {
	c := &runpb.Container{Name: "job", Image: "local:" + filepath.Base(j.Command[0]), Command: j.Command, Args: j.Args}
	for _, kv := range j.Env {
		k, v, _ := strings.Cut(kv, "=")
		c.Env = append(c.Env, &runpb.EnvVar{Name: k, Values: &runpb.EnvVar_Value{Value: v}})
	}
	name := s.JobName(id)
	out := &runpb.Job{
		Name: name, Uid: id, CreateTime: timestamppb.New(s.created),
		Template: &runpb.ExecutionTemplate{
			TaskCount: int32(max(j.TaskCount, 1)), Parallelism: int32(j.Parallelism),
			Template: &runpb.TaskTemplate{Containers: []*runpb.Container{c}, Timeout: durationpb.New(timeoutOf(j)),
				Retries: &runpb.TaskTemplate_MaxRetries{MaxRetries: int32(j.MaxRetries)}},
		},
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(s.order) - 1; i >= 0; i-- {
		if e := s.execs[s.order[i]]; e.pb.GetJob() == id {
			out.ExecutionCount++
			if out.LatestCreatedExecution == nil {
				out.LatestCreatedExecution = &runpb.ExecutionReference{Name: e.pb.GetName(), CreateTime: e.pb.GetCreateTime(), CompletionTime: e.pb.GetCompletionTime()}
			}
		}
	}
	return out
}

func timeoutOf(j Job) time.Duration {
	if j.Timeout > 0 {
		return j.Timeout
	}
	return 10 * time.Minute
}

// RunJob implements the RPC: an execution starts at once and the answer
// is its operation, whose metadata is the Execution (as Cloud Run's).
func (s *Server) RunJob(ctx context.Context, req *runpb.RunJobRequest) (*longrunningpb.Operation, error) {
	id, j, err := s.job(req.GetName())
	if err != nil {
		return nil, err
	}
	e, err := s.newExecution(id, j, req.GetOverrides())
	if err != nil {
		return nil, err
	}
	if req.GetValidateOnly() {
		return s.operation(e.pb)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, status.Error(codes.Unavailable, "runlocal is shutting down")
	}
	s.execs[e.pb.GetName()] = e
	s.order = append(s.order, e.pb.GetName())
	pb := proto.Clone(e.pb).(*runpb.Execution)
	s.wg.Add(1)
	s.mu.Unlock()
	s.log.InfoContext(ctx, "job execution started", "execution", pb.GetName(), "tasks", pb.GetTaskCount(), "parallelism", pb.GetParallelism(), "argv", e.argv, "log_dir", e.logDir)
	go s.run(e)
	return s.operation(pb)
}

func (s *Server) operation(e *runpb.Execution) (*longrunningpb.Operation, error) {
	md, err := anypb.New(e)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &longrunningpb.Operation{Name: s.parent() + "/operations/" + e.GetUid(), Metadata: md}, nil
}

// newExecution applies the overrides (Cloud Run's rules: at most one
// container override here, env merged, args replaced or cleared, task
// count and timeout replaced).
func (s *Server) newExecution(jobID string, j Job, o *runpb.RunJobRequest_Overrides) (*execution, error) {
	count, timeout := max(j.TaskCount, 1), timeoutOf(j)
	args, env := slices.Clone(j.Args), slices.Clone(j.Env)
	if n := o.GetTaskCount(); n != 0 {
		if n < 0 || n > 10000 {
			return nil, status.Errorf(codes.InvalidArgument, "overrides.task_count %d: want 1-10000", n)
		}
		count = int(n)
	}
	if t := o.GetTimeout(); t != nil {
		timeout = t.AsDuration()
	}
	if len(o.GetContainerOverrides()) > 1 {
		return nil, status.Error(codes.InvalidArgument, "the stand-in's jobs have one container: at most one container override")
	}
	for _, c := range o.GetContainerOverrides() {
		if c.GetClearArgs() {
			args = nil
		}
		if len(c.GetArgs()) > 0 {
			args = c.GetArgs()
		}
		for _, v := range c.GetEnv() {
			if v.GetValueSource() != nil {
				return nil, status.Errorf(codes.InvalidArgument, "env %s: value_source (Secret Manager) is not supported by the stand-in", v.GetName())
			}
			env = append(env, v.GetName()+"="+v.GetValue())
		}
	}
	eid := jobID + "-" + randomSuffix()
	name := s.JobName(jobID) + "/executions/" + eid
	now := timestamppb.Now()
	par := j.Parallelism
	if par <= 0 || par > count {
		par = count
	}
	pb := &runpb.Execution{
		Name: name, Uid: eid, Job: jobID, CreateTime: now, UpdateTime: now, TaskCount: int32(count), Parallelism: int32(par),
		Reconciling: true, LogUri: "file://" + filepath.Join(s.cfg.LogDir, eid),
		Template: &runpb.TaskTemplate{Timeout: durationpb.New(timeout), Retries: &runpb.TaskTemplate_MaxRetries{MaxRetries: int32(j.MaxRetries)}},
	}
	return &execution{pb: pb, id: eid, argv: append(slices.Clone(j.Command), args...), env: env, timeout: timeout,
		retries: j.MaxRetries, logDir: filepath.Join(s.cfg.LogDir, eid), cancelReq: make(chan struct{}),
		running: map[int]*proc.Process{}, done: make(chan struct{})}, nil
}

// randomSuffix is five lowercase letters or digits, as Cloud Run's
// execution names end.
func randomSuffix() string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 5)
	rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

// GetExecution implements the RPC.
func (s *Server) GetExecution(_ context.Context, req *runpb.GetExecutionRequest) (*runpb.Execution, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.execs[req.GetName()]
	if e == nil {
		return nil, status.Errorf(codes.NotFound, "Execution %s not found", req.GetName())
	}
	return proto.Clone(e.pb).(*runpb.Execution), nil
}

// ListExecutions implements the RPC: a job's executions, newest first
// (parent projects/P/locations/R/jobs/J, or "-" for every job), paged.
func (s *Server) ListExecutions(_ context.Context, req *runpb.ListExecutionsRequest) (*runpb.ListExecutionsResponse, error) {
	jobPrefix := req.GetParent() + "/executions/"
	if strings.HasSuffix(req.GetParent(), "/jobs/-") {
		jobPrefix = strings.TrimSuffix(req.GetParent(), "-")
	}
	offset := 0
	if t := req.GetPageToken(); t != "" {
		n, err := strconv.Atoi(t)
		if err != nil || n < 0 {
			return nil, status.Errorf(codes.InvalidArgument, "bad page_token %q", t)
		}
		offset = n
	}
	size := int(req.GetPageSize())
	if size <= 0 || size > 1000 {
		size = 100
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := &runpb.ListExecutionsResponse{}
	seen := 0
	for i := len(s.order) - 1; i >= 0; i-- {
		if !strings.HasPrefix(s.order[i], jobPrefix) {
			continue
		}
		if seen >= offset && len(out.Executions) < size {
			out.Executions = append(out.Executions, proto.Clone(s.execs[s.order[i]].pb).(*runpb.Execution))
		} else if len(out.Executions) == size {
			out.NextPageToken = strconv.Itoa(offset + size)
			break
		}
		seen++
	}
	return out, nil
}

// CancelExecution implements the RPC: running tasks get SIGTERM (SIGKILL
// after KillGrace), pending ones never start.
func (s *Server) CancelExecution(_ context.Context, req *runpb.CancelExecutionRequest) (*longrunningpb.Operation, error) {
	s.mu.Lock()
	e := s.execs[req.GetName()]
	s.mu.Unlock()
	if e == nil {
		return nil, status.Errorf(codes.NotFound, "Execution %s not found", req.GetName())
	}
	s.cancel(e)
	pb, _ := s.GetExecution(context.Background(), &runpb.GetExecutionRequest{Name: req.GetName()})
	return s.operation(pb)
}

func (s *Server) cancel(e *execution) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !e.cancelled {
		e.cancelled = true
		close(e.cancelReq)
	}
}

// KillTask sends SIGKILL to the running attempt of a task (a crash, for
// tests): the task is retried if it has retries left.
func (s *Server) KillTask(executionName string, index int) error {
	s.mu.Lock()
	e := s.execs[executionName]
	var p *proc.Process
	if e != nil {
		p = e.running[index]
	}
	s.mu.Unlock()
	if p == nil {
		return fmt.Errorf("runlocal: task %d of %s is not running", index, executionName)
	}
	return syscall.Kill(-p.PID(), syscall.SIGKILL)
}

// Wait blocks until the execution has completed (or ctx ends) and returns it.
func (s *Server) Wait(ctx context.Context, name string) (*runpb.Execution, error) {
	s.mu.Lock()
	e := s.execs[name]
	s.mu.Unlock()
	if e == nil {
		return nil, status.Errorf(codes.NotFound, "Execution %s not found", name)
	}
	select {
	case <-e.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return s.GetExecution(ctx, &runpb.GetExecutionRequest{Name: name})
}

// TaskLog is the log file of a task of an execution (its full name or ID).
func (s *Server) TaskLog(execution string, index int) string {
	id := execution[strings.LastIndex(execution, "/")+1:]
	return filepath.Join(s.cfg.LogDir, id, fmt.Sprintf("task-%d.log", index))
}
