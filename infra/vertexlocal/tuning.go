package vertexlocal

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"cloud.google.com/go/aiplatform/apiv1/aiplatformpb"
	"google.golang.org/genproto/googleapis/rpc/code"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/orchard-mlops/orchard/trainer/sweep"
	"github.com/orchard-mlops/orchard/trainer/sweep/vertexspec"
)

// HyperparameterTuningJobs: CreateHyperparameterTuningJob, Get, List (the
// same filter subset as CustomJobs) and Cancel. The stand-in reads the
// StudySpec back as a sweep.Spec (trainer/sweep/vertexspec) and picks the
// trials with trainer sweep's own code: GRID_SEARCH visits the grid in
// order, RANDOM_SEARCH draws from a generator seeded by the job's ID. Each
// trial is a CustomJob of the trial job spec, as on Vertex AI:
//
//   - the trial's parameters are appended to the container args as
//     --<parameter_id>=<value>;
//   - baseOutputDirectory becomes <base>/<trial ID>, so AIP_MODEL_DIR is
//     <base>/<trial ID>/model/;
//   - CLOUD_ML_TRIAL_ID is the trial ID, and CLOUD_ML_HP_METRIC_FILE names
//     a file of the trial's own in LogDir (on Vertex AI every trial has its
//     own container and the default /tmp/hypertune/output.metrics).
//
// A trial that succeeds gets the last report of the study's metric in
// that file as its final measurement; a trial whose job fails, or that
// reports no metric, ends INFEASIBLE with the reason. Up to
// parallel_trial_count trials run at once (and each still needs one of
// Config.MaxConcurrent job slots). After max_failed_trial_count failed
// trials (0: all of them) no new trial starts and the job FAILS; otherwise
// it SUCCEEDS once every trial has ended.

type tuningJobs struct {
	byName map[string]*tuningJob
	order  []string
}

func (t *tuningJobs) all() []*tuningJob {
	out := make([]*tuningJob, 0, len(t.byName))
	for _, j := range t.byName {
		out = append(out, j)
	}
	return out
}

type tuningJob struct {
	pb        *aiplatformpb.HyperparameterTuningJob // guarded by Server.mu
	spec      *sweep.Spec
	cancelReq chan struct{}
	cancelled atomic.Bool
	done      chan struct{}
}

func (t *tuningJob) requestCancel() {
	if t.cancelled.CompareAndSwap(false, true) {
		close(t.cancelReq)
	}
}

// CreateHyperparameterTuningJob implements the RPC.
func (s *Server) CreateHyperparameterTuningJob(ctx context.Context, req *aiplatformpb.CreateHyperparameterTuningJobRequest) (*aiplatformpb.HyperparameterTuningJob, error) {
	if !parentRE.MatchString(req.GetParent()) {
		return nil, status.Errorf(codes.InvalidArgument, "parent %q must be projects/P/locations/L", req.GetParent())
	}
	in := req.GetHyperparameterTuningJob()
	if in == nil {
		return nil, status.Error(codes.InvalidArgument, "hyperparameter_tuning_job is required")
	}
	if err := checkNameLabels(in.GetDisplayName(), in.GetLabels()); err != nil {
		return nil, err
	}
	if _, err := s.checkJobSpec(in.GetTrialJobSpec(), "trial_job_spec"); err != nil {
		return nil, err
	}
	if in.GetParallelTrialCount() > in.GetMaxTrialCount() {
		return nil, status.Errorf(codes.InvalidArgument, "parallel_trial_count %d exceeds max_trial_count %d", in.GetParallelTrialCount(), in.GetMaxTrialCount())
	}
	spec, err := vertexspec.FromJob(in)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "%v", err)
	}
	id := strconv.FormatInt(s.base+s.seq.Add(1), 10)
	spec.Seed, _ = strconv.ParseInt(id, 10, 64)
	out := proto.Clone(in).(*aiplatformpb.HyperparameterTuningJob)
	now := timestamppb.Now()
	out.Name = req.GetParent() + "/hyperparameterTuningJobs/" + id
	out.State, out.CreateTime, out.UpdateTime = aiplatformpb.JobState_JOB_STATE_PENDING, now, now
	out.StartTime, out.EndTime, out.Error, out.Trials = nil, nil, nil, nil
	t := &tuningJob{pb: out, spec: spec, cancelReq: make(chan struct{}), done: make(chan struct{})}

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, status.Error(codes.Unavailable, "vertexlocal is shutting down")
	}
	if s.tuning.byName == nil {
		s.tuning.byName = map[string]*tuningJob{}
	}
	s.tuning.byName[out.Name] = t
	s.tuning.order = append(s.tuning.order, out.Name)
	resp := proto.Clone(out).(*aiplatformpb.HyperparameterTuningJob)
	s.wg.Add(1)
	s.mu.Unlock()
	s.log.InfoContext(ctx, "tuning job created", "job", out.Name, "display_name", in.GetDisplayName(),
		"algorithm", spec.Algorithm, "trials", len(spec.Expand()), "parallel", spec.Parallel)
	go s.runTuning(t)
	return resp, nil
}

// GetHyperparameterTuningJob implements the RPC.
func (s *Server) GetHyperparameterTuningJob(_ context.Context, req *aiplatformpb.GetHyperparameterTuningJobRequest) (*aiplatformpb.HyperparameterTuningJob, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tuning.byName[req.GetName()]
	if t == nil {
		return nil, status.Errorf(codes.NotFound, "HyperparameterTuningJob %s not found", req.GetName())
	}
	return proto.Clone(t.pb).(*aiplatformpb.HyperparameterTuningJob), nil
}

// ListHyperparameterTuningJobs implements the RPC: newest first, with the
// CustomJob filter subset (labels, display_name, state), paginated.
func (s *Server) ListHyperparameterTuningJobs(_ context.Context, req *aiplatformpb.ListHyperparameterTuningJobsRequest) (*aiplatformpb.ListHyperparameterTuningJobsResponse, error) {
	f, offset, size, err := listRequest(req.GetParent(), req.GetFilter(), req.GetPageToken(), req.GetPageSize())
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var all []*aiplatformpb.HyperparameterTuningJob
	for i := len(s.tuning.order) - 1; i >= 0; i-- {
		pb := s.tuning.byName[s.tuning.order[i]].pb
		// The filter reads the fields both job kinds share.
		shared := &aiplatformpb.CustomJob{DisplayName: pb.GetDisplayName(), Labels: pb.GetLabels(), State: pb.GetState()}
		if strings.HasPrefix(pb.GetName(), req.GetParent()+"/hyperparameterTuningJobs/") && f.match(shared) {
			all = append(all, pb)
		}
	}
	resp := &aiplatformpb.ListHyperparameterTuningJobsResponse{}
	resp.HyperparameterTuningJobs, resp.NextPageToken = page(all, offset, size)
	return resp, nil
}

// CancelHyperparameterTuningJob implements the RPC: no new trial starts,
// running trials' jobs are cancelled, and the job ends CANCELLED.
func (s *Server) CancelHyperparameterTuningJob(_ context.Context, req *aiplatformpb.CancelHyperparameterTuningJobRequest) (*emptypb.Empty, error) {
	s.mu.Lock()
	t := s.tuning.byName[req.GetName()]
	if t == nil {
		s.mu.Unlock()
		return nil, status.Errorf(codes.NotFound, "HyperparameterTuningJob %s not found", req.GetName())
	}
	if st := t.pb.GetState(); terminal(st) {
		s.mu.Unlock()
		return nil, status.Errorf(codes.FailedPrecondition, "HyperparameterTuningJob %s is already %s", req.GetName(), st)
	}
	t.pb.State, t.pb.UpdateTime = aiplatformpb.JobState_JOB_STATE_CANCELLING, timestamppb.Now()
	s.mu.Unlock()
	t.requestCancel()
	return &emptypb.Empty{}, nil
}

// WaitTuning blocks until the tuning job has ended (or ctx is done).
func (s *Server) WaitTuning(ctx context.Context, name string) (*aiplatformpb.HyperparameterTuningJob, error) {
	s.mu.Lock()
	t := s.tuning.byName[name]
	s.mu.Unlock()
	if t == nil {
		return nil, status.Errorf(codes.NotFound, "HyperparameterTuningJob %s not found", name)
	}
	select {
	case <-t.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return proto.Clone(t.pb).(*aiplatformpb.HyperparameterTuningJob), nil
}

// runTuning runs the trials, parallel_trial_count at a time.
func (s *Server) runTuning(t *tuningJob) {
	defer s.wg.Done()
	defer close(t.done)
	s.update(t, func(pb *aiplatformpb.HyperparameterTuningJob) {
		pb.StartTime = timestamppb.Now()
		if pb.State == aiplatformpb.JobState_JOB_STATE_PENDING {
			pb.State = aiplatformpb.JobState_JOB_STATE_RUNNING
		}
	})
	trials := t.spec.Expand()
	maxFailed := t.spec.MaxFailed
	if maxFailed <= 0 {
		maxFailed = len(trials)
	}
	var failed, succeeded atomic.Int32
	sem := make(chan struct{}, t.spec.Parallel)
	var wg sync.WaitGroup
loop:
	for _, tr := range trials {
		select {
		case sem <- struct{}{}:
		case <-t.cancelReq:
			break loop
		}
		if t.cancelled.Load() || int(failed.Load()) >= maxFailed {
			<-sem
			break
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			switch s.runTrial(t, tr) {
			case aiplatformpb.Trial_SUCCEEDED:
				succeeded.Add(1)
			case aiplatformpb.Trial_INFEASIBLE:
				if !t.cancelled.Load() {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	var st aiplatformpb.JobState
	var e *spb.Status
	switch {
	case t.cancelled.Load():
		st, e = aiplatformpb.JobState_JOB_STATE_CANCELLED, &spb.Status{Code: int32(code.Code_CANCELLED), Message: "HyperparameterTuningJob was cancelled."}
	case int(failed.Load()) >= maxFailed || succeeded.Load() == 0:
		st, e = aiplatformpb.JobState_JOB_STATE_FAILED, &spb.Status{Code: int32(code.Code_INTERNAL),
			Message: fmt.Sprintf("%d of %d trials failed (max_failed_trial_count %d); see the trials' infeasible_reason", failed.Load(), len(trials), maxFailed)}
	default:
		st = aiplatformpb.JobState_JOB_STATE_SUCCEEDED
	}
	s.update(t, func(pb *aiplatformpb.HyperparameterTuningJob) {
		now := timestamppb.Now()
		pb.State, pb.EndTime, pb.UpdateTime, pb.Error = st, now, now, e
	})
	s.log.Info("tuning job ended", "job", t.pb.GetName(), "state", st.String(), "succeeded", succeeded.Load(), "failed", failed.Load())
}

func (s *Server) update(t *tuningJob, f func(*aiplatformpb.HyperparameterTuningJob)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(t.pb)
	t.pb.UpdateTime = timestamppb.Now()
}

// runTrial runs one trial's CustomJob and records its outcome.
func (s *Server) runTrial(t *tuningJob, tr sweep.Trial) aiplatformpb.Trial_State {
	id := strconv.Itoa(tr.ID)
	s.mu.Lock()
	parent := t.pb.GetName()[:strings.Index(t.pb.GetName(), "/hyperparameterTuningJobs/")]
	jobID := t.pb.GetName()[strings.LastIndex(t.pb.GetName(), "/")+1:]
	trial := &aiplatformpb.Trial{Name: t.pb.GetName() + "/trials/" + id, Id: id, State: aiplatformpb.Trial_ACTIVE,
		Parameters: vertexspec.TrialParameters(t.spec, tr), StartTime: timestamppb.Now()}
	t.pb.Trials = append(t.pb.Trials, trial)
	slices.SortFunc(t.pb.Trials, func(a, b *aiplatformpb.Trial) int {
		x, _ := strconv.Atoi(a.GetId())
		y, _ := strconv.Atoi(b.GetId())
		return x - y
	})
	spec := proto.Clone(t.pb.GetTrialJobSpec()).(*aiplatformpb.CustomJobSpec)
	display := t.pb.GetDisplayName()
	s.mu.Unlock()

	end := func(st aiplatformpb.Trial_State, reason string, m *aiplatformpb.Measurement) aiplatformpb.Trial_State {
		s.update(t, func(*aiplatformpb.HyperparameterTuningJob) {
			trial.State, trial.EndTime, trial.InfeasibleReason, trial.FinalMeasurement = st, timestamppb.Now(), reason, m
		})
		return st
	}
	metricFile := filepath.Join(s.cfg.LogDir, jobID+"-trial-"+id+".metrics")
	cs := spec.GetWorkerPoolSpecs()[0].GetContainerSpec()
	cs.Args = append(cs.Args, tr.Args()...)
	cs.Env = append(cs.Env, &aiplatformpb.EnvVar{Name: sweep.TrialIDEnv, Value: id},
		&aiplatformpb.EnvVar{Name: sweep.MetricFileEnv, Value: metricFile})
	if b := spec.GetBaseOutputDirectory(); b.GetOutputUriPrefix() != "" {
		b.OutputUriPrefix = strings.TrimRight(b.GetOutputUriPrefix(), "/") + "/" + id
	}
	name := display
	if suffix := "-trial-" + id; len(name)+len(suffix) <= 128 {
		name += suffix
	}
	job, err := s.CreateCustomJob(context.Background(), &aiplatformpb.CreateCustomJobRequest{Parent: parent,
		CustomJob: &aiplatformpb.CustomJob{DisplayName: name, JobSpec: spec}})
	if err != nil {
		return end(aiplatformpb.Trial_INFEASIBLE, "creating the trial's CustomJob: "+err.Error(), nil)
	}
	s.update(t, func(*aiplatformpb.HyperparameterTuningJob) { trial.CustomJob = job.GetName() })
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-t.cancelReq:
			s.mu.Lock()
			j := s.jobs[job.GetName()]
			s.mu.Unlock()
			if j != nil {
				s.requestCancel(j)
			}
		case <-ctx.Done():
		}
	}()
	final, err := s.Wait(ctx, job.GetName())
	cancel()
	if err != nil {
		return end(aiplatformpb.Trial_INFEASIBLE, err.Error(), nil)
	}
	switch final.GetState() {
	case aiplatformpb.JobState_JOB_STATE_SUCCEEDED:
	case aiplatformpb.JobState_JOB_STATE_CANCELLED:
		return end(aiplatformpb.Trial_INFEASIBLE, "cancelled with the tuning job", nil)
	default:
		return end(aiplatformpb.Trial_INFEASIBLE, "the trial's job "+final.GetState().String()+": "+final.GetError().GetMessage(), nil)
	}
	b, err := os.ReadFile(metricFile)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return end(aiplatformpb.Trial_INFEASIBLE, err.Error(), nil)
	}
	m, err := sweep.ReadMetric(b, t.spec.Metric)
	if err != nil {
		return end(aiplatformpb.Trial_INFEASIBLE, "the trial reported no "+t.spec.Metric+" (cloudml-hypertune): "+err.Error(), nil)
	}
	elapsed := final.GetEndTime().AsTime().Sub(final.GetStartTime().AsTime())
	return end(aiplatformpb.Trial_SUCCEEDED, "", &aiplatformpb.Measurement{StepCount: m.Step,
		ElapsedDuration: durationpb.New(elapsed), Metrics: []*aiplatformpb.Measurement_Metric{{MetricId: t.spec.Metric, Value: m.Value}}})
}
