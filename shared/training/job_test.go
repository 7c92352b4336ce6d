package training

import (
	"reflect"
	"testing"
)

// TestJobRoundTrip: what SubmitTraining builds is what the trainer reads
// back, command line and environment, for full and minimal jobs.
func TestJobRoundTrip(t *testing.T) {
	for _, j := range []Job{
		{Dataset: "gs://b/d", Model: "fruits", Overrides: []string{"train.epochs=1", "model.widths=[8, 16]"}, Registry: "gs://reg/r",
			AllowNewLabels: true, MessageID: "1001", Requester: "alice@example.com", Notes: "new photos",
			ModelPublishedTopic: "projects/p/topics/model-published", EvalURI: "gs://eval/x", Project: "p"},
		{Dataset: "/data", Model: "m"},
	} {
		env := map[string]string{}
		for _, e := range j.Env() {
			if _, dup := env[e.Name]; dup {
				t.Errorf("%s set twice", e.Name)
			}
			env[e.Name] = e.Value
		}
		got, err := Parse(j.Args(), func(k string) string { return env[k] })
		if err != nil {
			t.Fatalf("Parse(%q): %v", j.Args(), err)
		}
		if !reflect.DeepEqual(*got, j) {
			t.Errorf("round trip of %q %v:\n got %+v\nwant %+v", j.Args(), env, *got, j)
		}
	}
}

func TestJobArgs(t *testing.T) {
	j := Job{Dataset: "gs://b/d", Model: "fruits", Overrides: []string{"train.epochs=1"}, Registry: "gs://reg/r", AllowNewLabels: true}
	want := []string{"train", "-data", "gs://b/d", "-name", "fruits", "-set", "train.epochs=1", "-publish", "gs://reg/r", "-allow-new-labels"}
	if got := j.Args(); !reflect.DeepEqual(got, want) {
		t.Errorf("Args = %q, want %q", got, want)
	}
	for _, bad := range [][]string{nil, {"eval"}, {"train", "-out", "x"}, {"train", "extra"}} {
		if _, err := Parse(bad, func(string) string { return "" }); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}

func TestOutputEnv(t *testing.T) {
	want := []string{"AIP_MODEL_DIR=gs://o/run/model/", "AIP_CHECKPOINT_DIR=gs://o/run/checkpoints/", "AIP_TENSORBOARD_LOG_DIR=gs://o/run/logs/"}
	if got := OutputEnv("gs://o/run/"); !reflect.DeepEqual(got, want) {
		t.Errorf("OutputEnv = %q, want %q", got, want)
	}
}

func TestPublishReason(t *testing.T) {
	for _, tc := range []struct {
		job   Job
		jobID string
		want  string
	}{
		{Job{}, "", "trainer -publish"},
		{Job{MessageID: "1", Requester: "alice", Notes: "new photos"}, "7", "training job 7, message 1, requested by alice: new photos"},
		{Job{Notes: "retry"}, "", "trainer -publish: retry"},
	} {
		if got := tc.job.PublishReason(tc.jobID); got != tc.want {
			t.Errorf("PublishReason(%+v, %q) = %q, want %q", tc.job, tc.jobID, got, tc.want)
		}
	}
}
