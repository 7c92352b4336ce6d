package vertexlocal_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	aiplatform "cloud.google.com/go/aiplatform/apiv1"
	"cloud.google.com/go/aiplatform/apiv1/aiplatformpb"
	"google.golang.org/api/iterator"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/orchard-mlops/orchard/infra/vertexlocal"
	"github.com/orchard-mlops/orchard/trainer/sweep"
	"github.com/orchard-mlops/orchard/trainer/sweep/vertexspec"
)

// fakeTrial reports a metric that depends on the trial's --key=value
// arguments, in the cloudml-hypertune format, and records its model dir.
const fakeTrial = `
acc=0.5
case "$*" in
  *--train.learning_rate=0.01*--train.epochs=2*) acc=0.9 ;;
  *--train.learning_rate=0.01*) acc=0.7 ;;
  *--train.epochs=3*) exit 4 ;;
esac
echo "model_dir=$AIP_MODEL_DIR trial=$CLOUD_ML_TRIAL_ID args=$*"
case "$*" in *slow*) sleep 30 ;; esac
printf '{"global_step": "12", "timestamp": 1.5, "trial": "%s", "validation_accuracy": "%s"}\n' "$CLOUD_ML_TRIAL_ID" 0.1 > "$CLOUD_ML_HP_METRIC_FILE"
printf '{"global_step": "24", "timestamp": 2.5, "trial": "%s", "validation_accuracy": "%s"}\n' "$CLOUD_ML_TRIAL_ID" "$acc" >> "$CLOUD_ML_HP_METRIC_FILE"
`

func tuningJob(t *testing.T, params string, parallel, maxFailed int32, args ...string) *aiplatformpb.HyperparameterTuningJob {
	t.Helper()
	spec, err := sweep.Parse([]byte("name: shapes\nparams:\n" + params))
	if err != nil {
		t.Fatal(err)
	}
	return &aiplatformpb.HyperparameterTuningJob{DisplayName: "sweep", Labels: map[string]string{"orchard-model": "shapes"},
		StudySpec: vertexspec.StudySpec(spec), MaxTrialCount: int32(spec.Trials), ParallelTrialCount: parallel,
		MaxFailedTrialCount: maxFailed, TrialJobSpec: jobSpec("fake/trainer", append([]string{"train"}, args...), "gs://b/sweeps/s1")}
}

const grid2x2 = `  - {key: train.learning_rate, values: [0.01, 0.001]}
  - {key: train.epochs, values: [1, 2]}
`

func waitTuning(t *testing.T, c *aiplatform.JobClient, name string) *aiplatformpb.HyperparameterTuningJob {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		j, err := c.GetHyperparameterTuningJob(t.Context(), &aiplatformpb.GetHyperparameterTuningJobRequest{Name: name})
		if err != nil {
			t.Fatal(err)
		}
		switch j.GetState() {
		case aiplatformpb.JobState_JOB_STATE_SUCCEEDED, aiplatformpb.JobState_JOB_STATE_FAILED, aiplatformpb.JobState_JOB_STATE_CANCELLED:
			return j
		}
	}
	t.Fatalf("tuning job %s did not end", name)
	return nil
}

func TestTuningGrid(t *testing.T) {
	srv, c := startServer(t, vertexlocal.Config{MaxConcurrent: 2, Images: map[string][]string{"fake/trainer": sh(fakeTrial)}})
	created, err := c.CreateHyperparameterTuningJob(t.Context(), &aiplatformpb.CreateHyperparameterTuningJobRequest{
		Parent: parent, HyperparameterTuningJob: tuningJob(t, grid2x2, 2, 0)})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(created.GetName(), parent+"/hyperparameterTuningJobs/") || created.GetState() != aiplatformpb.JobState_JOB_STATE_PENDING {
		t.Fatalf("created %s in %s", created.GetName(), created.GetState())
	}
	j := waitTuning(t, c, created.GetName())
	if j.GetState() != aiplatformpb.JobState_JOB_STATE_SUCCEEDED || len(j.GetTrials()) != 4 {
		t.Fatalf("state %s, %d trials, error %v", j.GetState(), len(j.GetTrials()), j.GetError())
	}
	want := map[string]float64{"0.01 1": 0.7, "0.01 2": 0.9, "0.001 1": 0.5, "0.001 2": 0.5}
	for _, tr := range j.GetTrials() {
		var key []string
		for _, p := range tr.GetParameters() {
			key = append(key, fmt.Sprint(p.GetValue().GetNumberValue()))
		}
		k := strings.Join(key, " ")
		m := tr.GetFinalMeasurement().GetMetrics()
		if tr.GetState() != aiplatformpb.Trial_SUCCEEDED || len(m) != 1 || m[0].GetMetricId() != "validation_accuracy" ||
			m[0].GetValue() != want[k] || tr.GetFinalMeasurement().GetStepCount() != 24 {
			t.Errorf("trial %s %q: %s %v", tr.GetId(), k, tr.GetState(), tr.GetFinalMeasurement())
		}
		delete(want, k)
		job, err := srv.Wait(t.Context(), tr.GetCustomJob())
		if err != nil {
			t.Fatal(err)
		}
		if got := job.GetJobSpec().GetBaseOutputDirectory().GetOutputUriPrefix(); got != "gs://b/sweeps/s1/"+tr.GetId() {
			t.Errorf("trial %s output %s", tr.GetId(), got)
		}
	}
	if len(want) != 0 {
		t.Errorf("grid points never tried: %v", want)
	}
	it := c.ListHyperparameterTuningJobs(t.Context(), &aiplatformpb.ListHyperparameterTuningJobsRequest{Parent: parent,
		Filter: `labels.orchard-model="shapes" AND state="JOB_STATE_SUCCEEDED"`})
	n := 0
	for {
		_, err := it.Next()
		if errors.Is(err, iterator.Done) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 1 {
		t.Errorf("list found %d jobs", n)
	}
}

func TestTuningFailuresAndCancel(t *testing.T) {
	_, c := startServer(t, vertexlocal.Config{MaxConcurrent: 2, KillGrace: 200 * time.Millisecond,
		Images: map[string][]string{"fake/trainer": sh(fakeTrial)}})
	create := func(j *aiplatformpb.HyperparameterTuningJob) string {
		t.Helper()
		got, err := c.CreateHyperparameterTuningJob(t.Context(), &aiplatformpb.CreateHyperparameterTuningJobRequest{Parent: parent, HyperparameterTuningJob: j})
		if err != nil {
			t.Fatal(err)
		}
		return got.GetName()
	}
	// Every trial with epochs=3 exits 4; one failure is allowed to fail the job.
	j := waitTuning(t, c, create(tuningJob(t, "  - {key: train.epochs, values: [3, 3]}\n", 1, 1)))
	if j.GetState() != aiplatformpb.JobState_JOB_STATE_FAILED || len(j.GetTrials()) != 1 ||
		j.GetTrials()[0].GetState() != aiplatformpb.Trial_INFEASIBLE || !strings.Contains(j.GetTrials()[0].GetInfeasibleReason(), "non-zero status of 4") {
		t.Errorf("failing sweep: %s, trials %v", j.GetState(), j.GetTrials())
	}
	// Cancelling stops the running trials' jobs.
	name := create(tuningJob(t, grid2x2, 2, 0, "slow"))
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		g, _ := c.GetHyperparameterTuningJob(t.Context(), &aiplatformpb.GetHyperparameterTuningJobRequest{Name: name})
		if len(g.GetTrials()) == 2 || time.Now().After(deadline) {
			break
		}
	}
	if err := c.CancelHyperparameterTuningJob(t.Context(), &aiplatformpb.CancelHyperparameterTuningJobRequest{Name: name}); err != nil {
		t.Fatal(err)
	}
	j = waitTuning(t, c, name)
	if j.GetState() != aiplatformpb.JobState_JOB_STATE_CANCELLED || len(j.GetTrials()) != 2 {
		t.Errorf("cancelled sweep: %s with %d trials", j.GetState(), len(j.GetTrials()))
	}
	if err := c.CancelHyperparameterTuningJob(t.Context(), &aiplatformpb.CancelHyperparameterTuningJobRequest{Name: name}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("second cancel: %v", err)
	}
	// Validation: a double range cannot be gridded, unknown config keys fail.
	bad := tuningJob(t, grid2x2, 2, 0)
	bad.StudySpec.Parameters[0].ParameterId = "train.learning_rat"
	if _, err := c.CreateHyperparameterTuningJob(t.Context(), &aiplatformpb.CreateHyperparameterTuningJobRequest{Parent: parent, HyperparameterTuningJob: bad}); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "learning_rat") {
		t.Errorf("unknown key: %v", err)
	}
}
