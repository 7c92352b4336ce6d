package stack

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"

	"google.golang.org/grpc"

	"github.com/orchard-mlops/orchard/infra/runlocal"
)

// Batch job defaults of the local stack: `orchard batch` finds them in
// the variables Batch.Env returns.
const (
	BatchJobID  = "orchard-batch"
	RunRegion   = "local"
	BatchBinary = "batch" // functions/cmd/batch, in Config.BinDir
)

// Batch runs the Cloud Run Admin API stand-in (infra/runlocal) with the
// batch prediction job, as a stack Component: `orchard batch` starts
// executions whose tasks are processes of functions/cmd/batch against
// fake-gcs-server, writing into the results bucket and reading the
// registry's models, like the job Terraform defines.
type Batch struct {
	// Binary is functions/cmd/batch; default Config.BinDir/batch when it
	// exists (make build), else built there by Start.
	Binary string
	// Tasks and MaxRetries are the job template's (default 2 and 1).
	Tasks, MaxRetries int
	// LogDir keeps LogDir/<execution>/task-<i>.log (default a temporary
	// directory).
	LogDir string
	Logger *slog.Logger

	// Set by Start.
	Addr   string
	Server *runlocal.Server
	grpc   *grpc.Server
}

// Name implements Component.
func (b *Batch) Name() string { return "cloud run jobs stand-in" }

// Start implements Component.
func (b *Batch) Start(ctx context.Context, s *Stack) error {
	bin, err := b.binary(ctx, s)
	if err != nil {
		return err
	}
	tasks, retries := b.Tasks, b.MaxRetries
	if tasks <= 0 {
		tasks = 2
	}
	if retries <= 0 {
		retries = 1
	}
	srv, err := runlocal.NewServer(runlocal.Config{
		Project: s.Config.Project, Region: RunRegion, LogDir: b.LogDir, WorkDir: s.Config.RepoRoot, Logger: b.Logger,
		Env: []string{"STORAGE_EMULATOR_HOST=" + s.GCSHost, "GOOGLE_CLOUD_PROJECT=" + s.Config.Project},
		Jobs: map[string]runlocal.Job{BatchJobID: {Command: []string{bin}, TaskCount: tasks, MaxRetries: retries, Env: []string{
			"RESULTS_BUCKET=" + s.Config.ResultsBucket, "REGISTRY_URI=" + s.RegistryURI(), "MODEL_NAME=" + s.Config.ModelName,
		}}},
	})
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		srv.Close()
		return fmt.Errorf("cloud run jobs stand-in: %w", err)
	}
	g := grpc.NewServer()
	srv.Register(g)
	go g.Serve(lis)
	b.Server, b.grpc, b.Addr = srv, g, lis.Addr().String()
	return nil
}

func (b *Batch) binary(ctx context.Context, s *Stack) (string, error) {
	if b.Binary != "" {
		return b.Binary, nil
	}
	if p := filepath.Join(s.Config.BinDir, BatchBinary); fileExists(p) {
		return p, nil
	}
	return GoBuild(ctx, s.Config.BuildProgress, s.Config.RepoRoot, s.Config.BinDir, "./functions/cmd/batch", BatchBinary, "GOEXPERIMENT=simd")
}

func fileExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

// Env is what `orchard batch` needs to find the job.
func (b *Batch) Env() [][2]string {
	return [][2]string{{"RUN_ENDPOINT", b.Addr}, {"RUN_REGION", RunRegion}, {"BATCH_JOB", BatchJobID}}
}

// Close implements Component: running executions are cancelled and waited for.
func (b *Batch) Close() error {
	if b.grpc != nil {
		b.grpc.Stop()
	}
	if b.Server != nil {
		b.Server.Close()
	}
	return nil
}
