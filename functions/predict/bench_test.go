package predict

// Serving benchmarks (make bench): the cost of one image through Predict
// beside the bare onnxruntime run of the same model, so the serving
// overhead (decode, resize, HTTP, JSON) is visible.
//
//	BenchmarkORT                          Classifier.Logits on one preprocessed image: the model alone
//	BenchmarkORTInputSpace/{space}        the same for the default CNN exported with each model.input_space
//	BenchmarkClassify/{size}              Classifier.Classify: preprocessing + model + top-k, no HTTP
//	BenchmarkPredict/inprocess/{size}     Server.ServeHTTP through httptest (no network)
//	BenchmarkPredict/http/{size}/clients=N  loopback TCP (httptest.NewServer), N concurrent clients
//
// Preprocessing alone is BenchmarkProcess in shared/preprocess.
//
// The model has the trainer's default architecture and input size with
// untrained pseudo-random weights (modeltest.CNN); set
// ORCHARD_BENCH_MODEL=/path/to/model/dir (model.json and model.onnx, e.g.
// from `trainer train`) to time a real model instead. onnxruntime runs
// with one intra-op thread, the production default (INTRA_OP_THREADS).
//
// Every benchmark reports img/s (images per wall-clock second, all clients
// together); the HTTP ones also report ns/req, the mean latency one client
// sees, which differs from ns/op (wall time / requests) when clients > 1.
// B/op and allocs/op of the HTTP benchmarks count client and server, since
// both run in this process.

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"image"
	"image/jpeg"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/orchard-mlops/orchard/shared/model"
	"github.com/orchard-mlops/orchard/shared/model/modeltest"
	"github.com/orchard-mlops/orchard/shared/modelsource"
	"github.com/orchard-mlops/orchard/shared/onnx"
	"github.com/orchard-mlops/orchard/shared/onnxrt"
	"github.com/orchard-mlops/orchard/shared/onnxrt/onnxrttest"
	"github.com/orchard-mlops/orchard/shared/preprocess"
)

// benchModelEnv names a model directory to benchmark instead of the
// untrained default-architecture CNN.
const benchModelEnv = "ORCHARD_BENCH_MODEL"

// benchModel is built (or loaded) once per test binary.
var benchModel = sync.OnceValues(func() (*model.Model, error) {
	if dir := os.Getenv(benchModelEnv); dir != "" {
		return model.Load(context.Background(), nil, dir)
	}
	return modeltest.CNN(modeltest.CNNOptions{})
})

var benchModelLogged sync.Once

// benchConfig is testConfig with production limits, so a 12 MP JPEG is
// admitted, and production's one onnxruntime thread.
func benchConfig() Config {
	cfg := testConfig()
	cfg.IntraOpThreads = 1
	cfg.MaxBodyBytes = DefaultMaxBodyBytes
	cfg.MaxImageBytes = preprocess.DefaultMaxBytes
	cfg.MaxImagePixels = preprocess.DefaultMaxPixels
	return cfg
}

// benchClassifier returns a classifier of the benchmark model, closed when
// the benchmark ends.
func benchClassifier(b *testing.B, cfg Config) *onnxrt.Classifier {
	b.Helper()
	onnxrttest.Init(b)
	m, err := benchModel()
	if err != nil {
		b.Fatalf("benchmark model: %v", err)
	}
	benchModelLogged.Do(func() {
		md := m.Metadata
		b.Logf("model %s %s (%s): input %v, %d labels, %d-byte graph", md.Name, md.Version, m.URI, md.Input.Shape, len(md.Labels), len(m.ONNX))
	})
	return openClassifier(b, m, cfg)
}

// openClassifier returns a classifier of m, closed when the benchmark ends.
func openClassifier(b *testing.B, m *model.Model, cfg Config) *onnxrt.Classifier {
	b.Helper()
	c, err := onnxrt.NewClassifier(m, onnxrt.Options{IntraOpThreads: cfg.IntraOpThreads, Limits: cfg.Limits()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c
}

func benchServer(b *testing.B, cfg Config) *Server {
	b.Helper()
	return &Server{&Service{Config: cfg, Provider: modelsource.Static{C: benchClassifier(b, cfg)}, Log: quietLog()}}
}

// benchImage is one test photo.
type benchImage struct {
	name string
	w, h int
	jpeg []byte
}

// benchImages are the photos benchmarked: a Fruits-360 crop, a 1080p frame
// and a 12 MP phone photo, generated once per test binary.
var benchImages = sync.OnceValues(func() ([]benchImage, error) {
	imgs := []benchImage{{name: "100x100", w: 100, h: 100}, {name: "1080p", w: 1920, h: 1080}, {name: "12MP", w: 4000, h: 3000}}
	for i := range imgs {
		var buf bytes.Buffer
		if err := jpeg.Encode(&buf, benchPhoto(imgs[i].w, imgs[i].h, uint64(i)), &jpeg.Options{Quality: 90}); err != nil {
			return nil, err
		}
		imgs[i].jpeg = buf.Bytes()
	}
	return imgs, nil
})

func benchImagesOrFatal(b *testing.B) []benchImage {
	b.Helper()
	imgs, err := benchImages()
	if err != nil {
		b.Fatal(err)
	}
	return imgs
}

// benchPhoto draws a deterministic photo-like image: a smooth gradient
// background, shaded elliptical "fruits", a rippled texture and sensor-like
// noise, so JPEG coding and decoding cost about what a real photo costs (a
// flat colour decodes far faster). At quality 90 the 12 MP image is about
// 2.8 MB and the 1080p one about 0.5 MB, in the range of phone photos.
func benchPhoto(w, h int, seed uint64) *image.RGBA {
	r := rand.New(rand.NewPCG(seed, 0x70686f746f))
	type fruit struct{ cx, cy, rx, ry, r, g, b float64 }
	fruits := make([]fruit, 6)
	for i := range fruits {
		fruits[i] = fruit{cx: 0.15 + 0.7*r.Float64(), cy: 0.15 + 0.7*r.Float64(), rx: 0.08 + 0.17*r.Float64(), ry: 0.08 + 0.17*r.Float64(),
			r: 60 + 190*r.Float64(), g: 30 + 170*r.Float64(), b: 20 + 120*r.Float64()}
	}
	const noise = 16 // peak of the triangular per-channel noise, in 8-bit levels
	m := image.NewRGBA(image.Rect(0, 0, w, h))
	s := float64(min(w, h))
	for y := range h {
		fy := float64(y) / float64(h)
		for x := range w {
			fx := float64(x) / float64(w)
			cr, cg, cb := 200-60*fy+20*fx, 190-40*fy, 170+50*fy-30*fx
			for _, f := range fruits {
				dx, dy := (fx-f.cx)*float64(w)/s/f.rx, (fy-f.cy)*float64(h)/s/f.ry
				if d2 := dx*dx + dy*dy; d2 < 1 {
					shade := 1 - 0.45*d2 + 0.125*(1-d2)*(-dx-dy) // lit from the top left
					cr, cg, cb = f.r*shade, f.g*shade, f.b*shade
				}
			}
			t := 10 * math.Sin(fx*97+3*math.Sin(fy*41)) * math.Sin(fy*83+2*math.Sin(fx*29))
			n := r.Uint64()
			tri := func(shift uint) float64 {
				return (float64(n>>shift&0xff) + float64(n>>(shift+8)&0xff) - 255) / 255 * noise
			}
			i := m.PixOffset(x, y)
			m.Pix[i], m.Pix[i+1], m.Pix[i+2], m.Pix[i+3] = clamp8(cr+t+tri(0)), clamp8(cg+t+tri(16)), clamp8(cb+t+tri(32)), 255
		}
	}
	return m
}

func clamp8(v float64) uint8 {
	return uint8(math.Round(max(0, min(255, v))))
}

// reportImagesPerSecond adds the img/s metric: images per wall-clock second.
func reportImagesPerSecond(b *testing.B, images int) {
	if s := b.Elapsed().Seconds(); s > 0 {
		b.ReportMetric(float64(images)/s, "img/s")
	}
}

// BenchmarkORT is the model alone: one preprocessed image through
// onnxruntime (input and output tensors included, as Classify makes them).
func BenchmarkORT(b *testing.B) {
	benchLogits(b, benchClassifier(b, benchConfig()))
}

// BenchmarkORTInputSpace times the untrained default CNN exported with
// each model.input_space (and three stacks of them), side by side, so
// the in-graph cost of the log standardisation is measured against the
// linear graph in one run. The ops run on the 32x32 input tensor, so their
// cost does not depend on the photo's size.
func BenchmarkORTInputSpace(b *testing.B) {
	onnxrttest.Init(b)
	stacks := []string{onnx.InputLinear + "+" + onnx.InputLogChroma, onnx.InputLinear + "+" + onnx.InputLogChromaBlack, strings.Join(append([]string{onnx.InputLinear}, onnx.InputSpaces()...), "+")}
	for _, space := range slices.Concat([]string{""}, onnx.InputSpaces(), stacks) {
		b.Run(cmp.Or(space, "linear"), func(b *testing.B) {
			arch := modeltest.DefaultCNNArch()
			arch.InputSpace = space
			m, err := modeltest.CNN(modeltest.CNNOptions{Arch: &arch})
			if err != nil {
				b.Fatal(err)
			}
			benchLogits(b, openClassifier(b, m, benchConfig()))
		})
	}
}

// benchLogits times c.Logits on the first benchmark photo, preprocessed
// with c's own spec.
func benchLogits(b *testing.B, c *onnxrt.Classifier) {
	spec := c.Metadata().Preprocessing
	x := make([]float32, spec.TensorLen())
	if err := spec.Process(benchImagesOrFatal(b)[0].jpeg, preprocess.Limits{}, x); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Logits(x, 1); err != nil {
			b.Fatal(err)
		}
	}
	reportImagesPerSecond(b, b.N)
}

// BenchmarkClassify is preprocessing, the model and top-k without HTTP: the
// gap to BenchmarkPredict/inprocess is the handler's own cost.
func BenchmarkClassify(b *testing.B) {
	cfg := benchConfig()
	c := benchClassifier(b, cfg)
	for _, img := range benchImagesOrFatal(b) {
		b.Run(img.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(img.jpeg)))
			for b.Loop() {
				if _, err := c.Classify(img.jpeg, cfg.TopK); err != nil {
					b.Fatal(err)
				}
			}
			reportImagesPerSecond(b, b.N)
		})
	}
}

// BenchmarkPredict is one raw JPEG per request through the Predict handler,
// in process and over loopback HTTP.
func BenchmarkPredict(b *testing.B) {
	s := benchServer(b, benchConfig())
	imgs := benchImagesOrFatal(b)
	b.Run("inprocess", func(b *testing.B) {
		for _, img := range imgs {
			b.Run(img.name, func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(len(img.jpeg)))
				for b.Loop() {
					r := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(img.jpeg))
					r.Header.Set("Content-Type", "image/jpeg")
					w := httptest.NewRecorder()
					s.ServeHTTP(w, r)
					if w.Code != http.StatusOK {
						b.Fatalf("status %d: %s", w.Code, w.Body)
					}
				}
				reportImagesPerSecond(b, b.N)
			})
		}
	})
	b.Run("http", func(b *testing.B) {
		srv := httptest.NewServer(s)
		defer srv.Close()
		for _, img := range imgs {
			for _, clients := range []int{1, 2} {
				b.Run(fmt.Sprintf("%s/clients=%d", img.name, clients), func(b *testing.B) {
					benchHTTP(b, srv.URL, img.jpeg, clients)
				})
			}
		}
	})
}

// benchHTTP posts img b.N times from clients concurrent goroutines, each
// with a kept-alive connection, and reports throughput and mean latency.
func benchHTTP(b *testing.B, url string, img []byte, clients int) {
	tr := &http.Transport{MaxIdleConnsPerHost: clients, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: time.Minute}
	post := func() error {
		req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(img))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "image/jpeg")
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d: %s", resp.StatusCode, body)
		}
		return nil
	}
	// Open the connections before timing, so the first requests do not
	// pay for the TCP handshake.
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			if err := post(); err != nil {
				b.Error(err)
			}
		})
	}
	wg.Wait()
	if b.Failed() {
		return
	}

	var (
		next      atomic.Int64
		latencyNs atomic.Int64
	)
	b.ReportAllocs()
	b.SetBytes(int64(len(img)))
	b.ResetTimer()
	for range clients {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				start := time.Now()
				if err := post(); err != nil {
					b.Error(err)
					return
				}
				latencyNs.Add(int64(time.Since(start)))
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	reportImagesPerSecond(b, b.N)
	b.ReportMetric(float64(latencyNs.Load())/float64(b.N), "ns/req")
}
