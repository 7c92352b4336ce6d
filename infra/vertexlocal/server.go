// Package vertexlocal is a local stand-in for the Vertex AI JobService, so
// the training pipeline runs end to end without Google Cloud: a real gRPC
// server that the official aiplatform client talks to (there is no official
// emulator).
//
// It implements CreateCustomJob, GetCustomJob, ListCustomJobs (with the
// filter subset documented on parseFilter: labels.k=v, labels.k:*,
// display_name, state, AND, NOT) and CancelCustomJob, and the same four
// calls for HyperparameterTuningJobs, whose trials it runs as CustomJobs
// (see tuning.go). A job's first worker
// pool's container image is mapped to a local command (Config.Images); the
// job runs that command with the container's args, as a subprocess in its
// own process group (see shared/proc; on Linux the kernel kills it if the
// server's process dies, since a restarted server would not know the job),
// with the environment Vertex AI gives a container:
//
//	AIP_MODEL_DIR           = baseOutputDirectory + "/model/"
//	AIP_CHECKPOINT_DIR      = baseOutputDirectory + "/checkpoints/"
//	AIP_TENSORBOARD_LOG_DIR = baseOutputDirectory + "/logs/"
//	CLOUD_ML_JOB_ID         = the job's numeric ID
//
// plus the container spec's env, Config.Env and the server's own
// environment. States follow Vertex AI: JOB_STATE_PENDING (waiting for a
// slot, Config.MaxConcurrent), RUNNING, then SUCCEEDED, FAILED (non-zero
// exit, a signal such as a crash, a start failure or the scheduling
// timeout; error.message says which and quotes the log's tail) or
// CANCELLED (CancelCustomJob sends SIGTERM to the group, then SIGKILL after
// Config.KillGrace). Each job's stdout and stderr go to LogDir/<ID>.log
// (Server.LogPath). A crashing trainer never takes the server down.
//
// Jobs live in memory only: restarting the server forgets them.
package vertexlocal

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"cloud.google.com/go/aiplatform/apiv1/aiplatformpb"
	"google.golang.org/genproto/googleapis/rpc/code"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/orchard-mlops/orchard/shared/proc"
	"github.com/orchard-mlops/orchard/shared/training"
)

// Config configures the stand-in.
type Config struct {
	// Images maps a container image URI to the local command (argv prefix)
	// that plays it; the job's container args are appended. A key ending
	// in "*" matches any image with that prefix (e.g. "europe-docker.pkg.dev/p/r/trainer*").
	Images map[string][]string
	// LogDir holds one log file per job; default a new temporary directory,
	// removed by Close (pass a directory to keep the logs).
	LogDir string
	// WorkDir is the jobs' working directory; default LogDir.
	WorkDir string
	// Env is added to every job's environment (after the server's own).
	Env []string
	// MaxConcurrent jobs run at once; the rest stay PENDING. Default 1
	// (training saturates a small machine).
	MaxConcurrent int
	// KillGrace is how long a cancelled job gets between SIGTERM and
	// SIGKILL; default 5s.
	KillGrace time.Duration
	Logger    *slog.Logger
}

// Server implements aiplatformpb.JobServiceServer.
type Server struct {
	aiplatformpb.UnimplementedJobServiceServer

	cfg     Config
	ownLogs bool // LogDir is a temporary directory of ours, removed by Close
	log     *slog.Logger
	sem     chan struct{}
	seq     atomic.Int64
	base    int64

	mu     sync.Mutex
	jobs   map[string]*job // by full name
	order  []string        // creation order
	tuning tuningJobs      // HyperparameterTuningJobs (tuning.go)
	closed bool
	wg     sync.WaitGroup
}

type job struct {
	pb        *aiplatformpb.CustomJob // guarded by Server.mu
	id        string
	argv      []string
	env       []string
	logPath   string
	timeout   time.Duration
	cancelReq chan struct{}
	cancelled atomic.Bool
	done      chan struct{}
}

// NewServer checks the configuration and returns a server (not yet
// listening; see Register and Serve).
func NewServer(cfg Config) (*Server, error) {
	ownLogs := cfg.LogDir == ""
	if ownLogs {
		d, err := os.MkdirTemp("", "vertexlocal-logs-")
		if err != nil {
			return nil, err
		}
		cfg.LogDir = d
	}
	if err := os.MkdirAll(cfg.LogDir, 0o755); err != nil {
		return nil, fmt.Errorf("vertexlocal: %w", err)
	}
	if cfg.WorkDir == "" {
		cfg.WorkDir = cfg.LogDir
	}
	if cfg.MaxConcurrent <= 0 {
		cfg.MaxConcurrent = 1
	}
	if cfg.KillGrace <= 0 {
		cfg.KillGrace = 5 * time.Second
	}
	for img, argv := range cfg.Images {
		if len(argv) == 0 || argv[0] == "" {
			return nil, fmt.Errorf("vertexlocal: image %q maps to an empty command", img)
		}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{cfg: cfg, ownLogs: ownLogs, log: log, sem: make(chan struct{}, cfg.MaxConcurrent),
		base: time.Now().Unix() * 1_000_000, jobs: map[string]*job{}}, nil
}

// Register adds the JobService to a gRPC server.
func (s *Server) Register(g *grpc.Server) { aiplatformpb.RegisterJobServiceServer(g, s) }

// Serve runs a JobService on lis until ctx ends, then cancels running jobs
// and stops.
func Serve(ctx context.Context, lis net.Listener, cfg Config) error {
	s, err := NewServer(cfg)
	if err != nil {
		return err
	}
	g := grpc.NewServer()
	s.Register(g)
	errc := make(chan error, 1)
	go func() { errc <- g.Serve(lis) }()
	s.log.Info("vertexlocal serving", "addr", lis.Addr().String(), "log_dir", s.cfg.LogDir)
	select {
	case <-ctx.Done():
		g.GracefulStop()
		s.Close()
		return nil
	case err := <-errc:
		s.Close()
		return err
	}
}

// Close cancels every running or pending job and waits for them to end,
// then removes the log directory if it made it.
// Later CreateCustomJob calls fail with Unavailable.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	var js []*job
	for _, j := range s.jobs {
		js = append(js, j)
	}
	tjs := s.tuning.all()
	s.mu.Unlock()
	for _, t := range tjs {
		t.requestCancel()
	}
	for _, j := range js {
		s.requestCancel(j)
	}
	s.wg.Wait()
	if s.ownLogs {
		os.RemoveAll(s.cfg.LogDir)
	}
}

// LogPath returns the log file of a job (its full resource name or ID).
func (s *Server) LogPath(nameOrID string) string {
	id := nameOrID[strings.LastIndex(nameOrID, "/")+1:]
	return filepath.Join(s.cfg.LogDir, id+".log")
}

// Wait blocks until the job has ended (or ctx is done) and returns it.
func (s *Server) Wait(ctx context.Context, name string) (*aiplatformpb.CustomJob, error) {
	s.mu.Lock()
	j := s.jobs[name]
	s.mu.Unlock()
	if j == nil {
		return nil, status.Errorf(codes.NotFound, "CustomJob %s not found", name)
	}
	select {
	case <-j.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return proto.Clone(j.pb).(*aiplatformpb.CustomJob), nil
}

var (
	parentRE   = regexp.MustCompile(`^projects/[^/]+/locations/[^/]+$`)
	labelKeyRE = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,62}$`)
	labelValRE = regexp.MustCompile(`^[a-z0-9_-]{0,63}$`)
)

// CreateCustomJob implements the RPC.
func (s *Server) CreateCustomJob(ctx context.Context, req *aiplatformpb.CreateCustomJobRequest) (*aiplatformpb.CustomJob, error) {
	if !parentRE.MatchString(req.GetParent()) {
		return nil, status.Errorf(codes.InvalidArgument, "parent %q must be projects/P/locations/L", req.GetParent())
	}
	in := req.GetCustomJob()
	if in == nil {
		return nil, status.Error(codes.InvalidArgument, "custom_job is required")
	}
	if err := checkNameLabels(in.GetDisplayName(), in.GetLabels()); err != nil {
		return nil, err
	}
	prefix, err := s.checkJobSpec(in.GetJobSpec(), "job_spec")
	if err != nil {
		return nil, err
	}
	cs := in.GetJobSpec().GetWorkerPoolSpecs()[0].GetContainerSpec()
	var timeout time.Duration
	if t := in.GetJobSpec().GetScheduling().GetTimeout(); t != nil {
		timeout = t.AsDuration()
	}

	id := strconv.FormatInt(s.base+s.seq.Add(1), 10)
	name := req.GetParent() + "/customJobs/" + id
	out := proto.Clone(in).(*aiplatformpb.CustomJob)
	now := timestamppb.Now()
	out.Name, out.State, out.CreateTime, out.UpdateTime = name, aiplatformpb.JobState_JOB_STATE_PENDING, now, now
	out.StartTime, out.EndTime, out.Error = nil, nil, nil

	env := append(os.Environ(), s.cfg.Env...)
	for _, e := range cs.GetEnv() {
		env = append(env, e.GetName()+"="+e.GetValue())
	}
	env = append(env, training.EnvJobID+"="+id)
	if base := in.GetJobSpec().GetBaseOutputDirectory().GetOutputUriPrefix(); base != "" {
		env = append(env, training.OutputEnv(base)...)
	}
	j := &job{pb: out, id: id, argv: append(append([]string(nil), prefix...), cs.GetArgs()...), env: env,
		logPath: s.LogPath(id), timeout: timeout, cancelReq: make(chan struct{}), done: make(chan struct{})}

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, status.Error(codes.Unavailable, "vertexlocal is shutting down")
	}
	s.jobs[name] = j
	s.order = append(s.order, name)
	resp := proto.Clone(out).(*aiplatformpb.CustomJob)
	s.wg.Add(1)
	s.mu.Unlock()

	s.log.InfoContext(ctx, "custom job created", "job", name, "display_name", in.GetDisplayName(), "argv", j.argv, "log", j.logPath)
	go s.run(j)
	return resp, nil
}

func (s *Server) command(image string) ([]string, bool) {
	if argv, ok := s.cfg.Images[image]; ok {
		return argv, true
	}
	best := ""
	for k := range s.cfg.Images {
		if p, ok := strings.CutSuffix(k, "*"); ok && strings.HasPrefix(image, p) && len(k) > len(best) {
			best = k
		}
	}
	if best == "" {
		return nil, false
	}
	return s.cfg.Images[best], true
}

// checkNameLabels applies Vertex AI's display name and label rules.
func checkNameLabels(display string, labels map[string]string) error {
	if n := len(display); n == 0 || n > 128 {
		return status.Errorf(codes.InvalidArgument, "display_name must be 1-128 characters, got %d", n)
	}
	if len(labels) > 64 {
		return status.Errorf(codes.InvalidArgument, "at most 64 labels, got %d", len(labels))
	}
	for k, v := range labels {
		if !labelKeyRE.MatchString(k) || !labelValRE.MatchString(v) {
			return status.Errorf(codes.InvalidArgument,
				"label %q=%q: keys and values must be lowercase letters, digits, '_' or '-', at most 63 characters, keys starting with a letter", k, v)
		}
	}
	return nil
}

// checkJobSpec checks what the stand-in can run of a CustomJobSpec (field
// names the spec's path in errors) and returns the local command of its image.
func (s *Server) checkJobSpec(spec *aiplatformpb.CustomJobSpec, field string) ([]string, error) {
	pools := spec.GetWorkerPoolSpecs()
	if len(pools) == 0 {
		return nil, status.Errorf(codes.InvalidArgument, "%s.worker_pool_specs must not be empty", field)
	}
	cs := pools[0].GetContainerSpec()
	if cs == nil || cs.GetImageUri() == "" {
		return nil, status.Errorf(codes.InvalidArgument, "%s.worker_pool_specs[0] needs a container_spec with image_uri (python_package_spec is not supported by vertexlocal)", field)
	}
	if pools[0].GetReplicaCount() != 1 {
		return nil, status.Errorf(codes.InvalidArgument, "%s.worker_pool_specs[0].replica_count must be 1 for the chief, got %d", field, pools[0].GetReplicaCount())
	}
	prefix, ok := s.command(cs.GetImageUri())
	if !ok {
		return nil, status.Errorf(codes.InvalidArgument, "image %q is not mapped to a local command (vertexlocal Config.Images / -image)", cs.GetImageUri())
	}
	if len(cs.GetCommand()) > 0 {
		return nil, status.Errorf(codes.InvalidArgument, "%s: container_spec.command overrides are not supported by vertexlocal; use args", field)
	}
	return prefix, nil
}

// GetCustomJob implements the RPC.
func (s *Server) GetCustomJob(_ context.Context, req *aiplatformpb.GetCustomJobRequest) (*aiplatformpb.CustomJob, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j := s.jobs[req.GetName()]
	if j == nil {
		return nil, status.Errorf(codes.NotFound, "CustomJob %s not found", req.GetName())
	}
	return proto.Clone(j.pb).(*aiplatformpb.CustomJob), nil
}

// ListCustomJobs implements the RPC: jobs under the parent that match the
// filter, newest first, paginated.
func (s *Server) ListCustomJobs(_ context.Context, req *aiplatformpb.ListCustomJobsRequest) (*aiplatformpb.ListCustomJobsResponse, error) {
	f, offset, size, err := listRequest(req.GetParent(), req.GetFilter(), req.GetPageToken(), req.GetPageSize())
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var all []*aiplatformpb.CustomJob
	for i := len(s.order) - 1; i >= 0; i-- {
		j := s.jobs[s.order[i]]
		if strings.HasPrefix(j.pb.GetName(), req.GetParent()+"/customJobs/") && f.match(j.pb) {
			all = append(all, j.pb)
		}
	}
	resp := &aiplatformpb.ListCustomJobsResponse{}
	resp.CustomJobs, resp.NextPageToken = page(all, offset, size)
	return resp, nil
}

// listRequest checks a List call's parent, filter and page and returns the
// parsed filter, the offset and the page size.
func listRequest(parent, filterText, token string, pageSize int32) (filter, int, int, error) {
	if !parentRE.MatchString(parent) {
		return nil, 0, 0, status.Errorf(codes.InvalidArgument, "parent %q must be projects/P/locations/L", parent)
	}
	f, err := parseFilter(filterText)
	if err != nil {
		return nil, 0, 0, status.Error(codes.InvalidArgument, err.Error())
	}
	offset := 0
	if token != "" {
		if offset, err = strconv.Atoi(token); err != nil || offset < 0 {
			return nil, 0, 0, status.Errorf(codes.InvalidArgument, "bad page_token %q", token)
		}
	}
	size := int(pageSize)
	if size <= 0 || size > 1000 {
		size = 100
	}
	return f, offset, size, nil
}

// page returns copies of all[offset:offset+size] and the next page's token.
func page[T proto.Message](all []T, offset, size int) ([]T, string) {
	var out []T
	for i := offset; i < len(all) && i < offset+size; i++ {
		out = append(out, proto.Clone(all[i]).(T))
	}
	if offset+size < len(all) {
		return out, strconv.Itoa(offset + size)
	}
	return out, ""
}

// CancelCustomJob implements the RPC: the job goes CANCELLING, its process
// group gets SIGTERM (SIGKILL after KillGrace), and it ends CANCELLED.
func (s *Server) CancelCustomJob(_ context.Context, req *aiplatformpb.CancelCustomJobRequest) (*emptypb.Empty, error) {
	s.mu.Lock()
	j := s.jobs[req.GetName()]
	if j == nil {
		s.mu.Unlock()
		return nil, status.Errorf(codes.NotFound, "CustomJob %s not found", req.GetName())
	}
	st := j.pb.GetState()
	if terminal(st) {
		s.mu.Unlock()
		return nil, status.Errorf(codes.FailedPrecondition, "CustomJob %s is already %s", req.GetName(), st)
	}
	j.pb.State, j.pb.UpdateTime = aiplatformpb.JobState_JOB_STATE_CANCELLING, timestamppb.Now()
	s.mu.Unlock()
	s.requestCancel(j)
	return &emptypb.Empty{}, nil
}

func (s *Server) requestCancel(j *job) {
	if j.cancelled.CompareAndSwap(false, true) {
		close(j.cancelReq)
	}
}

func terminal(st aiplatformpb.JobState) bool {
	switch st {
	case aiplatformpb.JobState_JOB_STATE_SUCCEEDED, aiplatformpb.JobState_JOB_STATE_FAILED,
		aiplatformpb.JobState_JOB_STATE_CANCELLED, aiplatformpb.JobState_JOB_STATE_EXPIRED:
		return true
	}
	return false
}

// run drives one job through its states.
func (s *Server) run(j *job) {
	defer s.wg.Done()
	defer close(j.done)
	finish := func(st aiplatformpb.JobState, e *spb.Status) {
		s.mu.Lock()
		now := timestamppb.Now()
		j.pb.State, j.pb.EndTime, j.pb.UpdateTime, j.pb.Error = st, now, now, e
		s.mu.Unlock()
		s.log.Info("custom job ended", "job", j.pb.GetName(), "state", st.String(), "error", e.GetMessage())
	}
	cancelled := &spb.Status{Code: int32(code.Code_CANCELLED), Message: "CustomJob was cancelled."}

	// Wait for a slot (PENDING) or a cancellation.
	select {
	case s.sem <- struct{}{}:
		defer func() { <-s.sem }()
	case <-j.cancelReq:
		finish(aiplatformpb.JobState_JOB_STATE_CANCELLED, cancelled)
		return
	}
	if j.cancelled.Load() {
		finish(aiplatformpb.JobState_JOB_STATE_CANCELLED, cancelled)
		return
	}

	logf, err := os.OpenFile(j.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		finish(aiplatformpb.JobState_JOB_STATE_FAILED, &spb.Status{Code: int32(code.Code_INTERNAL), Message: "opening the job log: " + err.Error()})
		return
	}
	defer logf.Close()
	fmt.Fprintf(logf, "vertexlocal: job %s\nvertexlocal: argv %q\n", j.pb.GetName(), j.argv)
	for _, e := range j.env {
		if strings.HasPrefix(e, "AIP_") || strings.HasPrefix(e, "CLOUD_ML_") {
			fmt.Fprintf(logf, "vertexlocal: env %s\n", e)
		}
	}

	p, err := proc.Start("job "+j.id, j.argv, j.env, s.cfg.WorkDir, logf)
	if err != nil {
		fmt.Fprintf(logf, "vertexlocal: start failed: %v\n", err)
		finish(aiplatformpb.JobState_JOB_STATE_FAILED, &spb.Status{Code: int32(code.Code_INVALID_ARGUMENT),
			Message: fmt.Sprintf("The replica workerpool0-0 could not start: %v. Log: %s", err, j.logPath)})
		return
	}
	s.mu.Lock()
	now := timestamppb.Now()
	j.pb.StartTime, j.pb.UpdateTime = now, now
	if j.pb.State == aiplatformpb.JobState_JOB_STATE_PENDING {
		j.pb.State = aiplatformpb.JobState_JOB_STATE_RUNNING
	}
	s.mu.Unlock()
	s.log.Info("custom job running", "job", j.pb.GetName(), "pid", p.PID())

	var timeoutC <-chan time.Time
	if j.timeout > 0 {
		t := time.NewTimer(j.timeout)
		defer t.Stop()
		timeoutC = t.C
	}
	timedOut := false
	select {
	case <-p.Done():
	case <-j.cancelReq:
	case <-timeoutC:
		timedOut = true
	}
	// Cancelled or timed out: SIGTERM to the job's process group, SIGKILL
	// after the grace period. Ended on its own (a crash included): whatever
	// the trainer left behind in its group goes too.
	if err := p.Stop(s.cfg.KillGrace); err != nil {
		s.log.Warn("custom job: stopping its process group", "job", j.pb.GetName(), "error", err.Error())
	}
	werr := p.Err()
	fmt.Fprintf(logf, "vertexlocal: exit: %v\n", werr)

	switch {
	case j.cancelled.Load():
		finish(aiplatformpb.JobState_JOB_STATE_CANCELLED, cancelled)
	case timedOut:
		finish(aiplatformpb.JobState_JOB_STATE_FAILED, &spb.Status{Code: int32(code.Code_DEADLINE_EXCEEDED),
			Message: fmt.Sprintf("The job exceeded its scheduling timeout of %s. Log: %s", j.timeout, j.logPath)})
	case werr == nil:
		finish(aiplatformpb.JobState_JOB_STATE_SUCCEEDED, nil)
	default:
		finish(aiplatformpb.JobState_JOB_STATE_FAILED, &spb.Status{Code: int32(code.Code_INVALID_ARGUMENT),
			Message: fmt.Sprintf("The replica workerpool0-0 %s. Log: %s. Last lines:\n%s", describeExit(werr), j.logPath, tail(j.logPath, 20))})
	}
}

func describeExit(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return fmt.Sprintf("was terminated by signal %s", ws.Signal())
		}
		return fmt.Sprintf("exited with a non-zero status of %d", ee.ExitCode())
	}
	return "failed: " + err.Error()
}

// tail returns the last n lines of a file (at most 64 KiB read).
func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > 64<<10 {
		f.Seek(fi.Size()-64<<10, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	return proc.LastLines(string(b), n)
}

// Jobs returns a snapshot of every job, oldest first (for tools and tests).
func (s *Server) Jobs() []*aiplatformpb.CustomJob {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*aiplatformpb.CustomJob, 0, len(s.order))
	for _, n := range s.order {
		out = append(out, proto.Clone(s.jobs[n].pb).(*aiplatformpb.CustomJob))
	}
	sort.SliceStable(out, func(i, k int) bool { return out[i].GetCreateTime().AsTime().Before(out[k].GetCreateTime().AsTime()) })
	return out
}
