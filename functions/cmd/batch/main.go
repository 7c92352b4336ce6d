// Command batch is one task of Orchard's batch prediction job (a Cloud Run
// job; see functions/batch): it classifies its shard of the images below
// BATCH_PREFIX with the registry version MODEL_VERSION, writing results as
// PredictOnUpload does, then its task summary, and, if it is the last task
// to finish, the run summary.
//
//	CLOUD_RUN_TASK_INDEX, CLOUD_RUN_TASK_COUNT, CLOUD_RUN_TASK_ATTEMPT, CLOUD_RUN_EXECUTION  set by Cloud Run
//	BATCH_PREFIX=gs://bucket/folder/   MODEL_VERSION=V                                     set by orchard batch
//	RESULTS_BUCKET, REGISTRY_URI, MODEL_NAME (or MODEL_URI), WORKERS, ...                  the job's (predict.Config)
//
// The model version is resolved once by the launcher and passed to every
// task, so all tasks of a run use the same one even if the alias moves
// meanwhile. It exits non-zero when objects are left without a result
// (transient failures), so that Cloud Run retries the task; the retry skips
// what is done. SIGTERM (the task timeout) stops it after the objects in
// flight, with its summary written. ORCHARD_CPUPROFILE=DIR writes a CPU
// profile of the task there (see CPUProfileEnv). GOGC defaults to
// DefaultGOGC.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"cloud.google.com/go/storage"
	"google.golang.org/api/option"

	"github.com/orchard-mlops/orchard/functions/batch"
	"github.com/orchard-mlops/orchard/functions/batch/task"
	"github.com/orchard-mlops/orchard/functions/predict"
	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/shared/logging"
	"github.com/orchard-mlops/orchard/shared/memlimit"
	"github.com/orchard-mlops/orchard/shared/registry"
)

func main() {
	log := logging.Setup()
	memlimit.SetGoMemLimit(log)
	setGCPercent(log, os.Getenv)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	err := run(ctx, log, os.Getenv)
	stop()
	if err != nil {
		log.Log(context.Background(), logging.LevelCritical, "batch task failed: "+err.Error())
		os.Exit(1)
	}
}

func run(ctx context.Context, log *slog.Logger, getenv func(string) string) error {
	t, err := batch.TaskFromEnv(getenv)
	if err != nil {
		return err
	}
	stopProfile, err := startCPUProfile(getenv, fmt.Sprintf("%s-task-%d-%d", t.Execution, t.Index, t.Attempt))
	if err != nil {
		return err
	}
	defer stopProfile()
	prefix := strings.TrimSpace(getenv(batch.PrefixEnv))
	if prefix == "" {
		return fmt.Errorf("%s is not set: the gs:// prefix to classify (orchard batch -prefix sets it)", batch.PrefixEnv)
	}
	cfg, err := predict.ConfigFromEnv(getenv)
	if err != nil {
		return err
	}
	// No OpenTelemetry transport: the job exports no traces, and its
	// per-request spans and header work cost CPU on every object.
	client, err := storage.NewClient(ctx, option.WithTelemetryDisabled())
	if err != nil {
		return fmt.Errorf("creating the storage client: %w", err)
	}
	defer client.Close()
	want := strings.TrimSpace(getenv(batch.ModelVersionEnv))
	stores := blob.NewOpener(client)
	if cfg.ModelURI == "" {
		if cfg.ModelURI, err = versionURI(ctx, stores, cfg, want); err != nil {
			return err
		}
	}
	app := predict.NewApp(cfg, predict.AppOptions{Storage: client, Log: log})
	defer app.Close()
	u, err := app.Uploader()
	if err != nil {
		return err
	}
	r := &task.Runner{Config: task.Config{Task: t, Prefix: prefix, WantVersion: want}, Storage: stores, Uploader: u, Log: log}
	_, err = r.Run(ctx)
	return err
}

// DefaultGOGC is the task's GC target unless GOGC is set. The live heap of
// a task is small and bounded by WORKERS (the listing is streamed), and
// the storage client allocates per request, so at Go's default of 100 the
// collector took about a tenth of the task's CPU (its profile); at 400
// about 2 %, for some 20 MiB more peak RSS (bounded too, and GOMEMLIMIT
// still caps the heap).
const DefaultGOGC = 400

func setGCPercent(log *slog.Logger, getenv func(string) string) {
	if getenv("GOGC") != "" {
		return // the runtime has read it
	}
	debug.SetGCPercent(DefaultGOGC)
	log.Debug("batch: GOGC set", "gogc", DefaultGOGC)
}

// versionURI is where the registry keeps version want of MODEL_NAME. A
// task never resolves an alias itself: tasks start at different times, and
// an alias moved in between would split one run over two models.
func versionURI(ctx context.Context, stores *blob.Opener, cfg predict.Config, want string) (string, error) {
	if want == "" {
		return "", errors.New(batch.ModelVersionEnv + " is not set: orchard batch resolves the alias once and passes the version to every task (or set MODEL_URI)")
	}
	reg, err := registry.Open(ctx, cfg.RegistryURI, registry.Options{Storage: stores})
	if err != nil {
		return "", fmt.Errorf("opening REGISTRY_URI: %w", err)
	}
	if _, err := reg.Metadata(ctx, cfg.ModelName, want); err != nil {
		return "", fmt.Errorf("model %s version %s: %w", cfg.ModelName, want, err)
	}
	return reg.VersionURI(cfg.ModelName, want), nil
}
