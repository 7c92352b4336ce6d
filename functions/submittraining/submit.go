// Package submittraining turns a training request, published to Pub/Sub,
// into a Vertex AI CustomJob that runs the trainer, which publishes the
// model into the registry (quality gate, promotion) when it finishes.
//
// SubmitTraining is a CloudEvent function for
// google.cloud.pubsub.topic.v1.messagePublished (registered in
// functions/submit_training.go). Delivery is at least once, so:
//
//   - A request that can never succeed (bad JSON, unknown fields, bad
//     dataset URI, model name or override) is logged and acknowledged
//     (the function returns nil): it is never retried and never loops.
//   - A redelivered message submits nothing: the job's display name is
//     derived from the message ID, the ID is a job label, and existing jobs
//     with that label are listed first. Should two deliveries race past the
//     list, both look again after creating and every job but the oldest is
//     cancelled.
//   - A transient Vertex AI error (Unavailable, DeadlineExceeded,
//     ResourceExhausted, Aborted, Internal, Unknown) returns an error, so
//     Pub/Sub redelivers with backoff (bound it with a dead-letter topic);
//     a permanent one (InvalidArgument, FailedPrecondition, NotFound,
//     PermissionDenied, ...) is logged at ERROR and acknowledged.
//
// # The trainer's command line
//
// The job runs the trainer image with the command line and environment of
// a shared/training.Job:
//
//	train -data <dataset> -name <model> [-set k=v ...] -publish <registry URI> [-allow-new-labels]
//
// -name makes model.json carry the registry name; -publish makes the
// trainer publish the model into the registry after writing it (quality
// gate, promotion).
package submittraining

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strings"
	"time"

	aiplatform "cloud.google.com/go/aiplatform/apiv1"
	"cloud.google.com/go/aiplatform/apiv1/aiplatformpb"
	"github.com/cloudevents/sdk-go/v2/event"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/orchard-mlops/orchard/shared/env"
	"github.com/orchard-mlops/orchard/shared/events"
	"github.com/orchard-mlops/orchard/shared/gcp"
	"github.com/orchard-mlops/orchard/shared/logging"
	"github.com/orchard-mlops/orchard/shared/training"
	"github.com/orchard-mlops/orchard/trainer/config"
)

// Labels set on every job.
const (
	LabelMessageID = "orchard-msg-id"
	LabelModel     = "orchard-model"
	LabelRequester = "orchard-requester"
	LabelTrigger   = "orchard-trigger"
)

// Config is the function's configuration (see ConfigFromEnv).
type Config struct {
	Project string // GOOGLE_CLOUD_PROJECT
	Region  string // VERTEX_REGION, e.g. europe-west1
	// Endpoint is the JobService address; default REGION-aiplatform.googleapis.com:443
	// (VERTEX_ENDPOINT overrides, e.g. 127.0.0.1:8089 for vertexlocal).
	Endpoint string
	// Insecure talks plaintext gRPC without credentials (the local
	// stand-in). VERTEX_INSECURE; defaults to true for a loopback
	// VERTEX_ENDPOINT.
	Insecure       bool
	TrainerImage   string // TRAINER_IMAGE (required)
	MachineType    string // TRAINER_MACHINE_TYPE, default n1-standard-4
	ServiceAccount string // TRAINER_SERVICE_ACCOUNT: the job's own identity
	OutputURI      string // TRAINING_OUTPUT_URI (required): gs://bucket/runs; each job gets <OutputURI>/<display name>
	RegistryURI    string // REGISTRY_URI (required): passed to the trainer's -publish
	AllowLocalData bool   // ALLOW_LOCAL_DATA: accept local dataset paths (local runs only)
	// ModelPublishedTopic is passed to the job as MODEL_PUBLISHED_TOPIC, so
	// the trainer's -publish step announces new versions and promotions
	// (MODEL_PUBLISHED_TOPIC: projects/P/topics/T; optional).
	ModelPublishedTopic string
	Timeout             time.Duration // TRAINING_TIMEOUT, default 2h: the job's scheduling timeout
	// OverrideLimits are the keys requests may override and their upper
	// bounds (TRAINING_OVERRIDE_LIMITS, see config.ParseLimits; default
	// config.DefaultLimits).
	OverrideLimits config.Limits
	// EvalURI is the operator's evaluation set (EVAL_URI: a gs:// or local
	// folder-per-class prefix), passed to the job so the quality gate scores
	// the candidate and production on data no request chooses.
	EvalURI string
}

// ConfigFromEnv reads the configuration from environment variables.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	e := env.New(getenv)
	c := Config{
		Project:        gcp.ProjectFrom(getenv),
		Region:         e.String("VERTEX_REGION", ""),
		Endpoint:       e.String("VERTEX_ENDPOINT", ""),
		TrainerImage:   e.String("TRAINER_IMAGE", ""),
		MachineType:    e.String("TRAINER_MACHINE_TYPE", "n1-standard-4"),
		ServiceAccount: e.String("TRAINER_SERVICE_ACCOUNT", ""),
		OutputURI:      strings.TrimRight(e.String("TRAINING_OUTPUT_URI", ""), "/"),
		RegistryURI:    e.String("REGISTRY_URI", ""),
		Timeout:        e.Duration("TRAINING_TIMEOUT", 2*time.Hour, time.Second, time.Second),
		EvalURI:        e.String("EVAL_URI", ""),
		AllowLocalData: e.Bool("ALLOW_LOCAL_DATA", false),

		ModelPublishedTopic: e.String("MODEL_PUBLISHED_TOPIC", ""),
	}
	c.Insecure = e.Bool("VERTEX_INSECURE", c.Endpoint != "" && isLoopback(c.Endpoint))
	lim, err := config.ParseLimits(e.String("TRAINING_OVERRIDE_LIMITS", ""))
	if err != nil {
		e.Failf("TRAINING_OVERRIDE_LIMITS: %v", err)
	}
	c.OverrideLimits = lim
	if err := c.Validate(); err != nil {
		e.Failf("%v", err)
	}
	return c, e.Err()
}

// Validate checks that the required settings are present.
func (c *Config) Validate() error {
	var errs []string
	need := func(v, name string) {
		if v == "" {
			errs = append(errs, name+" is not set")
		}
	}
	need(c.Project, "GOOGLE_CLOUD_PROJECT")
	need(c.Region, "VERTEX_REGION")
	need(c.TrainerImage, "TRAINER_IMAGE")
	need(c.OutputURI, "TRAINING_OUTPUT_URI")
	need(c.RegistryURI, "REGISTRY_URI")
	if c.OutputURI != "" && !strings.HasPrefix(c.OutputURI, "gs://") && !c.AllowLocalData {
		errs = append(errs, fmt.Sprintf("TRAINING_OUTPUT_URI=%q must be gs:// (Vertex AI writes there)", c.OutputURI))
	}
	if len(errs) > 0 {
		return errors.New("submittraining config: " + strings.Join(errs, "; "))
	}
	return nil
}

func (c *Config) endpoint() string {
	if c.Endpoint != "" {
		return c.Endpoint
	}
	return c.Region + "-aiplatform.googleapis.com:443"
}

func (c *Config) parent() string { return "projects/" + c.Project + "/locations/" + c.Region }

func isLoopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		host = hostport
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Submitter creates training jobs.
type Submitter struct {
	cfg  Config
	jobs *aiplatform.JobClient
	log  *slog.Logger
}

// NewSubmitter makes the Vertex AI client for cfg. Extra client options
// come last (tests).
func NewSubmitter(ctx context.Context, cfg Config, log *slog.Logger, opts ...option.ClientOption) (*Submitter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	base := []option.ClientOption{option.WithEndpoint(cfg.endpoint())}
	if cfg.Insecure {
		base = append(base, option.WithoutAuthentication(),
			option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
	}
	c, err := aiplatform.NewJobClient(context.WithoutCancel(ctx), append(base, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("submittraining: Vertex AI client for %s: %w", cfg.endpoint(), err)
	}
	return &Submitter{cfg: cfg, jobs: c, log: log}, nil
}

// Close closes the client.
func (s *Submitter) Close() error { return s.jobs.Close() }

// Outcome describes what Submit did.
type Outcome struct {
	Job         string // resource name of the job for this message
	DisplayName string
	Created     bool // false: a job for this message already existed
	State       aiplatformpb.JobState
}

// HandleEvent is the CloudEvent function: it never returns an error for a
// bad message, and returns one only when a retry can help.
func (s *Submitter) HandleEvent(ctx context.Context, e event.Event) error {
	d, err := events.DecodeMessagePublished(e.Data())
	if err != nil {
		s.log.ErrorContext(ctx, "SubmitTraining: dropping an event that is not a Pub/Sub messagePublished payload",
			"event_id", e.ID(), "event_type", e.Type(), "err", err)
		return nil
	}
	msgID := d.Message.ID()
	if msgID == "" {
		msgID = e.ID()
	}
	log := s.log.With("message_id", msgID, "subscription", d.Subscription)
	if msgID == "" {
		log.ErrorContext(ctx, "SubmitTraining: dropping a message without an ID (cannot be deduplicated)")
		return nil
	}
	req, err := ParseRequest(d.Message.Data, Policy{AllowLocalData: s.cfg.AllowLocalData, Limits: s.cfg.OverrideLimits})
	if err != nil {
		log.ErrorContext(ctx, "SubmitTraining: rejected invalid training request; acknowledged, no job submitted",
			"err", err.Error(), "data_bytes", len(d.Message.Data), "data_prefix", printablePrefix(d.Message.Data, 200))
		return nil
	}
	out, err := s.Submit(ctx, msgID, req)
	switch {
	case err == nil:
		if out.Created {
			log.InfoContext(ctx, "SubmitTraining: training job submitted", "job", out.Job, "display_name", out.DisplayName,
				"model", req.Model, "dataset", req.Dataset, "overrides", req.Overrides, "requester", req.Requester, "notes", req.Notes)
		} else {
			log.InfoContext(ctx, "SubmitTraining: duplicate delivery; a job for this message exists, nothing submitted",
				"job", out.Job, "state", out.State.String())
		}
		return nil
	case Transient(err):
		log.WarnContext(ctx, "SubmitTraining: transient Vertex AI error; the message will be redelivered", "err", err)
		return err
	default:
		log.Log(ctx, logging.LevelCritical, "SubmitTraining: Vertex AI refused the job; acknowledged, no retry",
			"err", err, "model", req.Model, "dataset", req.Dataset, "code", status.Code(err).String())
		return nil
	}
}

// Transient reports whether a Vertex AI error is worth a retry.
func Transient(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return true
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Aborted, codes.Internal, codes.Unknown, codes.Canceled:
		return true
	}
	return false
}

// JobNames returns the deterministic display name and message-ID label of
// the job for a message.
func JobNames(model, msgID string) (displayName, msgLabel string) {
	msgLabel = LabelValue(msgID)
	displayName = "orchard-train-" + model + "-" + msgLabel
	if len(displayName) > 128 {
		displayName = displayName[:128]
	}
	return displayName, msgLabel
}

// LabelValue turns s into a valid label value (lowercase letters, digits,
// '_' and '-', at most 63 characters). Anything changed or cut is made
// unique again by a hash suffix, so distinct inputs stay distinct.
func LabelValue(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r == '_' || r == '-' {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	v := b.String()
	if v == s && len(v) <= 63 {
		return v
	}
	sum := sha256.Sum256([]byte(s))
	h := hex.EncodeToString(sum[:5])
	if len(v) > 63-11 {
		v = v[:63-11]
	}
	return v + "-" + h
}

// Job is the training job for a request (see the package doc): the
// request's dataset, model and overrides, published into registryURI.
func (r *Request) Job(registryURI string) *training.Job {
	return &training.Job{Dataset: r.Dataset, Model: r.Model, Overrides: r.Overrides, Registry: registryURI,
		AllowNewLabels: r.AllowNewLabels, Requester: r.Requester, Notes: r.Notes}
}

// job is the request's job as this deployment runs it: the trainer records
// the message, requester and notes in the alias history, announces on the
// model-published topic and gates on the operator's evaluation set.
func (s *Submitter) job(msgID string, req *Request) *training.Job {
	j := req.Job(s.cfg.RegistryURI)
	j.MessageID, j.ModelPublishedTopic, j.EvalURI, j.Project = msgID, s.cfg.ModelPublishedTopic, s.cfg.EvalURI, s.cfg.Project
	return j
}

// containerEnv is a job's environment as Vertex AI takes it.
func containerEnv(j *training.Job) []*aiplatformpb.EnvVar {
	var env []*aiplatformpb.EnvVar
	for _, v := range j.Env() {
		env = append(env, &aiplatformpb.EnvVar{Name: v.Name, Value: v.Value})
	}
	return env
}

// Submit creates the job for a message unless one exists.
func (s *Submitter) Submit(ctx context.Context, msgID string, req *Request) (*Outcome, error) {
	display, msgLabel := JobNames(req.Model, msgID)
	if existing, err := s.jobsFor(ctx, msgLabel); err != nil {
		return nil, err
	} else if len(existing) > 0 {
		return &Outcome{Job: existing[0].GetName(), DisplayName: display, State: existing[0].GetState()}, nil
	}
	labels := map[string]string{LabelMessageID: msgLabel, LabelModel: req.Model, LabelTrigger: "pubsub"}
	if req.Requester != "" {
		labels[LabelRequester] = LabelValue(req.Requester)
	}
	job := s.job(msgID, req)
	spec := &aiplatformpb.CustomJobSpec{
		WorkerPoolSpecs: []*aiplatformpb.WorkerPoolSpec{{
			MachineSpec:  &aiplatformpb.MachineSpec{MachineType: s.cfg.MachineType},
			ReplicaCount: 1,
			Task: &aiplatformpb.WorkerPoolSpec_ContainerSpec{ContainerSpec: &aiplatformpb.ContainerSpec{
				ImageUri: s.cfg.TrainerImage,
				Args:     job.Args(),
				Env:      containerEnv(job),
			}},
		}},
		ServiceAccount:      s.cfg.ServiceAccount,
		BaseOutputDirectory: &aiplatformpb.GcsDestination{OutputUriPrefix: s.cfg.OutputURI + "/" + display},
		Scheduling:          &aiplatformpb.Scheduling{Timeout: durationpb.New(s.cfg.Timeout)},
	}
	created, err := s.jobs.CreateCustomJob(ctx, &aiplatformpb.CreateCustomJobRequest{
		Parent:    s.cfg.parent(),
		CustomJob: &aiplatformpb.CustomJob{DisplayName: display, Labels: labels, JobSpec: spec},
	})
	if err != nil {
		return nil, fmt.Errorf("creating CustomJob %s: %w", display, err)
	}
	out := &Outcome{Job: created.GetName(), DisplayName: display, Created: true, State: created.GetState()}

	// Two deliveries may have raced past the list: keep the oldest job.
	all, err := s.jobsFor(ctx, msgLabel)
	if err != nil {
		s.log.WarnContext(ctx, "SubmitTraining: could not re-check for duplicate jobs", "job", created.GetName(), "err", err)
		return out, nil
	}
	if len(all) > 1 && all[0].GetName() != created.GetName() {
		s.log.WarnContext(ctx, "SubmitTraining: a concurrent delivery created the same job first; cancelling ours",
			"ours", created.GetName(), "kept", all[0].GetName())
		if err := s.jobs.CancelCustomJob(ctx, &aiplatformpb.CancelCustomJobRequest{Name: created.GetName()}); err != nil {
			s.log.ErrorContext(ctx, "SubmitTraining: cancelling the duplicate job failed", "job", created.GetName(), "err", err)
		}
		return &Outcome{Job: all[0].GetName(), DisplayName: display, State: all[0].GetState()}, nil
	}
	return out, nil
}

// jobsFor lists the jobs carrying a message label, oldest first. Every job
// counts, cancelled and failed ones too: a redelivery must not restart a
// job an operator cancelled or that failed (resubmit with a new message).
func (s *Submitter) jobsFor(ctx context.Context, msgLabel string) ([]*aiplatformpb.CustomJob, error) {
	it := s.jobs.ListCustomJobs(ctx, &aiplatformpb.ListCustomJobsRequest{
		Parent: s.cfg.parent(),
		Filter: fmt.Sprintf(`labels.%s="%s"`, LabelMessageID, msgLabel),
	})
	var out []*aiplatformpb.CustomJob
	for {
		j, err := it.Next()
		if errors.Is(err, iterator.Done) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("listing jobs for message label %s: %w", msgLabel, err)
		}
		out = append(out, j)
	}
	sort.SliceStable(out, func(i, k int) bool {
		a, b := out[i].GetCreateTime().AsTime(), out[k].GetCreateTime().AsTime()
		if !a.Equal(b) {
			return a.Before(b)
		}
		return out[i].GetName() < out[k].GetName()
	})
	return out, nil
}

func printablePrefix(b []byte, n int) string {
	if len(b) > n {
		b = b[:n]
	}
	return strings.ToValidUTF8(string(b), "?")
}
