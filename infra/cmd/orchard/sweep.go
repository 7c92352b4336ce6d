package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	aiplatform "cloud.google.com/go/aiplatform/apiv1"
	"cloud.google.com/go/aiplatform/apiv1/aiplatformpb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/orchard-mlops/orchard/functions/submittraining"
	"github.com/orchard-mlops/orchard/trainer/sweep"
	"github.com/orchard-mlops/orchard/trainer/sweep/vertexspec"
)

// runSweep is `orchard sweep`: a sweep spec submitted as a Vertex AI
// HyperparameterTuningJob whose trials run `trainer train` with the trial's
// parameters; with -wait (the default) it follows the job, then writes the
// comparison page of the trials and, with -publish, publishes the best
// trial through the registry's quality gate.
func runSweep(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f, err := parseSweepFlags(args, stderr)
	if err != nil {
		return err
	}
	spec, err := sweep.Load(f.specFile)
	if err != nil {
		return usageError{err}
	}
	if f.version == "" {
		f.version = "sweep-" + time.Now().UTC().Format("20060102-150405")
	}
	display := spec.Name + "-" + f.version
	base := strings.TrimRight(f.output, "/") + "/" + display
	c, err := dialJobs(ctx, f.region, f.endpoint)
	if err != nil {
		return err
	}
	defer c.Close()
	job, err := createTuningJob(ctx, c, f, spec, display, base)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "created %s (%s): %s search, %d trials, %d at a time, %s %s; trials write %s/<trial>/model\n",
		job.GetName(), display, spec.Algorithm, spec.Trials, spec.Parallel, spec.Goal, spec.Metric, base)
	if !f.wait {
		return nil
	}
	if job, err = followJob(ctx, c, job, f.poll, display); err != nil {
		return err
	}
	results := trialResults(spec, job, base)
	sweep.PrintResults(stdout, spec, results)
	if job.GetState() != aiplatformpb.JobState_JOB_STATE_SUCCEEDED {
		return fmt.Errorf("%s ended %s: %s", job.GetName(), job.GetState(), job.GetError().GetMessage())
	}
	fo := sweep.FinishOptions{Storage: stores, Registry: f.publish, CompareOut: base + "/compare", Margin: f.margin, AllowNewLabels: f.allowNew,
		By: f.by, Reason: "orchard sweep " + job.GetName(), Runtime: gateRuntime}
	sum, err := sweep.Finish(ctx, spec, results, fo)
	if err != nil {
		return err
	}
	sweep.PrintSummary(stdout, spec, sum, fo.CompareOut)
	return nil
}

// sweepFlags are `orchard sweep`'s flags.
type sweepFlags struct {
	specFile, data, image, output, project, region, endpoint string
	machine, serviceAccount, version                         string
	trialTimeout, poll                                       time.Duration
	wait                                                     bool
	publish                                                  string
	margin                                                   float64
	allowNew                                                 bool
	by                                                       string
}

// parseSweepFlags parses and checks `orchard sweep`'s flags.
func parseSweepFlags(args []string, stderr io.Writer) (*sweepFlags, error) {
	var f sweepFlags
	fs := flags("sweep", stderr)
	fs.StringVar(&f.specFile, "spec", "", "sweep spec (YAML; see trainer/README.md)")
	fs.StringVar(&f.data, "data", "", "dataset URI (gs://bucket/prefix)")
	fs.StringVar(&f.image, "image", os.Getenv("TRAINER_IMAGE"), "trainer container image (default $TRAINER_IMAGE)")
	fs.StringVar(&f.output, "output", os.Getenv("TRAINING_OUTPUT_URI"), "runs prefix (gs://bucket/runs; default $TRAINING_OUTPUT_URI): the job writes OUTPUT/<job name>/<trial>/model")
	fs.StringVar(&f.project, "project", defaultProject(), "Google Cloud project ($GOOGLE_CLOUD_PROJECT when set)")
	fs.StringVar(&f.region, "region", os.Getenv("VERTEX_REGION"), "Vertex AI region (default $VERTEX_REGION)")
	fs.StringVar(&f.endpoint, "endpoint", os.Getenv("VERTEX_ENDPOINT"), "JobService address (default REGION-aiplatform.googleapis.com:443; 127.0.0.1:PORT for the local stand-in)")
	fs.StringVar(&f.machine, "machine-type", firstNonEmpty(os.Getenv("TRAINER_MACHINE_TYPE"), "n1-standard-4"), "trial machine type")
	fs.StringVar(&f.serviceAccount, "service-account", os.Getenv("TRAINER_SERVICE_ACCOUNT"), "the trials' service account (default $TRAINER_SERVICE_ACCOUNT)")
	fs.StringVar(&f.version, "version", "", "sweep version; trial N's model is VERSION-tN (default sweep-<UTC time>)")
	fs.DurationVar(&f.trialTimeout, "trial-timeout", 2*time.Hour, "scheduling timeout of each trial")
	fs.BoolVar(&f.wait, "wait", true, "follow the job to its end, then compare the trials (and publish)")
	fs.DurationVar(&f.poll, "poll", 15*time.Second, "with -wait: how often to read the job")
	fs.StringVar(&f.publish, "publish", "", "registry URI: publish the best trial through the quality gate")
	fs.Float64Var(&f.margin, "margin", 0, "with -publish: accuracy margin of the quality gate")
	fs.BoolVar(&f.allowNew, "allow-new-labels", false, "with -publish: accept a different label set")
	fs.StringVar(&f.by, "by", currentUser(), "who (recorded with the gate decision)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, usageError{fmt.Errorf("unexpected arguments %q", fs.Args())}
	}
	var missing []string
	for name, v := range map[string]string{"-spec": f.specFile, "-data": f.data, "-image": f.image, "-output": f.output, "-project": f.project, "-region": f.region} {
		if v == "" {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return nil, usageError{fmt.Errorf("required: %s", strings.Join(slices.Sorted(slices.Values(missing)), ", "))}
	}
	return &f, nil
}

// createTuningJob creates the sweep's HyperparameterTuningJob; its trials
// write under base.
func createTuningJob(ctx context.Context, c *aiplatform.JobClient, f *sweepFlags, spec *sweep.Spec, display, base string) (*aiplatformpb.HyperparameterTuningJob, error) {
	parent := "projects/" + f.project + "/locations/" + f.region
	job, err := c.CreateHyperparameterTuningJob(ctx, &aiplatformpb.CreateHyperparameterTuningJobRequest{Parent: parent,
		HyperparameterTuningJob: &aiplatformpb.HyperparameterTuningJob{
			DisplayName: display, Labels: map[string]string{"orchard-model": spec.Name, "orchard-sweep": submittraining.LabelValue(f.version)},
			StudySpec: vertexspec.StudySpec(spec), MaxTrialCount: int32(spec.Trials), ParallelTrialCount: int32(min(spec.Parallel, spec.Trials)),
			MaxFailedTrialCount: int32(spec.MaxFailed),
			TrialJobSpec: &aiplatformpb.CustomJobSpec{
				WorkerPoolSpecs: []*aiplatformpb.WorkerPoolSpec{{
					MachineSpec: &aiplatformpb.MachineSpec{MachineType: f.machine}, ReplicaCount: 1,
					Task: &aiplatformpb.WorkerPoolSpec_ContainerSpec{ContainerSpec: &aiplatformpb.ContainerSpec{
						ImageUri: f.image, Args: spec.TrialArgs(f.data, f.version),
						Env: []*aiplatformpb.EnvVar{{Name: "GOOGLE_CLOUD_PROJECT", Value: f.project}},
					}},
				}},
				ServiceAccount:      f.serviceAccount,
				BaseOutputDirectory: &aiplatformpb.GcsDestination{OutputUriPrefix: base},
				Scheduling:          &aiplatformpb.Scheduling{Timeout: durationpb.New(f.trialTimeout)},
			},
		}})
	if err != nil {
		return nil, fmt.Errorf("creating HyperparameterTuningJob %s: %w", display, err)
	}
	return job, nil
}

// followJob reads the job every poll until it has ended.
func followJob(ctx context.Context, c *aiplatform.JobClient, job *aiplatformpb.HyperparameterTuningJob, poll time.Duration, display string) (*aiplatformpb.HyperparameterTuningJob, error) {
	for !jobEnded(job.GetState()) {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("stopped following %s (the job keeps running): %w", job.GetName(), ctx.Err())
		case <-time.After(poll):
		}
		var err error
		if job, err = c.GetHyperparameterTuningJob(ctx, &aiplatformpb.GetHyperparameterTuningJobRequest{Name: job.GetName()}); err != nil {
			return nil, fmt.Errorf("reading %s: %w", display, err)
		}
	}
	return job, nil
}

// dialJobs makes the JobService client: the regional endpoint, or a given
// address (plaintext without credentials when it is a loopback one, the
// local stand-in).
func dialJobs(ctx context.Context, region, endpoint string) (*aiplatform.JobClient, error) {
	if endpoint == "" {
		endpoint = region + "-aiplatform.googleapis.com:443"
	}
	c, err := aiplatform.NewJobClient(ctx, endpointOptions(endpoint)...)
	if err != nil {
		return nil, fmt.Errorf("vertex ai client: %w", err)
	}
	return c, nil
}

func jobEnded(st aiplatformpb.JobState) bool {
	switch st {
	case aiplatformpb.JobState_JOB_STATE_SUCCEEDED, aiplatformpb.JobState_JOB_STATE_FAILED,
		aiplatformpb.JobState_JOB_STATE_CANCELLED, aiplatformpb.JobState_JOB_STATE_EXPIRED:
		return true
	}
	return false
}

// trialResults reads the job's trials as sweep results: parameters, the
// final measurement of the study's metric, and each trial's model
// directory (BASE/<trial ID>/model, where Vertex AI points AIP_MODEL_DIR).
func trialResults(spec *sweep.Spec, job *aiplatformpb.HyperparameterTuningJob, base string) []sweep.Result {
	var out []sweep.Result
	for _, t := range job.GetTrials() {
		id, _ := strconv.Atoi(t.GetId())
		r := sweep.Result{Trial: sweep.Trial{ID: id}, RunURI: sweep.TrialDir(base, t.GetId())}
		for _, p := range t.GetParameters() {
			v := p.GetValue().GetStringValue()
			if _, ok := p.GetValue().GetKind().(*structpb.Value_NumberValue); ok {
				v = strconv.FormatFloat(p.GetValue().GetNumberValue(), 'g', -1, 64)
			}
			r.Trial.Params = append(r.Trial.Params, sweep.Value{Key: p.GetParameterId(), Value: v})
		}
		found := false
		for _, m := range t.GetFinalMeasurement().GetMetrics() {
			if m.GetMetricId() == spec.Metric {
				r.Metric, found = m.GetValue(), true
			}
		}
		switch {
		case t.GetState() != aiplatformpb.Trial_SUCCEEDED:
			r.Err = fmt.Errorf("%s: %s", t.GetState(), t.GetInfeasibleReason())
		case !found:
			r.Err = fmt.Errorf("no final measurement of %s", spec.Metric)
		}
		if s, e := t.GetStartTime(), t.GetEndTime(); s != nil && e != nil {
			r.Seconds = e.AsTime().Sub(s.AsTime()).Seconds()
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b sweep.Result) int { return a.Trial.ID - b.Trial.ID })
	return out
}
