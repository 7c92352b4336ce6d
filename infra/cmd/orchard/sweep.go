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
	fs := flags("sweep", stderr)
	specFile := fs.String("spec", "", "sweep spec (YAML; see trainer/README.md)")
	data := fs.String("data", "", "dataset URI (gs://bucket/prefix)")
	image := fs.String("image", os.Getenv("TRAINER_IMAGE"), "trainer container image (default $TRAINER_IMAGE)")
	output := fs.String("output", os.Getenv("TRAINING_OUTPUT_URI"), "runs prefix (gs://bucket/runs; default $TRAINING_OUTPUT_URI): the job writes OUTPUT/<job name>/<trial>/model")
	project := fs.String("project", defaultProject(), "Google Cloud project ($GOOGLE_CLOUD_PROJECT when set)")
	region := fs.String("region", os.Getenv("VERTEX_REGION"), "Vertex AI region (default $VERTEX_REGION)")
	endpoint := fs.String("endpoint", os.Getenv("VERTEX_ENDPOINT"), "JobService address (default REGION-aiplatform.googleapis.com:443; 127.0.0.1:PORT for the local stand-in)")
	machine := fs.String("machine-type", firstNonEmpty(os.Getenv("TRAINER_MACHINE_TYPE"), "n1-standard-4"), "trial machine type")
	serviceAccount := fs.String("service-account", os.Getenv("TRAINER_SERVICE_ACCOUNT"), "the trials' service account (default $TRAINER_SERVICE_ACCOUNT)")
	version := fs.String("version", "", "sweep version; trial N's model is VERSION-tN (default sweep-<UTC time>)")
	trialTimeout := fs.Duration("trial-timeout", 2*time.Hour, "scheduling timeout of each trial")
	wait := fs.Bool("wait", true, "follow the job to its end, then compare the trials (and publish)")
	poll := fs.Duration("poll", 15*time.Second, "with -wait: how often to read the job")
	publish := fs.String("publish", "", "registry URI: publish the best trial through the quality gate")
	margin := fs.Float64("margin", 0, "with -publish: accuracy margin of the quality gate")
	allowNew := fs.Bool("allow-new-labels", false, "with -publish: accept a different label set")
	by := fs.String("by", currentUser(), "who (recorded with the gate decision)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected arguments %q", fs.Args())}
	}
	var missing []string
	for name, v := range map[string]string{"-spec": *specFile, "-data": *data, "-image": *image, "-output": *output, "-project": *project, "-region": *region} {
		if v == "" {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return usageError{fmt.Errorf("required: %s", strings.Join(slices.Sorted(slices.Values(missing)), ", "))}
	}
	spec, err := sweep.Load(*specFile)
	if err != nil {
		return usageError{err}
	}
	if *version == "" {
		*version = "sweep-" + time.Now().UTC().Format("20060102-150405")
	}
	display := spec.Name + "-" + *version
	base := strings.TrimRight(*output, "/") + "/" + display
	c, err := dialJobs(ctx, *region, *endpoint)
	if err != nil {
		return err
	}
	defer c.Close()
	parent := "projects/" + *project + "/locations/" + *region
	job, err := c.CreateHyperparameterTuningJob(ctx, &aiplatformpb.CreateHyperparameterTuningJobRequest{Parent: parent,
		HyperparameterTuningJob: &aiplatformpb.HyperparameterTuningJob{
			DisplayName: display, Labels: map[string]string{"orchard-model": spec.Name, "orchard-sweep": submittraining.LabelValue(*version)},
			StudySpec: vertexspec.StudySpec(spec), MaxTrialCount: int32(spec.Trials), ParallelTrialCount: int32(min(spec.Parallel, spec.Trials)),
			MaxFailedTrialCount: int32(spec.MaxFailed),
			TrialJobSpec: &aiplatformpb.CustomJobSpec{
				WorkerPoolSpecs: []*aiplatformpb.WorkerPoolSpec{{
					MachineSpec: &aiplatformpb.MachineSpec{MachineType: *machine}, ReplicaCount: 1,
					Task: &aiplatformpb.WorkerPoolSpec_ContainerSpec{ContainerSpec: &aiplatformpb.ContainerSpec{
						ImageUri: *image, Args: spec.TrialArgs(*data, *version),
						Env: []*aiplatformpb.EnvVar{{Name: "GOOGLE_CLOUD_PROJECT", Value: *project}},
					}},
				}},
				ServiceAccount:      *serviceAccount,
				BaseOutputDirectory: &aiplatformpb.GcsDestination{OutputUriPrefix: base},
				Scheduling:          &aiplatformpb.Scheduling{Timeout: durationpb.New(*trialTimeout)},
			},
		}})
	if err != nil {
		return fmt.Errorf("creating HyperparameterTuningJob %s: %w", display, err)
	}
	fmt.Fprintf(stdout, "created %s (%s): %s search, %d trials, %d at a time, %s %s; trials write %s/<trial>/model\n",
		job.GetName(), display, spec.Algorithm, spec.Trials, spec.Parallel, spec.Goal, spec.Metric, base)
	if !*wait {
		return nil
	}
	for !jobEnded(job.GetState()) {
		select {
		case <-ctx.Done():
			return fmt.Errorf("stopped following %s (the job keeps running): %w", job.GetName(), ctx.Err())
		case <-time.After(*poll):
		}
		if job, err = c.GetHyperparameterTuningJob(ctx, &aiplatformpb.GetHyperparameterTuningJobRequest{Name: job.GetName()}); err != nil {
			return fmt.Errorf("reading %s: %w", display, err)
		}
	}
	results := trialResults(spec, job, base)
	sweep.PrintResults(stdout, spec, results)
	if job.GetState() != aiplatformpb.JobState_JOB_STATE_SUCCEEDED {
		return fmt.Errorf("%s ended %s: %s", job.GetName(), job.GetState(), job.GetError().GetMessage())
	}
	fo := sweep.FinishOptions{Registry: *publish, CompareOut: base + "/compare", Margin: *margin, AllowNewLabels: *allowNew,
		By: *by, Reason: "orchard sweep " + job.GetName()}
	sum, err := sweep.Finish(ctx, spec, results, fo)
	if err != nil {
		return err
	}
	sweep.PrintSummary(stdout, spec, sum, fo.CompareOut)
	return nil
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
