package stack

import (
	"context"
	"fmt"
	"log/slog"
	"net"

	"google.golang.org/grpc"

	"github.com/orchard-mlops/orchard/infra/vertexlocal"
)

// DefaultVertexEndpointEnv is the functions-server variable that gets the
// Vertex AI stand-in's address (host:port, plaintext gRPC). SubmitTraining
// must read the same name (see the report to the lead; change here if it
// settles on another).
const DefaultVertexEndpointEnv = "VERTEX_AI_ENDPOINT"

// Vertex runs the Vertex AI JobService stand-in (infra/vertexlocal)
// in-process on a loopback port, as a stack Component.
type Vertex struct {
	// Images maps container image URIs to local commands (see
	// vertexlocal.Config.Images).
	Images map[string][]string
	// LogDir holds one log per job (default a temporary directory).
	LogDir string
	// WorkDir is the jobs' working directory (default the repository root,
	// where the trainer finds .cache/onnxruntime as `make ort` leaves it).
	WorkDir string
	// EndpointEnv names the functions-server variable that receives the
	// address (default DefaultVertexEndpointEnv).
	EndpointEnv string
	Logger      *slog.Logger

	// Set by Start.
	Addr   string
	Server *vertexlocal.Server
	grpc   *grpc.Server
}

// Name implements Component.
func (v *Vertex) Name() string { return "vertex ai stand-in" }

// Start implements Component: jobs get the emulator variables, so a trainer
// reads and writes gs:// paths on fake-gcs-server.
func (v *Vertex) Start(_ context.Context, s *Stack) error {
	if v.WorkDir == "" {
		v.WorkDir = s.Config.RepoRoot
	}
	srv, err := vertexlocal.NewServer(vertexlocal.Config{
		Images: v.Images, LogDir: v.LogDir, WorkDir: v.WorkDir, Logger: v.Logger,
		Env: []string{
			"STORAGE_EMULATOR_HOST=" + s.GCSHost, "PUBSUB_EMULATOR_HOST=" + s.PubSubHost,
			"GOOGLE_CLOUD_PROJECT=" + s.Config.Project,
		},
	})
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		srv.Close()
		return fmt.Errorf("vertex stand-in: %w", err)
	}
	g := grpc.NewServer()
	srv.Register(g)
	go g.Serve(lis)
	v.Server, v.grpc, v.Addr = srv, g, lis.Addr().String()
	env := v.EndpointEnv
	if env == "" {
		env = DefaultVertexEndpointEnv
	}
	s.AddFunctionsEnv(env + "=" + v.Addr)
	return nil
}

// Close implements Component: running jobs are cancelled (their process
// groups signalled) and waited for.
func (v *Vertex) Close() error {
	if v.grpc != nil {
		v.grpc.Stop()
	}
	if v.Server != nil {
		v.Server.Close()
	}
	return nil
}
