// Package functions registers Orchard's prediction functions with the
// Functions Framework for Go:
//
//   - Predict, an HTTP function: classify images sent in the request or
//     named by gs:// URIs, and describe the model (GET);
//   - PredictOnUpload, a CloudEvent function for
//     google.cloud.storage.object.v1.finalized: classify each uploaded image
//     and write the result to RESULTS_BUCKET.
//
// The logic lives in package predict; this package only reads the
// environment (see predict.Config) once, on first use, and adapts. Deploy with
// --entry-point Predict or PredictOnUpload; run both locally with
// ./functions/cmd/functions.
package functions

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/GoogleCloudPlatform/functions-framework-go/functions"
	cloudevents "github.com/cloudevents/sdk-go/v2"

	"github.com/orchard-mlops/orchard/functions/predict"
	"github.com/orchard-mlops/orchard/functions/telemetry"
	"github.com/orchard-mlops/orchard/shared/logging"
)

func init() {
	current = sync.OnceValues(setup)
	functions.HTTP("Predict", Predict)
	functions.CloudEvent("PredictOnUpload", PredictOnUpload)
}

// HandleSIGTERM makes the package drain in-flight work, flush metrics and
// exit on SIGTERM. It is on when running on Cloud Run (K_SERVICE set),
// where the Functions Framework's own main would otherwise die with
// unflushed metrics; a main that handles signals itself (cmd/functions)
// turns it off before the first request and calls Shutdown.
var HandleSIGTERM = os.Getenv("K_SERVICE") != ""

type env struct {
	app     *predict.App
	metrics *telemetry.Provider
	http    http.Handler
}

var (
	current    func() (*env, error) // setup, once
	configured atomic.Pointer[env]  // set when setup succeeded
	active     atomic.Int64         // requests and events in flight
)

// setup reads the environment once.
func setup() (*env, error) {
	log := logging.Setup()
	cfg, err := predict.ConfigFromEnv(os.Getenv)
	if err != nil {
		log.Log(context.Background(), logging.LevelCritical, "functions: refusing to serve: "+err.Error())
		return nil, err
	}
	mp, err := telemetry.FromEnv(context.Background(), os.Getenv)
	if err != nil {
		log.Error("functions: metrics disabled", "error", err.Error())
		mp = nil
	}
	var metrics *telemetry.Metrics
	if mp != nil {
		if metrics, err = telemetry.New(mp); err != nil {
			log.Error("functions: metrics disabled", "error", err.Error())
		}
	}
	app := predict.NewApp(cfg, predict.AppOptions{Metrics: metrics, Log: log})
	e := &env{app: app, metrics: mp, http: logging.HTTPMiddleware(app.HTTP)}
	configured.Store(e)
	if HandleSIGTERM {
		go onSIGTERM(log)
	}
	log.Info("functions: configured", "model_uri", cfg.ModelURI, "serves_registry", cfg.ServesRegistry(), "registry_uri", cfg.RegistryURI, "model_name", cfg.ModelName, "model_alias", cfg.ModelAlias, "results_bucket", cfg.ResultsBucket,
		"upload_prefixes", cfg.UploadPrefixes, "topic", cfg.Topic, "metrics_exporter", exporterName(mp))
	return e, nil
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
	e, err := current()
	if err != nil {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte(`{"error":"the function is misconfigured; see its logs","kind":"config"}` + "\n"))
		return
	}
	e.http.ServeHTTP(w, r)
}

// PredictOnUpload is the CloudEvent function for finalized GCS objects. It
// returns an error only for failures worth redelivering the event for.
func PredictOnUpload(ctx context.Context, ev cloudevents.Event) error {
	active.Add(1)
	defer active.Add(-1)
	e, err := current()
	if err != nil {
		return err
	}
	u, err := e.app.Uploader()
	if err != nil {
		slog.Log(ctx, logging.LevelCritical, "PredictOnUpload: refusing to run: "+err.Error(), "event_id", ev.ID())
		return err
	}
	return u.HandleCloudEvent(ctx, ev)
}

// Shutdown waits for in-flight requests and events (until ctx is done),
// then flushes metrics and releases the model and clients.
func Shutdown(ctx context.Context) error {
	for active.Load() > 0 {
		select {
		case <-ctx.Done():
			slog.Warn("functions: shutting down with requests still running", "active", active.Load())
			goto flush
		case <-time.After(20 * time.Millisecond):
		}
	}
flush:
	e := configured.Load()
	if e == nil {
		return nil // never configured: nothing to release
	}
	return errors.Join(e.metrics.Shutdown(ctx), e.app.Close())
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
