// Package training is the contract between SubmitTraining, which asks
// Vertex AI for a training job, and the trainer that runs in it: the
// trainer's command line and environment (Job), built by SubmitTraining,
// parsed by the trainer, and the variables Vertex AI (or the local
// stand-in, infra/vertexlocal) gives the container. Keeping both sides on
// one type keeps them in step without a convention to remember.
package training

import (
	"flag"
	"fmt"
	"strings"
)

// Environment variables Vertex AI sets in a CustomJob's container.
const (
	EnvModelDir      = "AIP_MODEL_DIR"           // baseOutputDirectory/model/
	EnvCheckpointDir = "AIP_CHECKPOINT_DIR"      // baseOutputDirectory/checkpoints/
	EnvTensorBoard   = "AIP_TENSORBOARD_LOG_DIR" // baseOutputDirectory/logs/
	EnvJobID         = "CLOUD_ML_JOB_ID"         // the job's numeric ID
)

// OutputEnv is the AIP_* part of a container's environment for a job whose
// baseOutputDirectory is base, as Vertex AI derives it.
func OutputEnv(base string) []string {
	base = strings.TrimRight(base, "/")
	return []string{EnvModelDir + "=" + base + "/model/", EnvCheckpointDir + "=" + base + "/checkpoints/",
		EnvTensorBoard + "=" + base + "/logs/"}
}

// Environment variables of a Job.
const (
	EnvMessageID = "ORCHARD_MESSAGE_ID" // the training request's Pub/Sub message
	EnvRequester = "ORCHARD_REQUESTER"
	EnvNotes     = "ORCHARD_NOTES"
	EnvTopic     = "MODEL_PUBLISHED_TOPIC" // where -publish announces new versions
	EnvEvalURI   = "EVAL_URI"              // the operator's evaluation set for the quality gate
	EnvProject   = "GOOGLE_CLOUD_PROJECT"
)

// Command is the trainer subcommand a job runs.
const Command = "train"

// Job is one training run as the trainer is asked for it:
//
//	train -data <dataset> -name <model> [-set k=v ...] [-publish <registry>] [-allow-new-labels]
//
// plus the environment in Env.
type Job struct {
	Dataset string // -data: the folder-per-class dataset
	// Model is -name: the model's name in model.json and, with -publish,
	// in the registry.
	Model          string
	Overrides      []string // -set key=value, in order
	Registry       string   // -publish: publish (and promote through the gate) there; "" = do not publish
	AllowNewLabels bool     // -allow-new-labels: the gate may promote a new label set

	// The environment part. Requester, message and notes are recorded
	// with the alias move.
	MessageID           string
	Requester           string
	Notes               string
	ModelPublishedTopic string
	EvalURI             string
	Project             string
}

// Args is the container's command line.
func (j *Job) Args() []string {
	args := []string{Command, "-data", j.Dataset, "-name", j.Model}
	for _, o := range j.Overrides {
		args = append(args, "-set", o)
	}
	if j.Registry != "" {
		args = append(args, "-publish", j.Registry)
	}
	if j.AllowNewLabels {
		args = append(args, "-allow-new-labels")
	}
	return args
}

// EnvVar is one environment variable.
type EnvVar struct{ Name, Value string }

// Env is the container's environment besides what Vertex AI sets. The
// message ID and requester are always present; the rest when set.
func (j *Job) Env() []EnvVar {
	env := []EnvVar{{EnvMessageID, j.MessageID}, {EnvRequester, j.Requester}}
	for _, v := range []EnvVar{{EnvNotes, j.Notes}, {EnvTopic, j.ModelPublishedTopic}, {EnvEvalURI, j.EvalURI}, {EnvProject, j.Project}} {
		if v.Value != "" {
			env = append(env, v)
		}
	}
	return env
}

// Flags registers the job's flags on fs (the trainer adds its own); fs.Parse
// then fills j.
func (j *Job) Flags(fs *flag.FlagSet) {
	fs.StringVar(&j.Dataset, "data", "", "dataset root: local dir, file:///dir or gs://bucket/prefix (default: data.uri)")
	fs.StringVar(&j.Model, "name", "", "model name (same as -set name=N; with -publish, the registry model name)")
	fs.Var((*setFlag)(&j.Overrides), "set", "override a config key, e.g. -set train.epochs=20 (repeatable)")
	fs.StringVar(&j.Registry, "publish", "", "after a verified export, publish the model directory to this registry (gs://... or dir) and promote it if it passes the quality gate")
	fs.BoolVar(&j.AllowNewLabels, "allow-new-labels", false, "with -publish: let the gate promote a model whose labels differ from production's")
}

// ReadEnv fills the environment part of j from getenv (the project is the
// job's GOOGLE_CLOUD_PROJECT; resolve fallbacks with shared/gcp).
func (j *Job) ReadEnv(getenv func(string) string) {
	j.MessageID, j.Requester, j.Notes = getenv(EnvMessageID), getenv(EnvRequester), getenv(EnvNotes)
	j.ModelPublishedTopic, j.EvalURI, j.Project = getenv(EnvTopic), getenv(EnvEvalURI), getenv(EnvProject)
}

// Parse reads a job from its command line (Args) and environment (Env),
// rejecting flags a job does not have.
func Parse(args []string, getenv func(string) string) (*Job, error) {
	if len(args) == 0 || args[0] != Command {
		return nil, fmt.Errorf("training job: want %q first, got %q", Command, args)
	}
	var j Job
	fs := flag.NewFlagSet(Command, flag.ContinueOnError)
	fs.SetOutput(discard{})
	j.Flags(fs)
	if err := fs.Parse(args[1:]); err != nil {
		return nil, fmt.Errorf("training job: %w", err)
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("training job: unexpected arguments %q", fs.Args())
	}
	j.ReadEnv(getenv)
	return &j, nil
}

// PublishReason is the reason recorded with the alias move when the job
// publishes: the Vertex AI job (jobID), the request's message, its
// requester and notes, so the history says who asked for what and why.
func (j *Job) PublishReason(jobID string) string {
	var parts []string
	for _, p := range [][2]string{{"job", jobID}, {"message", j.MessageID}, {"requested by", j.Requester}} {
		if p[1] != "" {
			parts = append(parts, p[0]+" "+p[1])
		}
	}
	reason := "trainer -publish"
	if len(parts) > 0 {
		reason = "training " + strings.Join(parts, ", ")
	}
	if j.Notes != "" {
		reason += ": " + j.Notes
	}
	return reason
}

type setFlag []string

func (s *setFlag) String() string     { return strings.Join(*s, ",") }
func (s *setFlag) Set(v string) error { *s = append(*s, v); return nil }

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
