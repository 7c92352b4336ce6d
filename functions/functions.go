// Package functions registers Orchard's three functions with the Functions
// Framework for Go:
//
//   - Predict, an HTTP function: classify images sent in the request or
//     named by gs:// URIs, and describe the model (GET);
//   - PredictOnUpload, a CloudEvent function for
//     google.cloud.storage.object.v1.finalized: classify each uploaded image
//     and write the result to RESULTS_BUCKET;
//   - SubmitTraining, a CloudEvent function for
//     google.cloud.pubsub.topic.v1.messagePublished: turn a training request
//     into a Vertex AI CustomJob (see package submittraining for the message
//     format, the environment it reads, GOOGLE_CLOUD_PROJECT, VERTEX_REGION,
//     VERTEX_ENDPOINT, TRAINER_IMAGE, TRAINING_OUTPUT_URI, REGISTRY_URI, ...,
//     and its retry behaviour).
//
// The logic lives in packages predict and submittraining; this package sets
// up, once, the functions the process serves (FUNCTION_TARGET, or all three
// when it is empty) from the environment, counts what is in flight, and
// drains and closes them all in Shutdown. Deploy with FUNCTION_TARGET (or
// --entry-point) Predict, PredictOnUpload or SubmitTraining; run all three
// locally with ./functions/cmd/functions.
package functions

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	ff "github.com/GoogleCloudPlatform/functions-framework-go/functions"
	cloudevents "github.com/cloudevents/sdk-go/v2"

	"github.com/orchard-mlops/orchard/functions/predict"
	"github.com/orchard-mlops/orchard/functions/submittraining"
	"github.com/orchard-mlops/orchard/functions/telemetry"
	"github.com/orchard-mlops/orchard/shared/errlist"
	"github.com/orchard-mlops/orchard/shared/logging"
)

// The function names, as registered and as FUNCTION_TARGET names them.
const (
	PredictName         = "Predict"
	PredictOnUploadName = "PredictOnUpload"
	SubmitTrainingName  = "SubmitTraining"
)

func init() {
	ff.HTTP(PredictName, Predict)
	ff.CloudEvent(PredictOnUploadName, PredictOnUpload)
	ff.CloudEvent(SubmitTrainingName, SubmitTraining)
}

// set is the functions of this process, as setup made them. Each function
// has its value or the configuration error that stops it.
type set struct {
	log     *slog.Logger
	metrics *telemetry.Provider

	app        *predict.App
	http       http.Handler
	predictErr error

	upload    *predict.Uploader
	uploadErr error

	submit    *submittraining.Submitter
	submitErr error
}

var (
	setupOnce sync.Once
	current   atomic.Pointer[set] // set by setupOnce, read by Shutdown
	active    atomic.Int64        // requests and events in flight
)

// Configure sets the functions up now instead of on their first call. A
// main that handles SIGTERM itself calls it before serving, and calls
// Shutdown when it stops. Without it (the Functions Framework's own main),
// the first call sets them up and, on Cloud Run (K_SERVICE set), they
// drain, flush metrics and exit on SIGTERM by themselves, where the
// framework's main would die with metrics unflushed.
func Configure() { configure(false) }

func configure(handleSIGTERM bool) *set {
	setupOnce.Do(func() {
		s := setup(os.Getenv)
		current.Store(s)
		if handleSIGTERM {
			go onSIGTERM(s.log)
		}
	})
	return current.Load()
}

// served is the process's functions, set up on first use.
func served() *set { return configure(os.Getenv("K_SERVICE") != "") }

// setup reads the environment of the functions FUNCTION_TARGET names (all
// three when it is empty). It does no network I/O.
func setup(getenv func(string) string) *set {
	s := &set{log: logging.Setup()}
	target := getenv("FUNCTION_TARGET")
	serves := func(name string) bool { return target == "" || target == name }
	notServed := fmt.Errorf("not served by this process (FUNCTION_TARGET=%s)", target)
	s.predictErr, s.uploadErr, s.submitErr = notServed, notServed, notServed
	if serves(PredictName) || serves(PredictOnUploadName) {
		s.setupPredict(getenv, serves(PredictOnUploadName))
	}
	if serves(SubmitTrainingName) {
		s.setupSubmit(getenv)
	}
	return s
}

func (s *set) setupPredict(getenv func(string) string, upload bool) {
	cfg, err := predict.ConfigFromEnv(getenv)
	if err != nil {
		s.log.Log(context.Background(), logging.LevelCritical, "functions: refusing to serve: "+err.Error())
		s.predictErr, s.uploadErr = err, err
		return
	}
	var metrics *telemetry.Metrics
	if s.metrics, err = telemetry.FromEnv(context.Background(), getenv); err != nil {
		s.log.Error("functions: metrics disabled", "error", err.Error())
		s.metrics = nil
	} else if s.metrics != nil {
		if metrics, err = telemetry.New(s.metrics); err != nil {
			s.log.Error("functions: metrics disabled", "error", err.Error())
		}
	}
	s.app = predict.NewApp(cfg, predict.AppOptions{Metrics: metrics, Log: s.log})
	s.http, s.predictErr = logging.HTTPMiddleware(s.app.HTTP), nil
	if upload {
		s.upload, s.uploadErr = s.app.Uploader()
	}
	s.log.Info("functions: configured", "model_uri", cfg.ModelURI, "serves_registry", cfg.ServesRegistry(), "registry_uri", cfg.RegistryURI, "model_name", cfg.ModelName, "model_alias", cfg.ModelAlias, "results_bucket", cfg.ResultsBucket,
		"upload_prefixes", cfg.UploadPrefixes, "topic", cfg.Topic, "metrics_exporter", exporterName(s.metrics))
}

func (s *set) setupSubmit(getenv func(string) string) {
	cfg, err := submittraining.ConfigFromEnv(getenv)
	if err == nil {
		s.submit, err = submittraining.NewSubmitter(context.Background(), cfg, s.log)
	}
	if s.submitErr = err; err != nil {
		s.log.Log(context.Background(), logging.LevelCritical, "SubmitTraining is misconfigured; events are retried until fixed", "err", err)
	}
}

func exporterName(p *telemetry.Provider) string {
	if p == nil {
		return "none"
	}
	return p.Exporter
}

// Predict is the HTTP function (see predict.Server for the API).
func Predict(w http.ResponseWriter, r *http.Request) {
	active.Add(1)
	defer active.Add(-1)
	s := served()
	if s.predictErr != nil {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte(`{"error":"the function is misconfigured; see its logs","kind":"config"}` + "\n"))
		return
	}
	s.http.ServeHTTP(w, r)
}

// PredictOnUpload is the CloudEvent function for finalized GCS objects. It
// returns an error only for failures worth redelivering the event for.
func PredictOnUpload(ctx context.Context, ev cloudevents.Event) error {
	active.Add(1)
	defer active.Add(-1)
	s := served()
	if s.uploadErr != nil {
		slog.Log(ctx, logging.LevelCritical, "PredictOnUpload: refusing to run: "+s.uploadErr.Error(), "event_id", ev.ID())
		return s.uploadErr
	}
	return s.upload.HandleCloudEvent(ctx, ev)
}

// SubmitTraining is the CloudEvent function for training requests. A
// configuration error is returned on every event, so messages are retained
// (not dropped) until the deployment is fixed.
func SubmitTraining(ctx context.Context, ev cloudevents.Event) error {
	active.Add(1)
	defer active.Add(-1)
	s := served()
	if s.submitErr != nil {
		return s.submitErr
	}
	return s.submit.HandleEvent(ctx, ev)
}

// Shutdown waits for in-flight requests and events of all three functions
// (until ctx is done), then flushes metrics and releases the model and
// every client.
func Shutdown(ctx context.Context) error {
	for active.Load() > 0 {
		select {
		case <-ctx.Done():
			slog.Warn("functions: shutting down with requests still running", "active", active.Load())
			return current.Load().close(ctx)
		case <-time.After(20 * time.Millisecond):
		}
	}
	return current.Load().close(ctx)
}

// close releases what setup made; nil (never set up) has nothing.
func (s *set) close(ctx context.Context) error {
	if s == nil {
		return nil
	}
	var errs []error
	if s.metrics != nil {
		errs = append(errs, s.metrics.Shutdown(ctx))
	}
	if s.app != nil {
		errs = append(errs, s.app.Close())
	}
	if s.submit != nil {
		errs = append(errs, s.submit.Close())
	}
	return errlist.Join(errs...)
}

func onSIGTERM(log *slog.Logger) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGTERM)
	<-ch
	// Cloud Run allows 10 s between SIGTERM and SIGKILL.
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	if err := Shutdown(ctx); err != nil {
		log.Error("functions: shutdown", "error", err.Error())
	}
	os.Exit(0)
}
