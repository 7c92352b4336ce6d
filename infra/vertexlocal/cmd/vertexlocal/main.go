// Command vertexlocal serves the local Vertex AI JobService stand-in (see
// package vertexlocal) so that SubmitTraining, the orchard CLI or any
// aiplatform client can run training jobs on this machine.
//
//	vertexlocal -listen 127.0.0.1:8089 \
//	    -image 'europe-docker.pkg.dev/P/orchard/trainer*=/path/to/trainer' \
//	    -env STORAGE_EMULATOR_HOST=127.0.0.1:4443 -log-dir /tmp/vertex-logs
//
// Clients point at it with VERTEX_ENDPOINT=127.0.0.1:8089 (plaintext, no
// credentials). Each job's output goes to LOG_DIR/<job ID>.log. Tuning
// jobs (orchard sweep -endpoint 127.0.0.1:8089) run each trial as such a job.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/orchard-mlops/orchard/infra/vertexlocal"
	"github.com/orchard-mlops/orchard/shared/logging"
)

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(s string) error { *m = append(*m, s); return nil }

func main() {
	var images, env multi
	listen := flag.String("listen", "127.0.0.1:8089", "address to serve the JobService on")
	logDir := flag.String("log-dir", "", "directory for per-job logs (default: a new temporary directory)")
	workDir := flag.String("work-dir", "", "jobs' working directory (default: the log directory)")
	maxConc := flag.Int("max-concurrent", 1, "jobs running at once; the rest stay PENDING")
	grace := flag.Duration("kill-grace", 5*time.Second, "time between SIGTERM and SIGKILL when a job is cancelled")
	flag.Var(&images, "image", "IMAGE=COMMAND [ARGS...]: run COMMAND for jobs with container image IMAGE (a trailing * in IMAGE matches a prefix); repeatable")
	flag.Var(&env, "env", "KEY=VALUE added to every job's environment; repeatable")
	flag.Parse()
	log := logging.Setup()

	cfg := vertexlocal.Config{Images: map[string][]string{}, LogDir: *logDir, WorkDir: *workDir, Env: env,
		MaxConcurrent: *maxConc, KillGrace: *grace, Logger: log}
	for _, m := range images {
		img, cmd, ok := strings.Cut(m, "=")
		if !ok || img == "" || len(strings.Fields(cmd)) == 0 {
			fmt.Fprintf(os.Stderr, "vertexlocal: -image %q: want IMAGE=COMMAND\n", m)
			os.Exit(2)
		}
		cfg.Images[img] = strings.Fields(cmd)
	}
	if len(cfg.Images) == 0 {
		fmt.Fprintln(os.Stderr, "vertexlocal: at least one -image IMAGE=COMMAND is needed")
		os.Exit(2)
	}
	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Error("listen failed", "addr", *listen, "err", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := vertexlocal.Serve(ctx, lis, cfg); err != nil {
		log.Error("serve failed", "err", err)
		os.Exit(1)
	}
}
