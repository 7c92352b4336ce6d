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
// Vertex AI stand-in's address (host:port, plaintext gRPC), as
// SubmitTraining reads it.
const DefaultVertexEndpointEnv = "VERTEX_ENDPOINT"

// VertexRegion is the location in the stand-in's job names.
const VertexRegion = "local"

// Vertex runs the Vertex AI JobService stand-in (infra/vertexlocal)
// in-process on a loopback port, as a stack Component.
type Vertex struct {
	// Images maps container image URIs to local commands (see
	// vertexlocal.Config.Images).
	Images map[string][]string
	// TrainerImage, a key of Images, is the image SubmitTraining names in
	// its jobs (TRAINER_IMAGE). With it set, Start configures
	// SubmitTraining for the stand-in: endpoint, region, an output folder in
	// the models bucket, and local dataset paths allowed.
	TrainerImage string
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
	if v.TrainerImage != "" {
		if _, ok := v.Images[v.TrainerImage]; !ok {
			return fmt.Errorf("vertex stand-in: trainer image %q is not one of its images", v.TrainerImage)
		}
		s.AddFunctionsEnv("VERTEX_REGION="+VertexRegion, "TRAINER_IMAGE="+v.TrainerImage,
			"TRAINING_OUTPUT_URI=gs://"+s.Config.ModelsBucket+"/training", "ALLOW_LOCAL_DATA=true")
	}
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
