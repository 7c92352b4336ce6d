package predict

import (
	"context"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"cloud.google.com/go/storage"

	"github.com/orchard-mlops/orchard/functions/telemetry"
	"github.com/orchard-mlops/orchard/shared/emulators"
	"github.com/orchard-mlops/orchard/shared/model/modeltest"
	"github.com/orchard-mlops/orchard/shared/modelsource"
	"github.com/orchard-mlops/orchard/shared/onnxrt"
	"github.com/orchard-mlops/orchard/shared/onnxrt/onnxrttest"
)

func TestMain(m *testing.M) { os.Exit(emulators.RunTests(m)) }

// quietLog discards logs unless -v: tests assert on behaviour, and a few
// tests capture the log on purpose.
func quietLog() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewJSONHandler(os.Stderr, nil))
	}
	return slog.New(slog.NewJSONHandler(io.Discard, nil))
}

// newClassifier returns the colour model (labels red, green, blue) with the
// config's limits, closed when the test ends.
func newClassifier(tb testing.TB, cfg Config, o modeltest.Options) *onnxrt.Classifier {
	tb.Helper()
	onnxrttest.Init(tb)
	c, err := onnxrt.NewClassifier(modeltest.Colour(tb, o), onnxrt.Options{Limits: cfg.Limits()})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

func testConfig() Config {
	c := DefaultConfig()
	c.ModelURI, c.StorageTimeout = "test://", 2*time.Second
	c.MaxBodyBytes, c.MaxImageBytes, c.MaxObjects, c.Workers = 1<<20, 1<<20, 16, 4
	return c
}

func newServer(tb testing.TB, cfg Config, objs Buckets, metrics *telemetry.Metrics) *Server {
	tb.Helper()
	c := newClassifier(tb, cfg, modeltest.Options{Version: "v3"})
	return &Server{&Service{Config: cfg, Provider: modelsource.Static{C: c}, Storage: objs, Metrics: metrics, Log: quietLog()}}
}

var (
	redJPEG   = func(tb testing.TB) []byte { return modeltest.JPEG(tb, modeltest.Solid(modeltest.Red, 100, 100)) }
	greenJPEG = func(tb testing.TB) []byte { return modeltest.JPEG(tb, modeltest.Solid(modeltest.Green, 64, 48)) }
	bluePNG   = func(tb testing.TB) []byte { return modeltest.PNG(tb, modeltest.Solid(modeltest.Blue, 30, 40)) }
)

// gcsEnv is a fake-gcs-server with a client.
type gcsEnv struct {
	srv    *emulators.GCS
	client *storage.Client
}

func newGCS(t *testing.T, buckets ...string) *gcsEnv {
	t.Helper()
	g := emulators.GCSForTest(t)
	c := g.ClientForTest(t)
	for _, b := range buckets {
		if err := c.Bucket(b).Create(t.Context(), "test-project", nil); err != nil {
			t.Fatalf("creating bucket %s: %v", b, err)
		}
	}
	return &gcsEnv{srv: g, client: c}
}

// put writes an object and returns its generation.
func (g *gcsEnv) put(t testing.TB, bucket, name, contentType string, data []byte) int64 {
	t.Helper()
	w := g.client.Bucket(bucket).Object(name).NewWriter(context.Background())
	w.ContentType = contentType
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("writing gs://%s/%s: %v", bucket, name, err)
	}
	return w.Attrs().Generation
}
